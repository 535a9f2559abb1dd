"""Who serves a public name, and who can change that, tried as an attacker: a third
party's listing bringing a name another endpoint holds or reserves, one user's inputs
cooling the shared endpoint down, a limited admin key lifting its own ceiling. Every
upstream here records what it received, so "refused" means nothing arrived there."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.proxy.test_bad_requests import error_of
from tests.proxy.test_trust_boundary import BODY, user_with_one_grant
from tests.support.gateway import Gateway
from tests.support.hostile import RecordingUpstream, Reply, chat_reply, json_reply
from tests.support.upstream import Seen

API = "/admin/api/v1"


@pytest.fixture
def third_party() -> Iterator[RecordingUpstream]:
    """An endpoint's upstream whose listing brings names other endpoints hold."""
    server = RecordingUpstream()
    yield server
    server.stop()


def held_by(gateway: Gateway, endpoint_id: int) -> list[str | None]:
    """For each model of the endpoint, the name of the endpoint holding its name instead
    (None where the model serves it)."""
    models = gateway.admin.get(f"{API}/models", params={"endpoint_id": endpoint_id}).json()
    return [m["conflict"] and m["conflict"]["held_by_endpoint_name"] for m in models]


def test_disabled_holder_endpoint_keeps_its_name(
    gateway: Gateway, recorder: RecordingUpstream, third_party: RecordingUpstream
) -> None:
    """Disabling the endpoint that holds a name keeps the name held: a third party listing
    it stays in conflict and gets no traffic, and the name answers 404 model_not_found."""
    operator = gateway.add_endpoint("operator", recorder.url)
    third = gateway.add_endpoint("third", third_party.url)
    assert held_by(gateway, third["id"]) == ["operator"]
    gateway.admin.patch(
        f"{API}/endpoints/{operator['id']}", json={"enabled": False}
    ).raise_for_status()
    key = gateway.create_key(user_id=gateway.create_user("u")["id"])["key"]
    response = gateway.client_for(key).post("/v1/chat/completions", json=BODY)
    assert response.status_code == 404
    assert error_of(response)["code"] == "model_not_found"
    assert held_by(gateway, third["id"]) == ["operator"]
    assert third_party.state.requests == [] and recorder.state.requests == []


def test_disabled_holder_keeps_its_name(
    gateway: Gateway, recorder: RecordingUpstream, third_party: RecordingUpstream
) -> None:
    """Disabling the model that holds a name keeps the name held: a third party listing it
    stays in conflict and gets no traffic, and the name answers 404 model_not_found."""
    operator = gateway.add_endpoint("operator", recorder.url)
    third = gateway.add_endpoint("third", third_party.url)
    (model,) = gateway.admin.get(f"{API}/models", params={"endpoint_id": operator["id"]}).json()
    gateway.admin.patch(f"{API}/models/{model['id']}", json={"enabled": False}).raise_for_status()
    key = gateway.create_key(user_id=gateway.create_user("u")["id"])["key"]
    response = gateway.client_for(key).post("/v1/chat/completions", json=BODY)
    assert response.status_code == 404
    assert error_of(response)["code"] == "model_not_found"
    assert held_by(gateway, third["id"]) == ["operator"]
    assert third_party.state.requests == [] and recorder.state.requests == []


def test_fallback_name_is_reserved_for_its_models_endpoint(
    gateway: Gateway, recorder: RecordingUpstream, third_party: RecordingUpstream
) -> None:
    """A name chosen as a model's fallback, not yet served, is reserved: a third party
    listing it is in conflict with the reserving model, gets none of that model's traffic
    when its endpoint fails (the client gets the endpoint's 503), nor any of its own."""

    async def down(seen: Seen) -> Reply:
        return json_reply(503, {"error": {"message": "down"}})

    recorder.state.answer = down
    operator = gateway.add_endpoint("operator", recorder.url)
    (model,) = gateway.admin.get(f"{API}/models", params={"endpoint_id": operator["id"]}).json()
    gateway.admin.patch(
        f"{API}/models/{model['id']}", json={"fallback_model": "gpt-backup"}
    ).raise_for_status()
    third_party.state.models = ["gpt-backup"]
    third = gateway.add_endpoint("third", third_party.url)
    assert held_by(gateway, third["id"]) == ["operator"]
    client = gateway.client_for(gateway.create_key(user_id=gateway.create_user("u")["id"])["key"])
    response = client.post("/v1/chat/completions", json=BODY)
    assert response.status_code == 503
    assert response.headers["x-relaygate-endpoint"] == "operator"
    assert len(recorder.state.requests) == 1
    backup = client.post("/v1/chat/completions", json={**BODY, "model": "gpt-backup"})
    assert backup.status_code == 404
    assert error_of(backup)["code"] == "model_not_found"
    assert third_party.state.requests == []


def test_one_users_failures_cool_the_endpoint_for_that_user_alone(
    gateway: Gateway, recorder: RecordingUpstream
) -> None:
    """Requests of one user that the shared endpoint answers with 500 (what many
    self-hosted servers answer to bad input) cool the endpoint down for that user alone:
    other users are still served."""

    async def crash_on(seen: Seen) -> Reply:
        if b"crash" in seen.body:
            return json_reply(500, {"error": {"message": "internal"}})
        return chat_reply("gpt-test")

    recorder.state.answer = crash_on
    endpoint = gateway.add_endpoint("shared", recorder.url)
    mallory = gateway.client_for(user_with_one_grant(gateway, endpoint["id"], "gpt-test"))
    crash = {**BODY, "messages": [{"role": "user", "content": "crash"}]}
    for _ in range(3):
        assert mallory.post("/v1/chat/completions", json=crash).status_code == 500
    cooled = mallory.post("/v1/chat/completions", json=BODY)
    assert cooled.status_code == 503
    assert error_of(cooled)["code"] == "endpoints_cooling_down"
    assert len(recorder.state.requests) == 3
    assert gateway.endpoint("shared")["health"]["cooldown_until"] is None
    alice = gateway.create_key(user_id=gateway.create_user("alice")["id"])["key"]
    response = gateway.client_for(alice).post("/v1/chat/completions", json=BODY)
    assert response.status_code == 200, response.text
    assert len(recorder.state.requests) == 4


def test_limited_admin_key_cannot_lift_its_users_limit(gateway: Gateway) -> None:
    """An admin key under its user's rate limit can neither clear nor raise that limit,
    nor mint a key above it for another user: each is 400 on requests_per_minute, and the
    limit stays."""
    ops = gateway.create_user("ops", role="admin")
    gateway.admin.patch(
        f"{API}/users/{ops['id']}", json={"requests_per_minute": 5}
    ).raise_for_status()
    limited = gateway.client_for(gateway.create_key(user_id=ops["id"])["key"])
    helper = gateway.create_user("helper", role="admin")
    attempts = [
        limited.post(f"{API}/keys", json={"requests_per_minute": 100}),
        limited.patch(f"{API}/users/{ops['id']}", json={"requests_per_minute": None}),
        limited.patch(f"{API}/users/{ops['id']}", json={"requests_per_minute": 50}),
        limited.post(f"{API}/keys", json={"user_id": helper["id"], "requests_per_minute": 100}),
    ]
    for refused in attempts:
        assert refused.status_code == 400, refused.text
        error = error_of(refused)
        assert (error["code"], error["param"]) == ("invalid_request", "requests_per_minute")
    assert gateway.admin.get(f"{API}/users/{ops['id']}").json()["requests_per_minute"] == 5
