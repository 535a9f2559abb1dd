"""The console and the audit log: sign-ins, sign-outs and changes made from the console
are entries of the signed-in user; ``/ui/audit`` lists them for admins alone, filtered
and paged, with no secret on the page."""

from __future__ import annotations

import re
from typing import Any

from tests.support.gateway import Gateway
from tests.web.conftest import console, csrf_of, signed_in, table_rows

API = "/admin/api/v1"


def entries(gateway: Gateway, **params: Any) -> list[dict[str, Any]]:
    response = gateway.admin.get(f"{API}/audit", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def test_console_sessions_and_changes_are_recorded(gateway: Gateway) -> None:
    """Signing in and out, and a user and key created from the console, are entries of
    the admin from the browser's address; the new key's secret is in none of them, nor
    on the audit page."""
    with console(gateway) as client:
        csrf = csrf_of(client, "/ui/people")
        made = client.post("/ui/users", data={"csrf": csrf, "name": "erin"})
        assert made.status_code == 303
        erin = next(u for u in gateway.admin.get(f"{API}/users").json() if u["name"] == "erin")
        page = client.post(f"/ui/users/{erin['id']}/keys", data={"csrf": csrf, "name": "k1"})
        assert page.status_code in (200, 303), page.text
        key_text = page.text
        audit_page = client.get("/ui/audit")
        assert client.post("/ui/logout", data={"csrf": csrf}).status_code == 303
    found = entries(gateway)
    actions = [e["action"] for e in reversed(found) if e["actor_type"] == "user"]
    assert actions == ["session.create", "user.create", "key.create", "session.delete"]
    for entry in found:
        if entry["actor_type"] == "user":
            assert entry["actor_name"] == "admin" and entry["address"] == "127.0.0.1"
    signed = next(e for e in found if e["action"] == "session.create")
    assert signed["target_name"] == "admin" and signed["details"]["values"]["method"] == "api_key"
    created = next(e for e in found if e["action"] == "key.create" and e["actor_type"] == "user")
    assert created["target_name"] == "k1"
    assert audit_page.status_code == 200
    rows = table_rows(audit_page.text, "audit")
    assert any("user.create" in " ".join(row) and "erin" in " ".join(row) for row in rows)
    secrets = set(re.findall(r"rg-[A-Za-z0-9_-]{30,}", key_text))
    assert secrets, "the new key is shown once on the user's page"
    for secret in [*secrets, gateway.admin_key]:
        assert secret not in audit_page.text and secret not in str(found)


def test_the_page_is_for_admins_and_filters(gateway: Gateway) -> None:
    """A user's session gets 403 and no link; an admin's filters by action prefix and
    actor, and a bad date goes back with a message, the process unharmed."""
    user = gateway.create_user("frank")
    key = gateway.create_key(name="frank-key", user_id=user["id"])["key"]
    with console(gateway, key) as client:
        assert client.get("/ui/audit").status_code == 403
        assert "/ui/audit" not in client.get("/ui/account").text
    with console(gateway) as client:
        assert 'href="/ui/audit"' in client.get("/ui/endpoints").text
        only_keys = table_rows(client.get("/ui/audit", params={"action": "key."}).text, "audit")
        assert len(only_keys) == 3  # the head, frank's key and the imported admin key
        assert all("key.create" in " ".join(row) for row in only_keys[1:])
        system = table_rows(client.get("/ui/audit", params={"actor": "system"}).text, "audit")
        assert len(system) == 3 and all("system" in row[1] for row in system[1:])
        bad = client.get("/ui/audit", params={"start": "not a date"})
        assert bad.status_code == 303 and "from" in bad.headers["location"]
        bad = client.get("/ui/audit", params={"action": "DROP TABLE"})
        assert bad.status_code == 303
    assert gateway.admin.get("/healthz").status_code == 200


def test_a_failed_sign_in_is_no_entry(gateway: Gateway) -> None:
    """Wrong keys at the sign-in form write nothing (an anonymous caller cannot fill
    the log)."""
    before = len(entries(gateway))
    for _ in range(3):
        client, response = signed_in(gateway, "rg-wrong")
        assert response.status_code == 401
        client.close()
    assert len(entries(gateway)) == before
