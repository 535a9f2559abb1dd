"""Users' own provider keys, and the self-service /me routes."""

from __future__ import annotations

from urllib.parse import unquote_plus

import httpx
import openai
import pytest

from tests.conftest import Upstream
from tests.support.gateway import Gateway
from tests.web.conftest import console, csrf_of

API = "/admin/api/v1"
SHARED = "sk-shared-admin-key-0001"


def user_client(gateway: Gateway, name: str) -> tuple[int, str, httpx.Client]:
    user = gateway.create_user(name)
    key = gateway.create_key(user_id=user["id"], name=name)["key"]
    return user["id"], key, gateway.client_for(key)


def test_own_key_replaces_shared_one_for_that_user_only(
    gateway: Gateway, upstream: Upstream
) -> None:
    """Alice's requests carry her key; Bob's still carry the shared one."""
    endpoint = gateway.add_endpoint("up", upstream.url, api_key=SHARED)
    _, alice_key, alice = user_client(gateway, "alice")
    _, bob_key, _ = user_client(gateway, "bob")
    response = alice.put(
        f"{API}/me/provider-keys/{endpoint['id']}", json={"api_key": "sk-alice-own-key-7777"}
    )
    assert response.status_code == 200
    assert response.json()["api_key_hint"] == "…7777"
    assert "sk-alice-own-key-7777" not in response.text
    gateway.openai(key=alice_key).chat.completions.create(model="gpt-test", messages=[])
    assert upstream.state.requests[-1].headers["authorization"] == "Bearer sk-alice-own-key-7777"
    gateway.openai(key=bob_key).chat.completions.create(model="gpt-test", messages=[])
    assert upstream.state.requests[-1].headers["authorization"] == f"Bearer {SHARED}"
    mine = alice.get(f"{API}/me").json()
    assert mine["provider_keys"][0]["endpoint_id"] == endpoint["id"]
    assert "sk-alice-own-key-7777" not in str(mine)
    assert alice.delete(f"{API}/me/provider-keys/{endpoint['id']}").status_code == 204
    gateway.openai(key=alice_key).chat.completions.create(model="gpt-test", messages=[])
    assert upstream.state.requests[-1].headers["authorization"] == f"Bearer {SHARED}"


def test_endpoint_requiring_own_keys_refuses_users_without_one(
    gateway: Gateway, upstream: Upstream
) -> None:
    """No shared key: a user without their own gets 403 saying which key to set."""
    endpoint = gateway.add_endpoint("byok", upstream.url, requires_user_key=True, sync=True)
    assert endpoint["requires_user_key"] is True
    _, key, client = user_client(gateway, "carol")
    sdk = gateway.openai(key=key)
    assert [m.id for m in sdk.models.list()] == ["gpt-test"]
    with pytest.raises(openai.PermissionDeniedError) as raised:
        sdk.chat.completions.create(model="gpt-test", messages=[])
    assert raised.value.code == "provider_key_required"
    assert f"/admin/api/v1/me/provider-keys/{endpoint['id']}" in raised.value.message
    assert "'byok'" in raised.value.message
    client.put(f"{API}/me/provider-keys/{endpoint['id']}", json={"api_key": "sk-carol-0042"})
    sdk.chat.completions.create(model="gpt-test", messages=[])
    assert upstream.state.requests[-1].headers["authorization"] == "Bearer sk-carol-0042"


