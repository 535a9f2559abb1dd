"""Groups and model access, with the openai SDK as the client."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import Upstream
from tests.support.gateway import Gateway

API = "/admin/api/v1"


def user_with_key(gateway: Gateway, name: str, **key_fields: object) -> tuple[int, str]:
    user = gateway.create_user(name)
    return user["id"], gateway.create_key(user_id=user["id"], name=name, **key_fields)["key"]


@pytest.fixture
def private(gateway: Gateway, upstream: Upstream) -> Gateway:
    """An endpoint with models 'open' (granted to everyone) and 'secret' (to group 'team')."""
    upstream.state.models = ["open", "secret"]
    gateway.add_endpoint("up", upstream.url, groups=[])
    models = {m["upstream_id"]: m["id"] for m in gateway.admin.get(f"{API}/models").json()}
    team = gateway.admin.post(f"{API}/groups", json={"name": "team"}).json()
    everyone = next(g for g in gateway.admin.get(f"{API}/groups").json() if g["name"] == "everyone")
    gateway.admin.put(f"{API}/groups/{everyone['id']}/models/{models['open']}")
    gateway.admin.put(f"{API}/groups/{team['id']}/models/{models['secret']}")
    return gateway


def test_user_outside_group_gets_403_and_does_not_see_it(private: Gateway) -> None:
    """A model granted to another group is neither listed nor usable (403, not 404)."""
    _, key = user_with_key(private, "outsider")
    client = private.openai(key=key)
    assert [m.id for m in client.models.list()] == ["open"]
    with pytest.raises(openai.PermissionDeniedError) as raised:
        client.chat.completions.create(model="secret", messages=[])
    assert raised.value.code == "model_not_allowed"
    with pytest.raises(openai.PermissionDeniedError):
        client.models.retrieve("secret")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nonexistent", messages=[])
    client.chat.completions.create(model="open", messages=[])


def test_joining_the_group_grants_on_the_next_request(private: Gateway) -> None:
    """Membership changes reach the proxy at once; leaving takes access away again."""
    user_id, key = user_with_key(private, "newcomer")
    client = private.openai(key=key)
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="secret", messages=[])
    team = next(g for g in private.admin.get(f"{API}/groups").json() if g["name"] == "team")
    added = private.admin.put(f"{API}/groups/{team['id']}/users/{user_id}").json()
    assert added["users"] == [user_id]
    client.chat.completions.create(model="secret", messages=[])
    assert sorted(m.id for m in client.models.list()) == ["open", "secret"]
    private.admin.delete(f"{API}/groups/{team['id']}/users/{user_id}")
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="secret", messages=[])


def test_admins_reach_everything(private: Gateway) -> None:
    assert sorted(m.id for m in private.openai().models.list()) == ["open", "secret"]


def test_endpoint_grant_covers_its_models(gateway: Gateway, upstream: Upstream) -> None:
    """Granting a whole endpoint to a group covers all its models; by default endpoints
    go to everyone."""
    upstream.state.models = ["a", "b"]
    _, key = user_with_key(gateway, "u")
    gateway.add_endpoint("default", upstream.url)
    assert sorted(m.id for m in gateway.openai(key=key).models.list()) == ["a", "b"]
    everyone = gateway.admin.get(f"{API}/groups").json()[0]
    assert everyone["name"] == "everyone" and everyone["endpoints"] == [1]
    gateway.admin.delete(f"{API}/groups/{everyone['id']}/endpoints/1")
    assert gateway.openai(key=key).models.list().data == []


def test_key_limited_to_one_model(private: Gateway) -> None:
    """A key limited to 'open' cannot call 'secret', even for an admin."""
    limited = private.create_key(name="narrow", allowed_models=["open"])
    assert limited["allowed_models"] == ["open"]
    client = private.openai(key=limited["key"])
    assert [m.id for m in client.models.list()] == ["open"]
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="secret", messages=[])
    client.chat.completions.create(model="open", messages=[])


def test_builtin_group_is_protected(gateway: Gateway) -> None:
    everyone = gateway.admin.get(f"{API}/groups").json()[0]
    assert gateway.admin.delete(f"{API}/groups/{everyone['id']}").status_code == 409
    user = gateway.create_user("x")
    added = gateway.admin.put(f"{API}/groups/{everyone['id']}/users/{user['id']}")
    assert added.status_code == 409
    renamed = gateway.admin.patch(f"{API}/groups/{everyone['id']}", json={"name": "all"})
    assert renamed.status_code == 409


def test_removing_a_user_revokes_their_keys(private: Gateway) -> None:
    user_id, key = user_with_key(private, "leaver")
    client = private.openai(key=key)
    client.models.list()
    assert private.admin.delete(f"{API}/users/{user_id}").status_code == 204
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_offline_model_the_caller_may_use_is_503_not_403(
    gateway: Gateway, upstream: Upstream
) -> None:
    """An allowed model that went offline says so; it is not reported as forbidden."""
    gateway.add_endpoint("up", upstream.url)
    _, key = user_with_key(gateway, "kim")
    upstream.state.listing = "500"
    gateway.admin.post(f"{API}/endpoints/1/sync")
    client = gateway.openai(key=key)
    for call in (
        lambda: client.models.retrieve("gpt-test"),
        lambda: client.chat.completions.create(model="gpt-test", messages=[]),
    ):
        with pytest.raises(openai.InternalServerError) as raised:
            call()
        assert raised.value.status_code == 503
