"""Users and API keys through the admin API."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest

from tests.conftest import Upstream
from tests.support.gateway import Gateway

API = "/admin/api/v1"


def test_key_is_shown_once_and_stored_as_hash(gateway: Gateway) -> None:
    """Create returns the key (rg- + 43 chars) once; listing shows only its prefix."""
    user = gateway.create_user("bob")
    created = gateway.create_key(user_id=user["id"], name="bob laptop")
    assert created["key"].startswith("rg-") and len(created["key"]) == 46
    assert created["prefix"] == created["key"][:9]
    listed = gateway.admin.get(f"{API}/keys").json()
    assert created["key"] not in str(listed)
    assert {k["name"] for k in listed} >= {"bob laptop", "RELAYGATE_ADMIN_KEY"}


def test_key_without_user_belongs_to_caller(gateway: Gateway) -> None:
    created = gateway.create_key(name="mine")
    admin_key = next(
        k for k in gateway.admin.get(f"{API}/keys").json() if k["name"] == "RELAYGATE_ADMIN_KEY"
    )
    assert created["user_id"] == admin_key["user_id"]


def test_user_crud_and_role(gateway: Gateway) -> None:
    """Users are created, shown, changed and deleted; their keys go with them."""
    user = gateway.create_user("carol")
    assert user["role"] == "user" and user["email"] is None
    changed = gateway.admin.patch(
        f"{API}/users/{user['id']}", json={"email": "c@example.org", "role": "admin"}
    ).json()
    assert (changed["email"], changed["role"]) == ("c@example.org", "admin")
    key = gateway.create_key(user_id=user["id"])["key"]
    assert (
        gateway.admin.get(
            f"{API}/endpoints", headers={"authorization": f"Bearer {key}"}
        ).status_code
        == 200
    )
    assert gateway.admin.delete(f"{API}/users/{user['id']}").status_code == 204
    with pytest.raises(openai.AuthenticationError):
        gateway.openai(key=key).models.list()
    assert gateway.admin.get(f"{API}/users/{user['id']}").status_code == 404
    bad = gateway.admin.post(f"{API}/users", json={"name": "d", "role": "root"})
    assert bad.status_code == 400


def test_last_admin_cannot_be_removed(gateway: Gateway) -> None:
    admins = [u for u in gateway.admin.get(f"{API}/users").json() if u["role"] == "admin"]
    assert len(admins) == 1
    assert gateway.admin.delete(f"{API}/users/{admins[0]['id']}").status_code == 409


def test_expiry_in_the_past_is_400(gateway: Gateway) -> None:
    response = gateway.admin.post(f"{API}/keys", json={"expires_at": "2001-01-01T00:00:00Z"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "expires_at"


def test_last_used_at_is_written_after_use(tmp_path: Path, upstream: Upstream) -> None:
    """A used key's last_used_at is written by the background flush (the request path
    itself runs no SQL: see tests/proxy/test_no_database.py)."""
    gateway = Gateway(tmp_path, key_usage_flush_interval=0.3).start()
    try:
        created = gateway.create_key(name="used")
        assert created["last_used_at"] is None
        gateway.openai(key=created["key"]).models.list()
        deadline = time.monotonic() + 5
        while True:
            keys = {k["id"]: k for k in gateway.admin.get(f"{API}/keys").json()}
            if keys[created["id"]]["last_used_at"]:
                break
            assert time.monotonic() < deadline, "last_used_at was never written"
            time.sleep(0.1)
    finally:
        gateway.stop()


def test_a_disabled_user_gets_no_new_key_and_cannot_be_the_last_admin(gateway: Gateway) -> None:
    """Disabling revokes a user's keys: an admin cannot hand them a fresh one while they
    stay disabled, and a disabled admin does not count as the admin left when the only
    enabled one is demoted."""
    dave = gateway.create_user("dave", role="admin")
    assert gateway.admin.patch(f"{API}/users/{dave['id']}", json={"disabled": True}).is_success
    refused = gateway.admin.post(f"{API}/keys", json={"user_id": dave["id"], "name": "again"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "user_disabled"
    me = gateway.admin.get(f"{API}/me").json()["user"]
    demoted = gateway.admin.patch(f"{API}/users/{me['id']}", json={"role": "user"})
    assert demoted.status_code in (400, 409), demoted.text
    assert gateway.admin.get(f"{API}/me").json()["user"]["role"] == "admin"
    assert gateway.admin.patch(f"{API}/users/{dave['id']}", json={"disabled": False}).is_success
    assert gateway.admin.post(f"{API}/keys", json={"user_id": dave["id"]}).status_code == 201
