"""No key mints a broader key: an admin key's own model limit, expiry and rate limits
are a ceiling on every key it creates or changes, for any user."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Upstream
from tests.support.gateway import Gateway

API = "/admin/api/v1"
EXPIRY = "2099-01-01T00:00:00Z"


def limits_of(key: dict[str, Any]) -> tuple[Any, ...]:
    return (
        key["allowed_models"],
        key["expires_at"][:10] if key["expires_at"] else None,
        key["requests_per_minute"],
        key["tokens_per_minute"],
    )


@pytest.fixture
def limited(gateway: Gateway, upstream: Upstream) -> httpx.Client:
    """A client holding an admin key limited to model 'a', expiring in 2099, at 10
    requests and 1000 tokens a minute; the upstream serves 'a' and 'b'."""
    upstream.state.models = ["a", "b"]
    gateway.add_endpoint("up", upstream.url)
    ops = gateway.create_user("ops", role="admin")
    key = gateway.create_key(
        user_id=ops["id"],
        allowed_models=["a"],
        expires_at=EXPIRY,
        requests_per_minute=10,
        tokens_per_minute=1000,
    )
    return gateway.client_for(key["key"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("allowed_models", ["a", "b"]),
        ("expires_at", "2100-01-01T00:00:00Z"),
        ("requests_per_minute", 11),
        ("tokens_per_minute", 1001),
    ],
)
def test_limited_admin_key_cannot_create_a_broader_key_for_another_user(
    gateway: Gateway, limited: httpx.Client, field: str, value: object
) -> None:
    """Asking POST /keys for more models, a later expiry or a higher rate than the calling
    admin key has is 400 naming that field, whichever user the key is for."""
    victim = gateway.create_user("mallory")
    for owner in ({"user_id": victim["id"]}, {}):
        response = limited.post(f"{API}/keys", json={"name": "wide", field: value, **owner})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == field
    names = [k["name"] for k in gateway.admin.get(f"{API}/keys").json()]
    assert "wide" not in names


def test_key_created_by_a_limited_admin_key_inherits_its_limits(
    gateway: Gateway, limited: httpx.Client
) -> None:
    """A key a limited admin key creates for another user without limits takes the
    caller's model limit, expiry and rates, and reaches only the caller's models."""
    user = gateway.create_user("nina")
    created = limited.post(f"{API}/keys", json={"name": "for-nina", "user_id": user["id"]})
    assert created.status_code == 201, created.text
    assert created.json()["user_id"] == user["id"]
    assert limits_of(created.json()) == (["a"], "2099-01-01", 10, 1000)
    assert [m.id for m in gateway.openai(key=created.json()["key"]).models.list()] == ["a"]
    narrower = limited.post(
        f"{API}/keys", json={"user_id": user["id"], "requests_per_minute": 4, "allowed_models": []}
    )
    assert limits_of(narrower.json()) == ([], "2099-01-01", 4, 1000)


def test_limited_admin_key_cannot_lift_a_keys_rate_limit(
    gateway: Gateway, limited: httpx.Client
) -> None:
    """PATCH /keys by a rate-limited admin key may neither clear a limit nor raise it
    above the caller's own; renaming and lowering still work."""
    user = gateway.create_user("otto")
    key = gateway.create_key(user_id=user["id"], requests_per_minute=5, tokens_per_minute=500)
    path = f"{API}/keys/{key['id']}"
    for field, value in (
        ("requests_per_minute", None),
        ("tokens_per_minute", None),
        ("requests_per_minute", 11),
        ("tokens_per_minute", 5000),
    ):
        response = limited.patch(path, json={field: value})
        assert response.status_code == 400, (field, value, response.text)
        assert response.json()["error"]["param"] == field
    shown = next(k for k in gateway.admin.get(f"{API}/keys").json() if k["id"] == key["id"])
    assert (shown["requests_per_minute"], shown["tokens_per_minute"]) == (5, 500)
    renamed = limited.patch(path, json={"name": "otto-bot", "requests_per_minute": 10})
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["name"], renamed.json()["requests_per_minute"]) == ("otto-bot", 10)


def test_unlimited_admin_key_keeps_full_power(gateway: Gateway, upstream: Upstream) -> None:
    """An admin key without model limit, expiry or rate limits creates unlimited keys for
    anyone and clears or raises any key's limits."""
    gateway.add_endpoint("up", upstream.url)
    user = gateway.create_user("pia")
    free = gateway.create_key(user_id=user["id"])
    assert limits_of(free) == (None, None, None, None)
    fast = gateway.create_key(user_id=user["id"], requests_per_minute=1_000_000)
    path = f"{API}/keys/{fast['id']}"
    cleared = gateway.admin.patch(path, json={"requests_per_minute": None})
    assert cleared.json()["requests_per_minute"] is None
    raised = gateway.admin.patch(path, json={"tokens_per_minute": 10_000_000})
    assert raised.json()["tokens_per_minute"] == 10_000_000
