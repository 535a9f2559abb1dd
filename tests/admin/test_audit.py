"""The audit log: every administrative change through the admin API is written with its
actor, address, action and target, never a secret; only admins read it; its filters
and bounds; the JSON log lines; changes a sync makes are no one's."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from relaygate.db.tables import AuditEntry
from tests.conftest import Upstream
from tests.support import databases
from tests.support.gateway import Gateway
from tests.support.polling import eventually

API = "/admin/api/v1"
PROVIDER_KEY = "sk-upstream-audit-SECRET-1234567890"
ROTATED_KEY = "sk-upstream-audit-ROTATED-0987654321"


class Lines(logging.Handler):
    """Collects the messages of the ``relaygate.audit`` logger."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def audit_lines() -> Iterator[Lines]:
    logger = logging.getLogger("relaygate.audit")
    handler, level = Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def json_gateway(tmp_path: Path) -> Iterator[Gateway]:
    running = Gateway(tmp_path, audit_log_json=True).start()
    yield running
    running.stop()


def entries(gateway: Gateway, **params: Any) -> list[dict[str, Any]]:
    response = gateway.admin.get(f"{API}/audit", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def stored_rows(gateway: Gateway) -> str:
    """Every audit row as the database holds it, as one text to search."""

    async def read() -> str:
        async with gateway.ctx.sessions() as session:
            rows = (await session.scalars(select(AuditEntry))).all()
            columns = [attr.key for attr in AuditEntry.__mapper__.column_attrs]
            return "\n".join(repr({c: getattr(r, c) for c in columns}) for r in rows)

    return gateway.on_loop(read)


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def run_admin_actions(gateway: Gateway, upstream: Upstream) -> dict[str, Any]:
    """The admin actions of the existing admin tests, one after another; returns the
    ids and secrets they made."""
    upstream.state.api_key = PROVIDER_KEY
    admin = gateway.admin
    endpoint = gateway.add_endpoint("audited", upstream.url, api_key=PROVIDER_KEY)
    ok(admin.patch(f"{API}/endpoints/{endpoint['id']}", json={"api_key": ROTATED_KEY}))
    ok(admin.patch(f"{API}/endpoints/{endpoint['id']}", json={"enabled": False}))
    ok(admin.patch(f"{API}/endpoints/{endpoint['id']}", json={"enabled": True}))
    model = ok(admin.get(f"{API}/models", params={"endpoint_id": endpoint["id"]}))[0]
    ok(admin.patch(f"{API}/models/{model['id']}", json={"alias": "audited-model"}))
    user = gateway.create_user("carol")
    ok(admin.patch(f"{API}/users/{user['id']}", json={"email": "carol@example.org"}))
    ok(admin.patch(f"{API}/users/{user['id']}", json={"role": "admin"}))
    ok(admin.patch(f"{API}/users/{user['id']}", json={"role": "user"}))
    ok(admin.patch(f"{API}/users/{user['id']}", json={"budget": 5, "budget_period": "monthly"}))
    key = gateway.create_key(name="carol-key", user_id=user["id"])
    ok(admin.patch(f"{API}/keys/{key['id']}", json={"name": "carol-renamed"}))
    ok(admin.post(f"{API}/keys/{key['id']}/budget/reset"))
    ok(admin.delete(f"{API}/keys/{key['id']}"))
    group = ok(admin.post(f"{API}/groups", json={"name": "team-a"}), 201)
    ok(admin.put(f"{API}/groups/{group['id']}/users/{user['id']}"))
    ok(admin.put(f"{API}/groups/{group['id']}/models/{model['id']}"))
    ok(admin.put(f"{API}/groups/{group['id']}/endpoints/{endpoint['id']}"))
    ok(admin.delete(f"{API}/groups/{group['id']}/users/{user['id']}"))
    ok(admin.delete(f"{API}/groups/{group['id']}"), 204)
    ok(admin.delete(f"{API}/users/{user['id']}"), 204)
    ok(admin.delete(f"{API}/endpoints/{endpoint['id']}"))
    return {
        "endpoint": endpoint["id"],
        "model": model["id"],
        "user": user["id"],
        "key": key["id"],
        "group": group["id"],
        "secrets": [PROVIDER_KEY, ROTATED_KEY, key["key"], gateway.admin_key],
    }


def test_every_admin_action_is_recorded_without_secrets(
    json_gateway: Gateway, upstream: Upstream, audit_lines: Lines
) -> None:
    """Each admin API change writes one entry naming the admin, their address, the
    action and its target; no provider key, API key or hash of one is in any entry
    or JSON log line."""
    gateway = json_gateway
    before = {e["id"] for e in entries(gateway)}
    made = run_admin_actions(gateway, upstream)
    found = [e for e in reversed(entries(gateway)) if e["id"] not in before]
    got = [(e["action"], e["target_type"], e["target_id"]) for e in found]
    ep, md, us, ky, gr = (str(made[k]) for k in ("endpoint", "model", "user", "key", "group"))
    assert got == [
        ("endpoint.create", "endpoint", ep),
        ("group.endpoint.add", "group", "1"),  # granted to everyone, as created
        ("endpoint.update", "endpoint", ep),
        ("endpoint.update", "endpoint", ep),
        ("endpoint.update", "endpoint", ep),
        ("model.update", "model", md),
        ("user.create", "user", us),
        ("user.update", "user", us),
        ("user.update", "user", us),
        ("user.update", "user", us),
        ("budget.set", "user", us),
        ("key.create", "key", ky),
        ("key.update", "key", ky),
        ("budget.reset", "key", ky),
        ("key.revoke", "key", ky),
        ("group.create", "group", gr),
        ("group.member.add", "group", gr),
        ("group.model.add", "group", gr),
        ("group.endpoint.add", "group", gr),
        ("group.member.remove", "group", gr),
        ("group.delete", "group", gr),
        ("user.delete", "user", us),
        ("endpoint.delete", "endpoint", ep),
    ]
    for entry in found:
        assert (entry["actor_type"], entry["actor_name"]) == ("user", "admin"), entry
        assert entry["actor_id"] == found[0]["actor_id"] and entry["address"] == "127.0.0.1"
    by_action = {e["action"]: e for e in found}
    created = by_action["endpoint.create"]
    assert created["target_name"] == "audited"
    assert created["details"]["values"]["url"] == upstream.url
    assert "api_key_encrypted" in created["details"]["fields"]
    assert "api_key_encrypted" not in created["details"]["values"]
    assert found[1]["target_name"] == "everyone"
    rotation = found[2]["details"]  # names only
    assert rotation == {"fields": ["api_key_encrypted", "api_key_hint"], "values": {}}
    assert found[3]["details"]["values"] == {"enabled": False}
    assert by_action["model.update"]["details"]["values"] == {"alias": "audited-model"}
    assert found[8]["details"]["values"] == {"role": "admin"}
    assert found[9]["details"]["values"] == {"role": "user"}
    assert found[9]["target_name"] == "carol"
    assert by_action["budget.set"]["details"]["values"] == {
        "budget": 5.0,
        "budget_period": "monthly",
    }
    assert "key_hash" in by_action["key.create"]["details"]["fields"]
    assert by_action["key.create"]["details"]["values"]["user_id"] == made["user"]
    assert by_action["group.member.add"]["target_name"] == "team-a"
    assert by_action["group.member.add"]["details"]["values"] == {"user_id": made["user"]}
    assert by_action["user.delete"]["target_name"] == "carol"
    stored, api_text = stored_rows(gateway), str(found)
    assert len(audit_lines.lines) >= len(found)
    logged = "\n".join(audit_lines.lines)
    assert '"action":"endpoint.create"' in logged and '"action":"key.revoke"' in logged
    for secret in made["secrets"]:
        for text in (stored, api_text, logged):
            assert secret not in text
            assert secret[-12:] not in text  # nor a telling part of one


def test_a_sync_is_no_ones_change(gateway: Gateway, upstream: Upstream) -> None:
    """Models a sync finds are not entries, even when an admin's request ran the sync;
    the first admin and its imported key are the system's."""
    upstream.state.models = ["m-1", "m-2", "m-3"]
    gateway.add_endpoint("synced", upstream.url)
    ok(gateway.admin.post(f"{API}/endpoints/{gateway.endpoint('synced')['id']}/sync"))
    found = entries(gateway)
    assert not [e for e in found if e["action"].startswith("model.")]
    system = [(e["actor_type"], e["action"]) for e in found if e["actor_type"] != "user"]
    assert system == [("system", "key.create"), ("system", "user.create")]


def test_only_admins_read_the_log(gateway: Gateway) -> None:
    """A user's key gets 403 from the route; without a key, 401."""
    user = gateway.create_user("dave")
    key = gateway.create_key(name="dave-key", user_id=user["id"])["key"]
    response = gateway.client_for(key).get(f"{API}/audit")
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error" or response.json()["error"]
    anonymous = gateway.client_for("rg-not-a-key").get(f"{API}/audit")
    assert anonymous.status_code == 401


def test_filters_and_pages(gateway: Gateway) -> None:
    """from/to, actor (name or id), action (exact or prefix) narrow the list; pages
    follow with after=last_id until has_more is false."""
    for name in ("u1", "u2", "u3"):
        gateway.create_user(name)
    group = ok(gateway.admin.post(f"{API}/groups", json={"name": "g"}), 201)
    users = entries(gateway, action="user.create")
    assert [e["target_name"] for e in users] == ["u3", "u2", "u1", "admin"]
    assert [e["action"] for e in entries(gateway, action="group.")] == ["group.create"]
    assert entries(gateway, action="group") == []  # exact: no action is called just "group"
    admin_id = users[0]["actor_id"]
    assert len(entries(gateway, actor="admin")) == 4
    assert len(entries(gateway, actor=str(admin_id))) == 4
    assert {e["actor_name"] for e in entries(gateway, actor="system")} == {"system"}
    assert entries(gateway, actor="nobody") == []
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    earlier = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert entries(gateway, **{"from": later}) == []
    assert len(entries(gateway, **{"from": earlier, "to": later})) == 6
    assert entries(gateway, to=earlier) == []
    seen: list[int] = []
    page = ok(gateway.admin.get(f"{API}/audit", params={"limit": 2}))
    while True:
        seen += [e["id"] for e in page["data"]]
        assert page["last_id"] == page["data"][-1]["id"]
        if not page["has_more"]:
            break
        page = ok(gateway.admin.get(f"{API}/audit", params={"limit": 2, "after": seen[-1]}))
    assert seen == sorted(seen, reverse=True) and len(seen) == 6
    assert group["name"] == "g"


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 501},
        {"after": 0},
        {"after": 2**40},
        {"action": "x" * 65},
        {"action": "endpoint.%"},
        {"action": "End Point"},
        {"actor": ""},
        {"actor": "a" * 201},
        {"from": "yesterday"},
        {"to": "2026-13-45"},
        {"from": "2026-12-02", "to": "2026-12-01"},
    ],
)
def test_bounds_are_refused(gateway: Gateway, params: dict[str, Any]) -> None:
    """A filter out of bounds is a 400 in OpenAI's error shape, before any query."""
    response = gateway.admin.get(f"{API}/audit", params=params)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert gateway.admin.get("/healthz").status_code == 200