def test_user_cannot_touch_other_users_keys(gateway: Gateway, upstream: Upstream) -> None:
    """/me routes act on the caller only; other users' keys are out of reach (404/403)."""
    endpoint = gateway.add_endpoint("up", upstream.url)
    _, _, dave = user_client(gateway, "dave")
    erin_id, erin_key, erin = user_client(gateway, "erin")
    erin.put(f"{API}/me/provider-keys/{endpoint['id']}", json={"api_key": "sk-erin-0001"})
    erin_key_id = erin.get(f"{API}/me/keys").json()[0]["id"]
    assert dave.delete(f"{API}/me/keys/{erin_key_id}").status_code == 404
    assert [k["name"] for k in dave.get(f"{API}/me/keys").json()] == ["dave"]
    assert dave.get(f"{API}/me/provider-keys").json() == []
    assert dave.delete(f"{API}/me/provider-keys/{endpoint['id']}").status_code == 404
    assert dave.get(f"{API}/keys").status_code == 403
    assert dave.get(f"{API}/users/{erin_id}").status_code == 403
    assert erin.get(f"{API}/me/provider-keys").json()[0]["api_key_hint"] == "…0001"
    gateway.openai(key=erin_key).models.list()


def test_self_service_api_keys(gateway: Gateway, upstream: Upstream) -> None:
    """A user creates a key of their own (shown once) and revokes it."""
    gateway.add_endpoint("up", upstream.url)
    user_id, _, frank = user_client(gateway, "frank")
    created = frank.post(f"{API}/me/keys", json={"name": "laptop"}).json()
    assert created["user_id"] == user_id and created["key"].startswith("rg-")
    gateway.openai(key=created["key"]).models.list()
    assert frank.delete(f"{API}/me/keys/{created['id']}").json()["revoked_at"]
    with pytest.raises(openai.AuthenticationError):
        gateway.openai(key=created["key"]).models.list()
    me = frank.get(f"{API}/me").json()
    assert me["user"]["name"] == "frank" and me["groups"] == ["everyone"]
    assert me["models"] == ["gpt-test"]


def test_two_users_each_use_their_own_key(gateway: Gateway, upstream: Upstream) -> None:
    """Views are cached per access; each user's own key still goes with their requests."""
    endpoint = gateway.add_endpoint("up", upstream.url, api_key=SHARED)
    keys = {}
    for name in ("gus", "hal"):
        _, key, client = user_client(gateway, name)
        client.put(f"{API}/me/provider-keys/{endpoint['id']}", json={"api_key": f"sk-{name}-0001"})
        keys[name] = key
    for name, key in keys.items():
        gateway.openai(key=key).chat.completions.create(model="gpt-test", messages=[])
        assert upstream.state.requests[-1].headers["authorization"] == f"Bearer sk-{name}-0001"


def test_rejected_own_key_says_whose_key_to_fix(gateway: Gateway, upstream: Upstream) -> None:
    endpoint = gateway.add_endpoint("up", upstream.url)
    upstream.state.api_key = "sk-the-real-provider-key"
    _, key, client = user_client(gateway, "ivy")
    client.put(f"{API}/me/provider-keys/{endpoint['id']}", json={"api_key": "sk-ivy-wrong-01"})
    with pytest.raises(openai.InternalServerError) as raised:
        gateway.openai(key=key).chat.completions.create(model="gpt-test", messages=[])
    assert raised.value.status_code == 502
    assert "rejected your own provider key" in raised.value.message
    assert f"/me/provider-keys/{endpoint['id']}" in raised.value.message


def test_limited_key_cannot_create_a_broader_one(gateway: Gateway, upstream: Upstream) -> None:
    """A key limited to some models (or expiring) only creates keys within its limits."""
    upstream.state.models = ["a", "b"]
    gateway.add_endpoint("up", upstream.url)
    user = gateway.create_user("jo")
    narrow = gateway.create_key(
        user_id=user["id"], allowed_models=["a"], expires_at="2099-01-01T00:00:00Z"
    )["key"]
    client = gateway.client_for(narrow)
    broader = client.post(f"{API}/me/keys", json={"name": "x", "allowed_models": ["a", "b"]})
    assert broader.status_code == 400
    later = client.post(f"{API}/me/keys", json={"name": "x", "expires_at": "2100-01-01T00:00:00Z"})
    assert later.status_code == 400
    inherited = client.post(f"{API}/me/keys", json={"name": "y"}).json()
    assert inherited["allowed_models"] == ["a"]
    assert inherited["expires_at"].startswith("2099-01-01")
    assert [m.id for m in gateway.openai(key=inherited["key"]).models.list()] == ["a"]


