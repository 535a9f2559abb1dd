"""Users' own provider keys, and the self-service /me routes."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import Upstream
from tests.support.gateway import Gateway

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
