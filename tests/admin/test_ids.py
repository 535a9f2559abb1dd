"""Ids are never handed out twice: a row created after another was deleted never takes
its id, and with it the usage records (which outlive the rows they name) or grants of
the deleted one. On SQLite and PostgreSQL alike."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Upstream
from tests.support.gateway import Gateway

API = "/admin/api/v1"
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    running = Gateway(tmp_path, usage_flush_interval=0.05).start()
    yield running
    running.stop()


def usage(gateway: Gateway, group_by: str, key: str | None = None) -> dict[str, Any]:
    """The usage report grouped by ``group_by``: everyone's, or ``key``'s own."""
    client = gateway.admin if key is None else gateway.client_for(key)
    path = f"{API}/usage" if key is None else f"{API}/me/usage"
    response = client.get(path, params={"group_by": group_by})
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def use(gateway: Gateway, key: str, requests: int = 1) -> None:
    """Send ``requests`` chat completions with ``key`` and wait until they are recorded."""
    before = usage(gateway, "model")["total"]["requests"]
    for _ in range(requests):
        gateway.openai(key).chat.completions.create(model="gpt-test", messages=HELLO)
    deadline = time.monotonic() + 10
    while usage(gateway, "model")["total"]["requests"] < before + requests:
        assert time.monotonic() < deadline, "usage records were not written"
        time.sleep(0.05)


def test_a_new_user_never_takes_a_deleted_users_id_or_usage(
    gateway: Gateway, upstream: Upstream
) -> None:
    """Alice (the newest user) makes requests and is deleted; Bob, created next, gets
    another id, and neither his own usage nor the admin's report gives him hers."""
    gateway.add_endpoint("up", upstream.url)
    alice = gateway.create_user("alice")
    alice_key = gateway.create_key(name="alice-key", user_id=alice["id"])
    use(gateway, alice_key["key"], requests=3)
    assert gateway.admin.delete(f"{API}/users/{alice['id']}").status_code == 204

    bob = gateway.create_user("bob")
    bob_key = gateway.create_key(name="bob-key", user_id=bob["id"])
    assert bob["id"] != alice["id"]
    assert bob_key["id"] != alice_key["id"]
    for group_by in ("model", "user", "key", "endpoint"):
        own = usage(gateway, group_by, bob_key["key"])
        assert own["rows"] == [], group_by
        assert own["total"]["requests"] == 0
    everyone = usage(gateway, "user")["rows"]
    assert [(row["group"], row["name"], row["requests"]) for row in everyone] == [
        (alice["id"], None, 3)
    ]


def test_a_new_key_never_takes_a_deleted_keys_id_or_usage(
    gateway: Gateway, upstream: Upstream
) -> None:
    """A key deleted with its user leaves its usage under its own id: the next key, even
    of a user who stays, is not credited with it."""
    gateway.add_endpoint("up", upstream.url)
    carol = gateway.create_user("carol")
    carol_key = gateway.create_key(name="carol-key", user_id=carol["id"])
    use(gateway, carol_key["key"], requests=2)
    assert gateway.admin.delete(f"{API}/users/{carol['id']}").status_code == 204

    fresh = gateway.create_key(name="fresh-key")
    assert fresh["id"] != carol_key["id"]
    by_key = usage(gateway, "key")["rows"]
    assert [(row["group"], row["name"], row["requests"]) for row in by_key] == [
        (carol_key["id"], None, 2)
    ]
    use(gateway, fresh["key"])
    by_key = {row["group"]: (row["name"], row["requests"]) for row in usage(gateway, "key")["rows"]}
    assert by_key == {carol_key["id"]: (None, 2), fresh["id"]: ("fresh-key", 1)}


def test_a_new_endpoint_never_takes_a_deleted_endpoints_id_or_usage(
    gateway: Gateway, upstream: Upstream, second_upstream: Upstream
) -> None:
    """An endpoint that served requests is deleted; the next endpoint and its models get
    new ids, and the usage report does not name the new endpoint for the old traffic."""
    old = gateway.add_endpoint("old", upstream.url)
    old_models = gateway.admin.get(f"{API}/models", params={"endpoint_id": old["id"]}).json()
    dave = gateway.create_user("dave")
    dave_key = gateway.create_key(name="dave-key", user_id=dave["id"])
    use(gateway, dave_key["key"], requests=2)
    assert gateway.admin.delete(f"{API}/endpoints/{old['id']}").status_code == 200

    new = gateway.add_endpoint("new", second_upstream.url)
    new_models = gateway.admin.get(f"{API}/models", params={"endpoint_id": new["id"]}).json()
    assert new["id"] != old["id"]
    assert old_models and new_models
    assert {m["id"] for m in new_models}.isdisjoint(m["id"] for m in old_models)
    for report in (usage(gateway, "endpoint"), usage(gateway, "endpoint", dave_key["key"])):
        assert [(row["group"], row["name"], row["requests"]) for row in report["rows"]] == [
            (old["id"], None, 2)
        ]


def test_a_new_group_never_takes_a_deleted_groups_id(gateway: Gateway) -> None:
    """A group created after the newest one was deleted gets a new id (and so none of
    the grants a stale reference to the old id might carry)."""
    first = gateway.admin.post(f"{API}/groups", json={"name": "first"}).json()
    assert gateway.admin.delete(f"{API}/groups/{first['id']}").status_code == 204
    second = gateway.admin.post(f"{API}/groups", json={"name": "second"}).json()
    assert second["id"] != first["id"]
