"""Nothing lost by maintenance, nothing unbounded in self-service: secret rotation keeps
every encrypted value, the last admin survives concurrent demotions, and one user
cannot pile up keys or store a huge provider key."""

from __future__ import annotations

import concurrent.futures
import secrets
from pathlib import Path

import httpx

from relaygate.db.tables import encrypted_columns
from tests.conftest import Upstream
from tests.support.gateway import Gateway
from tests.support.process import ServeProcess, cli_env, relaygate


def test_rotation_covers_every_encrypted_column() -> None:
    """The columns a rotation re-encrypts are found by name (``*_encrypted``), so one added
    later is rotated too; today they are the endpoints' keys, users' own keys and the
    responses stored for their owners."""
    found = {(table.name, column.name) for table, column in encrypted_columns()}
    assert found == {
        ("endpoints", "api_key_encrypted"),
        ("user_provider_keys", "api_key_encrypted"),
        ("stored_responses", "data_encrypted"),
    }


def test_rotation_keeps_users_own_provider_keys(tmp_path: Path, upstream: Upstream) -> None:
    """After `secrets rotate` and a restart with the new secret, a user's request still
    goes out with that user's own provider key, and the endpoint's key still works."""
    old_secret = secrets.token_urlsafe(32)
    admin_key = "rg-" + secrets.token_urlsafe(32)
    env = cli_env(tmp_path, RELAYGATE_SECRET_KEY=old_secret, RELAYGATE_ADMIN_KEY=admin_key)
    server = ServeProcess(tmp_path, env).wait_ready()
    try:
        admin = httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {admin_key}"})
        endpoint = admin.post(
            "/admin/api/v1/endpoints",
            json={"name": "up", "url": upstream.url, "api_key": "sk-shared-key-0001"},
        ).json()
        user = admin.post("/admin/api/v1/users", json={"name": "byok"}).json()
        key = admin.post("/admin/api/v1/keys", json={"user_id": user["id"]}).json()["key"]
        own = httpx.put(
            f"{server.url}/admin/api/v1/me/provider-keys/{endpoint['id']}",
            headers={"authorization": f"Bearer {key}"},
            json={"api_key": "sk-users-own-key-0002"},
        )
        assert own.status_code == 200, own.text
        admin.close()
    finally:
        assert server.stop() == 0
    new_secret = secrets.token_urlsafe(32)
    rotated = relaygate(tmp_path, "secrets", "rotate", "--new-key", new_secret, env=env)
    assert rotated.returncode == 0, rotated.stderr
    assert "re-encrypted 2" in rotated.stdout
    env["RELAYGATE_SECRET_KEY"] = new_secret
    server = ServeProcess(tmp_path, env).wait_ready()
    try:
        for bearer, expected in ((key, "sk-users-own-key-0002"), (admin_key, "sk-shared-key-0001")):
            response = httpx.post(
                server.url + "/v1/chat/completions",
                headers={"authorization": f"Bearer {bearer}"},
                json={"model": "gpt-test", "messages": []},
            )
            assert response.status_code == 200, response.text
            assert upstream.state.requests[-1].headers["authorization"] == f"Bearer {expected}"
    finally:
        server.stop()


def test_concurrent_demotions_keep_one_admin(tmp_path: Path) -> None:
    """The last two admins demoting each other at once: exactly one demotion succeeds,
    the other is refused with 409, and one admin is left (on SQLite and, when the suite
    runs there, PostgreSQL, where the admin rows are locked)."""
    gateway = Gateway(tmp_path).start()
    try:
        second = gateway.create_user("second", role="admin")
        second_key = gateway.create_key(user_id=second["id"])["key"]
        me = gateway.admin.get("/admin/api/v1/me").json()["user"]
        clients = {me["id"]: gateway.admin, second["id"]: gateway.client_for(second_key)}

        def demote_the_other(user_id: int) -> int:
            other = next(i for i in clients if i != user_id)
            answer = clients[user_id].patch(f"/admin/api/v1/users/{other}", json={"role": "user"})
            return answer.status_code

        for _ in range(5):
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                answers = dict(zip(clients, pool.map(demote_the_other, list(clients)), strict=True))
            assert sorted(answers.values()) == [200, 409], answers
            left = next(i for i, code in answers.items() if code == 200)
            users = clients[left].get("/admin/api/v1/users").json()
            assert [u["id"] for u in users if u["role"] == "admin"] == [left]
            demoted = next(i for i in clients if i != left)
            promoted = clients[left].patch(f"/admin/api/v1/users/{demoted}", json={"role": "admin"})
            assert promoted.status_code == 200
    finally:
        gateway.stop()


def test_a_user_cannot_pile_up_keys(tmp_path: Path) -> None:
    """Past max_keys_per_user keys that are not revoked, creating one more (self-service
    or by an admin) is refused with 409 too_many_keys; revoking one makes room."""
    gateway = Gateway(tmp_path, max_keys_per_user=3).start()
    try:
        user = gateway.create_user("hoarder")
        key = gateway.create_key(user_id=user["id"])["key"]
        me = gateway.client_for(key)
        made = [me.post("/admin/api/v1/me/keys", json={"name": f"k{i}"}) for i in range(3)]
        assert [r.status_code for r in made] == [201, 201, 409]
        assert made[2].json()["error"]["code"] == "too_many_keys"
        by_admin = gateway.admin.post("/admin/api/v1/keys", json={"user_id": user["id"]})
        assert by_admin.status_code == 409
        revoked = me.delete(f"/admin/api/v1/me/keys/{made[0].json()['id']}")
        assert revoked.status_code == 200
        assert me.post("/admin/api/v1/me/keys", json={"name": "again"}).status_code == 201
    finally:
        gateway.stop()


def test_a_provider_key_has_a_length_bound(tmp_path: Path, upstream: Upstream) -> None:
    """A 20 MB "provider key" is refused on every route that stores one (an endpoint's, a
    user's own) with 400 naming the setting, and nothing is stored."""
    gateway = Gateway(tmp_path).start()
    try:
        huge = "k" * 20_000
        refused = gateway.admin.post(
            "/admin/api/v1/endpoints",
            json={"name": "p", "url": upstream.url, "api_key": huge, "sync": False},
        )
        assert refused.status_code == 400 and "max_provider_key_bytes" in refused.text
        endpoint = gateway.add_endpoint("p", upstream.url)
        own = gateway.admin.put(
            f"/admin/api/v1/me/provider-keys/{endpoint['id']}", json={"api_key": huge}
        )
        assert own.status_code == 400 and "max_provider_key_bytes" in own.text
        assert huge.encode() not in gateway.dump()
    finally:
        gateway.stop()