def test_seeding_is_the_configs(tmp_path: Path, upstream: Upstream) -> None:
    """Endpoints written from the config file at first start are ``config``'s entries;
    their key is not in them."""
    upstream.state.api_key = PROVIDER_KEY
    seeded = [{"name": "seeded", "url": upstream.url, "api_key": PROVIDER_KEY}]
    running = Gateway(tmp_path / "seed", endpoints=seeded).start()
    try:
        deadline = time.monotonic() + 20
        while running.endpoint("seeded")["sync"]["status"] == "never":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        found = entries(running, actor="config")
        assert [(e["actor_type"], e["action"], e["target_name"]) for e in found][-1] == (
            "config",
            "endpoint.create",
            "seeded",
        )
        assert PROVIDER_KEY not in str(found) and PROVIDER_KEY not in stored_rows(running)
    finally:
        running.stop()


def test_entries_past_the_retention_are_deleted(tmp_path: Path) -> None:
    """With ``audit_retention_days`` set, a starting server deletes the entries older
    than that, keeps the rest and records what it deleted (``audit.prune``); unset (the
    default), nothing is ever deleted."""
    url = databases.migrated_database_url(tmp_path)
    secret = secrets.token_urlsafe(32)
    first = Gateway(tmp_path, database_url=url, secret_key=secret).start()
    try:
        for name in ("old-1", "old-2", "new-1"):
            first.create_user(name)

        async def age(names: tuple[str, ...], days: float) -> None:
            async with first.ctx.sessions.begin() as session:
                await session.execute(
                    update(AuditEntry)
                    .where(AuditEntry.target_name.in_(names))
                    .values(created_at=datetime.now(UTC) - timedelta(days=days))
                )

        first.on_loop(lambda: age(("old-1", "old-2"), 3))
        first.on_loop(lambda: age(("new-1",), 0.5))
    finally:
        first.stop()
    kept_all = Gateway(tmp_path, database_url=url, secret_key=secret).start()
    try:
        assert {"old-1", "old-2", "new-1"} <= {e["target_name"] for e in entries(kept_all)}
    finally:
        kept_all.stop()
    pruning = Gateway(tmp_path, database_url=url, secret_key=secret, audit_retention_days=1)
    pruning.start()
    try:
        remaining = eventually(
            lambda: {e["target_name"] for e in entries(pruning)},
            lambda names: "old-1" not in names and "old-2" not in names,
        )
        assert {"new-1", "admin"} <= remaining and not {"old-1", "old-2"} & remaining
        [pruned] = entries(pruning, action="audit.prune")
        assert pruned["actor_name"] == "system" and pruned["details"]["values"]["deleted"] == 2
    finally:
        pruning.stop()
        databases.drop(url)