def everyone_id(gateway: Gateway) -> int:
    groups = gateway.admin.get(f"{API}/groups").json()
    found: int = next(g["id"] for g in groups if g["name"] == "everyone")
    return found


def test_endpoint_outside_a_users_grants_is_answered_as_nonexistent(
    gateway: Gateway, upstream: Upstream, second_upstream: Upstream
) -> None:
    """An endpoint serving none of a user's models gets, from PUT and DELETE of their own
    provider key and from the console, exactly the 404 of a nonexistent endpoint, and the
    account page never names it; the granted endpoint works, and admins may name any."""
    upstream.state.models = ["gpt-test", "other"]
    second_upstream.state.models = ["lab-model"]
    granted = gateway.add_endpoint("shared-a", upstream.url, groups=[])
    hidden = gateway.add_endpoint("secret-lab-b", second_upstream.url, groups=[])
    models = {m["upstream_id"]: m["id"] for m in gateway.admin.get(f"{API}/models").json()}
    gateway.admin.put(f"{API}/groups/{everyone_id(gateway)}/models/{models['gpt-test']}")
    _, key, client = user_client(gateway, "quinn")
    body = {"api_key": "sk-quinn-own-0001"}

    for method in ("PUT", "DELETE"):
        ghost = client.request(method, f"{API}/me/provider-keys/99999", json=body)
        probe = client.request(method, f"{API}/me/provider-keys/{hidden['id']}", json=body)
        assert probe.status_code == ghost.status_code == 404, probe.text
        assert "secret-lab-b" not in probe.text
        assert probe.json() == {
            "error": {**ghost.json()["error"], "message": f"no endpoint with id {hidden['id']}"}
        }
        assert ghost.json()["error"]["message"] == "no endpoint with id 99999"
    assert client.get(f"{API}/me/provider-keys").json() == []

    saved = client.put(f"{API}/me/provider-keys/{granted['id']}", json=body)
    assert saved.status_code == 200 and saved.json()["endpoint_name"] == "shared-a"
    admin_own = gateway.admin.put(f"{API}/me/provider-keys/{hidden['id']}", json=body)
    assert admin_own.status_code == 200

    with console(gateway, key) as web:
        account = web.get("/ui/account").text
        assert "shared-a" in account and "…0001" in account
        assert "secret-lab-b" not in account
        tried = web.post(
            f"/ui/account/provider-keys/{hidden['id']}",
            data={"csrf": csrf_of(web), "api_key": "sk-quinn-own-0002"},
        )
    assert tried.status_code == 303
    location = unquote_plus(tried.headers["location"])
    assert f"no endpoint with id {hidden['id']}" in location and "secret-lab-b" not in location
    assert [k["endpoint_id"] for k in client.get(f"{API}/me/provider-keys").json()] == [
        granted["id"]
    ]


def test_own_key_stays_clearable_after_access_ends(gateway: Gateway, upstream: Upstream) -> None:
    """A user whose grant to an endpoint is revoked still sees and clears the key they set
    there (it is theirs); after that the endpoint is answered as nonexistent."""
    endpoint = gateway.add_endpoint("was-mine", upstream.url)
    _, key, client = user_client(gateway, "rosa")
    path = f"{API}/me/provider-keys/{endpoint['id']}"
    assert client.put(path, json={"api_key": "sk-rosa-own-0001"}).status_code == 200
    gateway.admin.delete(f"{API}/groups/{everyone_id(gateway)}/endpoints/{endpoint['id']}")
    with console(gateway, key) as web:
        assert "no longer available to you" in web.get("/ui/account").text
    assert client.put(path, json={"api_key": "sk-rosa-own-0002"}).status_code == 404
    assert client.delete(path).status_code == 204
    gone = client.delete(path)
    assert gone.status_code == 404
    assert gone.json()["error"]["message"] == f"no endpoint with id {endpoint['id']}"
