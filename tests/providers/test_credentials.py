"""Keys kept in the environment, and custom auth headers."""

from __future__ import annotations

import pytest

from tests.conftest import Upstream
from tests.support.gateway import Gateway

API = "/admin/api/v1"


def test_key_from_environment_is_used_and_never_stored(
    gateway: Gateway, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """api_key_env names a variable read when needed; the database never holds the key."""
    key = "sk-from-the-environment-31337"
    monkeypatch.setenv("RG_TEST_PROVIDER_API_KEY", key)
    # The variable is gone before the gateway stops: a rebuild then would read no key.
    gateway.checks_snapshot = False
    upstream.state.api_key = key
    created = gateway.add_endpoint("env", upstream.url, api_key_env="RG_TEST_PROVIDER_API_KEY")
    assert created["sync"]["status"] == "ok"
    assert (created["api_key_source"], created["api_key_env"]) == (
        "env",
        "RG_TEST_PROVIDER_API_KEY",
    )
    assert created["has_api_key"] is True and created["api_key_hint"] is None
    gateway.openai().chat.completions.create(model="gpt-test", messages=[])
    assert upstream.state.requests[-1].headers["authorization"] == f"Bearer {key}"
    assert key.encode() not in gateway.dump()


def test_missing_environment_variable_is_named(
    gateway: Gateway, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset variable is a sync error naming it, and the models are not routed."""
    monkeypatch.delenv("RG_TEST_UNSET_API_KEY", raising=False)
    created = gateway.add_endpoint("env", upstream.url, api_key_env="RG_TEST_UNSET_API_KEY")
    assert created["sync"]["status"] == "error"
    assert "RG_TEST_UNSET_API_KEY" in created["sync"]["error"]
    assert gateway.admin.post("/v1/chat/completions", json={"model": "gpt-test"}).status_code == 404


def test_key_kinds_are_exclusive_and_switchable(
    gateway: Gateway, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    both = gateway.admin.post(
        f"{API}/endpoints",
        json={"name": "x", "url": upstream.url, "api_key": "k", "api_key_env": "K"},
    )
    assert both.status_code == 400
    bad = gateway.admin.post(
        f"{API}/endpoints", json={"name": "x", "url": upstream.url, "api_key_env": "not a name"}
    )
    assert bad.status_code == 400
    created = gateway.add_endpoint("x", upstream.url, api_key="sk-stored-key-0042")
    monkeypatch.setenv("RG_TEST_SWITCH_API_KEY", "sk-env")
    switched = gateway.admin.patch(
        f"{API}/endpoints/{created['id']}", json={"api_key_env": "RG_TEST_SWITCH_API_KEY"}
    ).json()
    assert (switched["api_key_source"], switched["api_key_hint"]) == ("env", None)
    back = gateway.admin.patch(
        f"{API}/endpoints/{created['id']}", json={"api_key": "sk-stored-key-0043"}
    ).json()
    assert (back["api_key_source"], back["api_key_env"]) == ("stored", None)


def test_custom_auth_header_for_listing_and_forwarding(
    gateway: Gateway, upstream: Upstream
) -> None:
    """An Azure-style endpoint gets its key in `api-key`, with no prefix, everywhere."""
    upstream.state.api_key = "azure-key-000777"
    upstream.state.auth_header, upstream.state.auth_prefix = "api-key", ""
    created = gateway.add_endpoint(
        "azure", upstream.url, api_key="azure-key-000777", auth_header="api-key", auth_prefix=""
    )
    assert created["sync"]["status"] == "ok"
    assert (created["auth_header"], created["auth_prefix"]) == ("api-key", "")
    client = gateway.openai(default_headers={"api-key": gateway.admin_key})
    client.chat.completions.create(model="gpt-test", messages=[])
    seen = upstream.state.requests[-1].headers
    assert seen["api-key"] == "azure-key-000777"
    assert gateway.admin_key not in str(seen)
    assert "authorization" not in seen
    checked = gateway.admin.post(
        f"{API}/endpoints/validate",
        json={"url": upstream.url, "api_key": "azure-key-000777", "auth_header": "api-key"},
    ).json()
    assert checked["ok"] is True


def test_environment_names_are_restricted(gateway: Gateway, upstream: Upstream) -> None:
    """relaygate's own secrets and names outside api_key_env_patterns cannot be read."""
    for name in ("RELAYGATE_SECRET_KEY", "HOME", "RELAYGATE_ADMIN_API_KEY"):
        response = gateway.admin.post(
            f"{API}/endpoints", json={"name": "x", "url": upstream.url, "api_key_env": name}
        )
        assert response.status_code == 400, name
        assert "api_key_env_patterns" in response.json()["error"]["message"]


def test_patch_key_kinds_and_header(gateway: Gateway, upstream: Upstream) -> None:
    """PATCH refuses both key kinds at once; clearing the header clears its prefix."""
    created = gateway.add_endpoint("x", upstream.url, auth_header="api-key", auth_prefix="Tok ")
    path = f"{API}/endpoints/{created['id']}"
    both = gateway.admin.patch(path, json={"api_key": "k-0001", "api_key_env": "A_API_KEY"})
    assert both.status_code == 400
    cleared = gateway.admin.patch(path, json={"auth_header": None}).json()
    assert (cleared["auth_header"], cleared["auth_prefix"]) == (None, None)
    bad = gateway.admin.patch(path, json={"auth_header": "x-key", "auth_prefix": "T\u2009"})
    assert bad.status_code == 400
