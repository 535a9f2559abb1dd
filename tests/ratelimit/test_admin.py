"""Setting rate limits: the admin API, self-service keys, and the CLI."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import databases
from tests.support.gateway import Gateway
from tests.support.process import cli_env, relaygate

API = "/admin/api/v1"
LIMITS = ("requests_per_minute", "tokens_per_minute")


def limits_of(body: dict[str, object]) -> tuple[object, object]:
    return body["requests_per_minute"], body["tokens_per_minute"]


def test_admin_sets_changes_and_clears_limits(gateway: Gateway) -> None:
    """Users and keys take limits at creation; PATCH changes them (and a key's name) and
    null clears one; every key and user object shows them."""
    admin = gateway.admin
    user = admin.post(f"{API}/users", json={"name": "fay", "requests_per_minute": 60}).json()
    assert limits_of(user) == (60, None)
    user = admin.patch(f"{API}/users/{user['id']}", json={"tokens_per_minute": 5000}).json()
    assert limits_of(user) == (60, 5000)
    user = admin.patch(f"{API}/users/{user['id']}", json={"requests_per_minute": None}).json()
    assert limits_of(user) == (None, 5000)
    assert limits_of(admin.get(f"{API}/users/{user['id']}").json()) == (None, 5000)

    key = gateway.create_key(user_id=user["id"], name="k", tokens_per_minute=100)
    assert limits_of(key) == (None, 100)
    changed = admin.patch(
        f"{API}/keys/{key['id']}", json={"name": "renamed", "requests_per_minute": 7}
    ).json()
    assert (changed["name"], *limits_of(changed)) == ("renamed", 7, 100)
    cleared = admin.patch(f"{API}/keys/{key['id']}", json={"tokens_per_minute": None}).json()
    assert (cleared["name"], *limits_of(cleared)) == ("renamed", 7, None)
    listed = [k for k in admin.get(f"{API}/keys").json() if k["id"] == key["id"]]
    assert limits_of(listed[0]) == (7, None)
    principal = next(
        p for p in gateway.ctx.snapshots.current.keys.values() if p.key_id == key["id"]
    )
    assert principal.limits is not None
    assert (principal.limits.key_rpm, principal.limits.key_tpm) == (7, None)
    assert (principal.limits.user_rpm, principal.limits.user_tpm) == (None, 5000)


@pytest.mark.parametrize("value", [0, -1, 2**31, 1.5, "ten", True])
def test_limits_must_be_positive_whole_numbers(gateway: Gateway, value: object) -> None:
    """A limit is a whole number from 1 to 2**31 - 1, or null; anything else is 400."""
    user = gateway.create_user("gus")
    key = gateway.create_key(name="k")
    for method, path in (
        ("POST", f"{API}/users"),
        ("PATCH", f"{API}/users/{user['id']}"),
        ("POST", f"{API}/keys"),
        ("PATCH", f"{API}/keys/{key['id']}"),
    ):
        for field in LIMITS:
            body = {field: value, **({"name": "hal"} if path.endswith("users") else {})}
            response = gateway.admin.request(method, path, json=body)
            assert response.status_code == 400, (method, path, field, response.text)
            assert response.json()["error"]["param"] == field


def test_patching_keys_is_for_admins_only(gateway: Gateway) -> None:
    """A user cannot lift their own key's limit; an unknown key is 404."""
    user = gateway.create_user("ida")
    key = gateway.create_key(user_id=user["id"], requests_per_minute=5)
    own = gateway.client_for(key["key"])
    response = own.patch(f"{API}/keys/{key['id']}", json={"requests_per_minute": None})
    assert response.status_code == 403
    assert gateway.admin.patch(f"{API}/keys/9999", json={"name": "x"}).status_code == 404


def test_own_keys_stay_within_the_callers_limits(gateway: Gateway) -> None:
    """A key a user creates for themselves is never less limited than the calling key or
    its user: without limits it takes theirs, above them it is refused (400)."""
    user = gateway.create_user("jo")
    gateway.admin.patch(
        f"{API}/users/{user['id']}", json={"requests_per_minute": 10, "tokens_per_minute": 1000}
    )
    caller = gateway.client_for(gateway.create_key(user_id=user["id"])["key"])
    inherited = caller.post(f"{API}/me/keys", json={"name": "a"})
    assert inherited.status_code == 201
    assert limits_of(inherited.json()) == (10, 1000)
    lower = caller.post(f"{API}/me/keys", json={"requests_per_minute": 4}).json()
    assert limits_of(lower) == (4, 1000)
    higher = caller.post(f"{API}/me/keys", json={"tokens_per_minute": 1001})
    assert higher.status_code == 400
    assert higher.json()["error"]["param"] == "tokens_per_minute"
    # The calling key's own, stricter limit is a ceiling too.
    limited = gateway.client_for(lower["key"])
    response = limited.post(f"{API}/me/keys", json={"requests_per_minute": 5})
    assert response.status_code == 400
    assert limits_of(limited.post(f"{API}/me/keys", json={}).json()) == (4, 1000)
    # Without limits anywhere, a new key has none unless asked.
    free = gateway.client_for(gateway.create_key(user_id=gateway.create_user("kim")["id"])["key"])
    assert limits_of(free.post(f"{API}/me/keys", json={}).json()) == (None, None)
    assert limits_of(free.post(f"{API}/me/keys", json={"requests_per_minute": 3}).json()) == (
        3,
        None,
    )


def test_console_keys_take_the_callers_limits(gateway: Gateway) -> None:
    """A key made in the console's account page takes its user's limits."""
    user = gateway.admin.post(f"{API}/users", json={"name": "max", "requests_per_minute": 9})
    user_id = user.json()["id"]
    key = gateway.create_key(user_id=user_id, name="sign-in")["key"]
    with httpx.Client(base_url=gateway.url, follow_redirects=False) as console:
        console.post("/ui/login", data={"key": key})
        csrf = re.search(r'data-csrf="([^"]+)"', console.get("/ui/account").text)
        assert csrf
        response = console.post("/ui/account/keys", data={"csrf": csrf.group(1), "name": "web"})
        assert response.status_code == 200, response.text
    made = [k for k in gateway.admin.get(f"{API}/keys").json() if k["name"] == "web"]
    assert [limits_of(k) for k in made] == [(9, None)]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    url = databases.database_url(tmp_path, "cli.db")
    yield cli_env(
        tmp_path, RELAYGATE_DATABASE_URL=url, RELAYGATE_SECRET_KEY=secrets.token_urlsafe(32)
    )
    databases.drop(url)


def cli(tmp_path: Path, env: dict[str, str], *args: str) -> str:
    result = relaygate(tmp_path, *args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_cli_sets_and_clears_limits(tmp_path: Path, env: dict[str, str]) -> None:
    """users add/update --rpm/--tpm, keys create --rpm/--tpm, keys update --rpm/--tpm/
    --name/--clear-limits; the lists show the limits."""
    out = cli(tmp_path, env, "users", "add", "lee", "--rpm", "30", "--tpm", "9000")
    assert "30 requests/min, 9000 tokens/min" in out
    out = cli(tmp_path, env, "users", "update", "lee", "--tpm", "8000")
    assert "30 requests/min, 8000 tokens/min" in out
    users = json.loads(cli(tmp_path, env, "users", "list", "--json"))
    assert [(u["name"], *limits_of(u)) for u in users] == [("lee", 30, 8000)]
    assert "no rate limit" in cli(tmp_path, env, "users", "update", "lee", "--clear-limits")

    cli(tmp_path, env, "keys", "create", "--user", "lee", "--rpm", "5", "--tpm", "700")
    key_id = str(json.loads(cli(tmp_path, env, "keys", "list", "--json"))[0]["id"])
    out = cli(tmp_path, env, "keys", "update", key_id, "--name", "bot", "--rpm", "6")
    assert "'bot', 6 requests/min, 700 tokens/min" in out
    out = cli(tmp_path, env, "keys", "update", key_id, "--clear-limits", "--tpm", "50")
    assert "'bot', 50 tokens/min" in out
    keys = json.loads(cli(tmp_path, env, "keys", "list", "--json"))
    assert [(k["name"], *limits_of(k)) for k in keys] == [("bot", None, 50)]
    bad = relaygate(tmp_path, "keys", "update", key_id, "--rpm", "0", env=env)
    assert bad.returncode == 2 and "--rpm" in bad.stderr
