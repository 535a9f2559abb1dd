"""The CLI drives the same services as the admin API."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from sqlalchemy import select

from relaygate.context import SECRET_CHECK_KEY
from relaygate.db.engine import make_engine, make_sessionmaker
from relaygate.db.tables import Endpoint, Meta
from relaygate.errors import ConfigError
from relaygate.settings import load_settings
from relaygate.vault import CHECK_PLAINTEXT, Vault
from tests.batches.conftest import chat_lines, upload
from tests.conftest import Upstream
from tests.support import databases
from tests.support.gateway import Gateway
from tests.support.process import cli_env, relaygate


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    url = databases.database_url(tmp_path, "cli.db")
    yield cli_env(
        tmp_path, RELAYGATE_DATABASE_URL=url, RELAYGATE_SECRET_KEY=secrets.token_urlsafe(32)
    )
    databases.drop(url)


def ok(tmp_path: Path, env: dict[str, str], *args: str, input: str | None = None) -> str:
    result = relaygate(tmp_path, *args, env=env, input=input)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_endpoint_lifecycle(tmp_path: Path, env: dict[str, str], upstream: Upstream) -> None:
    """add (key from stdin), list, show, update, disable, enable, sync, remove."""
    upstream.state.api_key = "sk-cli-provider-key-4242"
    upstream.state.models = ["m-1", "m-2"]
    out = ok(
        tmp_path,
        env,
        "endpoints",
        "add",
        "local",
        upstream.url,
        "--api-key-stdin",
        input="sk-cli-provider-key-4242\n",
    )
    assert "ok" in out and "2 online / 0 offline" in out
    listed = json.loads(ok(tmp_path, env, "endpoints", "list", "--json"))
    assert [(e["name"], e["sync_status"], e["has_api_key"]) for e in listed] == [
        ("local", "ok", True)
    ]
    shown = ok(tmp_path, env, "endpoints", "show", "local")
    assert "…4242" in shown and "sk-cli-provider-key-4242" not in shown
    ok(tmp_path, env, "endpoints", "update", "local", "--filter", "m-1")
    models = json.loads(ok(tmp_path, env, "models", "list", "--json"))
    assert {m["upstream_id"]: m["status"] for m in models} == {"m-1": "online", "m-2": "offline"}
    assert "disabled" in ok(tmp_path, env, "endpoints", "disable", "local")
    failed = relaygate(tmp_path, "endpoints", "sync", "local", env=env)
    assert failed.returncode == 1 and "disabled" in failed.stderr
    assert "enabled" in ok(tmp_path, env, "endpoints", "enable", "1")
    upstream.state.models = ["m-1", "m-3"]
    ok(tmp_path, env, "endpoints", "update", "local", "--clear-filter")
    synced = ok(tmp_path, env, "endpoints", "sync", "local")
    assert synced.startswith("synced 'local': 2 models")
    assert "deleted endpoint 'local' and 3 models" in ok(
        tmp_path, env, "endpoints", "remove", "local", "--yes"
    )
    assert json.loads(ok(tmp_path, env, "endpoints", "list", "--json")) == []


def test_bad_input_is_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    """A bad URL or an unknown endpoint is a one-line error and exit code 1."""
    result = relaygate(tmp_path, "endpoints", "add", "x", "not-a-url", env=env)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: url 'not-a-url' is not an http(s) URL")
    result = relaygate(tmp_path, "endpoints", "show", "ghost", env=env)
    assert (result.returncode, result.stderr.strip()) == (1, "error: no endpoint 'ghost'")


def test_users_and_keys(tmp_path: Path, env: dict[str, str]) -> None:
    """users add/list/update/remove and keys create/list/revoke."""
    assert "created user 'dana'" in ok(tmp_path, env, "users", "add", "dana", "--email", "d@x.io")
    ok(tmp_path, env, "users", "update", "dana", "--role", "admin")
    users = json.loads(ok(tmp_path, env, "users", "list", "--json"))
    assert [(u["name"], u["role"], u["email"]) for u in users] == [("dana", "admin", "d@x.io")]
    key = ok(tmp_path, env, "keys", "create", "--user", "dana", "--name", "ci").strip()
    assert key.startswith("rg-")
    keys = json.loads(ok(tmp_path, env, "keys", "list", "--json"))
    assert [(k["name"], k["revoked_at"]) for k in keys] == [("ci", None)]
    assert key not in json.dumps(keys)
    ok(tmp_path, env, "keys", "revoke", str(keys[0]["id"]))
    assert json.loads(ok(tmp_path, env, "keys", "list", "--json"))[0]["revoked_at"]
    result = relaygate(tmp_path, "users", "remove", "dana", env=env)
    assert result.returncode == 1 and "last admin" in result.stderr


def test_cli_revocation_reaches_running_server(tmp_path: Path, upstream: Upstream) -> None:
    """A key revoked by the CLI is refused by a running relaygate within about a second."""
    gateway = Gateway(tmp_path).start()
    try:
        created = gateway.create_key(name="doomed")
        client = gateway.openai(key=created["key"])
        assert client.models.list() is not None
        env = cli_env(
            tmp_path,
            RELAYGATE_DATABASE_URL=gateway.settings.database_url,
            RELAYGATE_SECRET_KEY=gateway.settings.secret_key or "",
        )
        ok(tmp_path, env, "keys", "revoke", str(created["id"]))
        revoked_at = time.monotonic()
        while True:
            try:
                client.models.list()
            except openai.AuthenticationError:
                break
            # About a second (the server polls its change log every 0.2 s), with room for
            # a loaded machine.
            assert time.monotonic() - revoked_at < 3, "revocation did not reach the server"
            time.sleep(0.05)
    finally:
        gateway.stop()


def test_secret_rotation_keeps_provider_keys_usable(
    tmp_path: Path, env: dict[str, str], upstream: Upstream
) -> None:
    """After `secrets rotate`, the old secret is refused and the new one decrypts the keys."""
    upstream.state.api_key = "sk-rotate-me-000777"
    ok(tmp_path, env, "endpoints", "add", "p", upstream.url, "--api-key", "sk-rotate-me-000777")
    new_secret = secrets.token_urlsafe(32)
    out = ok(tmp_path, env, "secrets", "rotate", "--new-key", new_secret)
    assert "re-encrypted 1 provider key." in out
    old = relaygate(tmp_path, "endpoints", "sync", "p", env=env)
    assert old.returncode == 2 and "RELAYGATE_SECRET_KEY is not the key" in old.stderr
    env["RELAYGATE_SECRET_KEY"] = new_secret
    assert ok(tmp_path, env, "endpoints", "sync", "p").startswith("synced 'p': 1 model (")


def test_rotation_refuses_a_weak_new_key(
    tmp_path: Path, env: dict[str, str], upstream: Upstream
) -> None:
    """`secrets rotate --new-key` takes only a key of 32 random bytes or more: a weak one
    stops it with exit code 2 and one line, and the stored keys stay under the old key."""
    upstream.state.api_key = "sk-rotate-me-000888"
    ok(tmp_path, env, "endpoints", "add", "p", upstream.url, "--api-key", "sk-rotate-me-000888")
    for weak in ("a", "0" * 64, "correct horse battery staple " * 4):
        result = relaygate(tmp_path, "secrets", "rotate", "--new-key", weak, env=env)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: --new-key must hold at least 32 random bytes")
    assert ok(tmp_path, env, "endpoints", "sync", "p").startswith("synced 'p': 1 model (")


async def _reencrypt(url: str, old: str, new: str) -> None:
    """Re-encrypt the database's provider keys and secret check from ``old`` to ``new``,
    as `secrets rotate` did before weak keys were refused."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            for endpoint in (await session.scalars(select(Endpoint))).all():
                assert endpoint.api_key_encrypted is not None
                plain = Vault(old).decrypt(endpoint.api_key_encrypted)
                endpoint.api_key_encrypted = Vault(new).encrypt(plain)
            check = Meta(key=SECRET_CHECK_KEY, value=Vault(new).encrypt(CHECK_PLAINTEXT))
            await session.merge(check)
    finally:
        await engine.dispose()


def test_a_database_under_a_weak_key_can_rotate_to_a_strong_one(
    tmp_path: Path, env: dict[str, str], upstream: Upstream
) -> None:
    """A database whose provider keys an older relaygate encrypted with a weak key: every
    command refuses the weak key but `secrets rotate`, which moves the keys to a strong one
    (and still refuses a weak new one)."""
    upstream.state.api_key = "sk-rotate-me-000999"
    ok(tmp_path, env, "endpoints", "add", "p", upstream.url, "--api-key", "sk-rotate-me-000999")
    weak = "cli-secret"
    asyncio.run(_reencrypt(env["RELAYGATE_DATABASE_URL"], env["RELAYGATE_SECRET_KEY"], weak))
    env["RELAYGATE_SECRET_KEY"] = weak
    refused = relaygate(tmp_path, "endpoints", "sync", "p", env=env)
    assert refused.returncode == 2 and "at least 32 random bytes" in refused.stderr
    again_weak = relaygate(tmp_path, "secrets", "rotate", "--new-key", "other-secret", env=env)
    assert again_weak.returncode == 2 and "--new-key must hold" in again_weak.stderr
    strong = secrets.token_urlsafe(32)
    out = ok(tmp_path, env, "secrets", "rotate", "--new-key", strong)
    assert "re-encrypted 1 provider key." in out
    env["RELAYGATE_SECRET_KEY"] = strong
    assert ok(tmp_path, env, "endpoints", "sync", "p").startswith("synced 'p': 1 model (")


def test_db_upgrade(tmp_path: Path, env: dict[str, str]) -> None:
    assert "newest schema" in ok(tmp_path, env, "db", "upgrade")
    assert b"config_version" in databases.dump(env["RELAYGATE_DATABASE_URL"])


RUN_IN_CHILD = """
import sys, typer
from relaygate.cli.runner import run_in_child

def work():
    import alembic
    print("child", "alembic" in sys.modules, flush=True)

def broken():
    raise typer.Exit(2)

run_in_child(work)
print("parent", "alembic" in sys.modules)
try:
    run_in_child(broken)
except typer.Exit as exc:
    print("exit", exc.exit_code)
"""


def test_run_in_child_leaves_nothing_behind_but_its_exit_code() -> None:
    """Work ``serve`` does before serving runs in a child: what it imports stays out of
    the server, and its failure is the server's exit code."""
    done = subprocess.run(
        [sys.executable, "-c", RUN_IN_CHILD], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.splitlines() == ["child True", "parent False", "exit 2"], done.stderr


def test_models_alias(tmp_path: Path, env: dict[str, str], upstream: Upstream) -> None:
    """`models alias` sets and clears a public name; a clash is refused naming the model."""
    upstream.state.models = ["m-1", "m-2"]
    ok(tmp_path, env, "endpoints", "add", "local", upstream.url)
    ids = {
        m["upstream_id"]: m["id"] for m in json.loads(ok(tmp_path, env, "models", "list", "--json"))
    }
    assert "answers to fast" in ok(tmp_path, env, "models", "alias", str(ids["m-1"]), "fast")
    clash = relaygate(tmp_path, "models", "alias", str(ids["m-2"]), "fast", env=env)
    assert clash.returncode == 1 and "'m-1'" in clash.stderr
    assert "(no alias)" in ok(tmp_path, env, "models", "alias", str(ids["m-1"]), "--clear")


def test_models_list_shows_name_conflicts(
    tmp_path: Path, env: dict[str, str], upstream: Upstream, second_upstream: Upstream
) -> None:
    """`models list` shows the endpoint and model holding a conflicting model's name (the
    JSON too), and nothing once both endpoints are in one pool."""
    ok(tmp_path, env, "endpoints", "add", "first", upstream.url)
    ok(tmp_path, env, "endpoints", "add", "second", second_upstream.url)
    models = json.loads(ok(tmp_path, env, "models", "list", "--json"))
    held, claimed = (next(m for m in models if m["endpoint_id"] == e) for e in (1, 2))
    assert held["conflict"] is None
    assert claimed["conflict"]["held_by_endpoint_name"] == "first"
    table = ok(tmp_path, env, "models", "list").splitlines()
    assert table[0].split()[-1] == "CONFLICT"
    assert table[2].endswith(f"held by endpoint 'first' (model {held['id']})")
    assert not table[1].endswith(")")
    for name in ("first", "second"):
        ok(tmp_path, env, "endpoints", "update", name, "--pool", "p")
    assert "held by" not in ok(tmp_path, env, "models", "list")
    assert [m["conflict"] for m in json.loads(ok(tmp_path, env, "models", "list", "--json"))] == [
        None,
        None,
    ]


def test_groups(tmp_path: Path, env: dict[str, str], upstream: Upstream) -> None:
    """groups add / add-user / grant / revoke / remove-user / remove, as the admin API does."""
    upstream.state.models = ["m-1"]
    ok(tmp_path, env, "endpoints", "add", "local", upstream.url, "--group", "everyone")
    ok(tmp_path, env, "users", "add", "gina")
    assert "created group 'team'" in ok(tmp_path, env, "groups", "add", "team")
    ok(tmp_path, env, "groups", "add-user", "team", "gina")
    ok(tmp_path, env, "groups", "grant", "team", "--model", "1")
    ok(tmp_path, env, "groups", "grant", "team", "--endpoint", "1")
    groups = {g["name"]: g for g in json.loads(ok(tmp_path, env, "groups", "list", "--json"))}
    assert groups["everyone"]["endpoints"] == [1]
    assert (groups["team"]["users"], groups["team"]["models"], groups["team"]["endpoints"]) == (
        [1],
        [1],
        [1],
    )
    ok(tmp_path, env, "groups", "revoke", "team", "--model", "1")
    ok(tmp_path, env, "groups", "remove-user", "team", "gina")
    team = json.loads(ok(tmp_path, env, "groups", "show", "team", "--json"))
    assert (team["users"], team["models"]) == ([], [])
    both = relaygate(tmp_path, "groups", "grant", "team", env=env)
    assert both.returncode == 1 and "exactly one of" in both.stderr
    builtin = relaygate(tmp_path, "groups", "remove", "everyone", env=env)
    assert builtin.returncode == 1 and "cannot be deleted" in builtin.stderr
    ok(tmp_path, env, "groups", "remove", "team")


def test_timeouts_fallback_and_prices(
    tmp_path: Path, env: dict[str, str], upstream: Upstream
) -> None:
    """`endpoints add/update --timeout NAME=SECONDS` and `models update --fallback`."""
    upstream.state.models = ["m-1", "m-2"]
    added = json.loads(
        ok(
            tmp_path,
            env,
            "endpoints",
            "add",
            "local",
            upstream.url,
            "--timeout",
            "idle=30",
            "--json",
        )
    )
    assert added["timeouts"] == {"idle": 30.0}
    updated = json.loads(
        ok(tmp_path, env, "endpoints", "update", "local", "--timeout", "total=600", "--json")
    )
    assert updated["timeouts"] == {"idle": 30.0, "total": 600.0}
    assert "timeouts" in ok(tmp_path, env, "endpoints", "show", "local")
    bad = relaygate(tmp_path, "endpoints", "update", "local", "--timeout", "idle=soon", env=env)
    assert bad.returncode == 1 and "NAME=SECONDS" in bad.stderr
    unknown = relaygate(tmp_path, "endpoints", "update", "local", "--timeout", "nap=3", env=env)
    assert unknown.returncode == 1 and "unknown timeout 'nap'" in unknown.stderr
    cleared = ok(tmp_path, env, "endpoints", "update", "local", "--clear-timeouts", "--json")
    assert json.loads(cleared)["timeouts"] == {}
    ids = {
        m["upstream_id"]: m["id"] for m in json.loads(ok(tmp_path, env, "models", "list", "--json"))
    }
    ok(tmp_path, env, "models", "update", str(ids["m-1"]), "--fallback", "m-2")
    listed = {
        m["upstream_id"]: m for m in json.loads(ok(tmp_path, env, "models", "list", "--json"))
    }
    assert listed["m-1"]["fallback_model"] == "m-2"


def test_endpoint_batch_concurrency(
    tmp_path: Path, env: dict[str, str], upstream: Upstream
) -> None:
    """`endpoints add/update --batch-concurrency N` sets it, `--clear-batch-concurrency`
    follows the setting again, a value out of range is a one-line error, and the config
    file seeds it."""
    added = ok(
        tmp_path,
        env,
        "endpoints",
        "add",
        "local",
        upstream.url,
        "--batch-concurrency",
        "8",
        "--no-sync",
        "--json",
    )
    assert json.loads(added)["batch_concurrency"] == 8
    assert "batch_concurrency  8" in ok(tmp_path, env, "endpoints", "show", "local")
    updated = ok(
        tmp_path, env, "endpoints", "update", "local", "--batch-concurrency", "2", "--json"
    )
    assert json.loads(updated)["batch_concurrency"] == 2
    for bad in ("0", "1001"):
        wrong = relaygate(
            tmp_path, "endpoints", "update", "local", "--batch-concurrency", bad, env=env
        )
        assert wrong.returncode == 1
        assert wrong.stderr.startswith("error: batch_concurrency must be a whole number from 1")
    cleared = ok(
        tmp_path, env, "endpoints", "update", "local", "--clear-batch-concurrency", "--json"
    )
    assert json.loads(cleared)["batch_concurrency"] is None
    assert "batch_concurrency  settings" in ok(tmp_path, env, "endpoints", "show", "local")

    seeded = [{"name": "seeded", "url": upstream.url, "batch_concurrency": 16}]
    running = Gateway(tmp_path / "seed", endpoints=seeded).start()
    try:
        assert running.endpoint("seeded")["batch_concurrency"] == 16
        deadline = time.monotonic() + 20
        # Its first sync runs at start-up: stopping in the middle of it would compare
        # the snapshot with one rebuilt from a database the sync is still changing.
        while running.endpoint("seeded")["sync"]["status"] == "never":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        running.stop()
    with pytest.raises(ConfigError, match="batch_concurrency"):
        load_settings(None, environ={}, endpoints=[{**seeded[0], "batch_concurrency": 0}])


def test_batches_list_and_cancel(tmp_path: Path, upstream: Upstream) -> None:
    """`batches list` shows a batch a user created through the API with its owner,
    status and counts (filtered by --user and --status), and `batches cancel` cancels it."""
    # No batch work after start-up: the batch stays validating while the CLI looks.
    gateway = Gateway(tmp_path, batch_poll_interval=3600).start()
    gateway.app.state.batch_runner = None  # nothing wakes it before its hour is up
    try:
        gateway.add_endpoint("local", upstream.url)
        ann = gateway.create_user("ann")
        client = gateway.openai(gateway.create_key(user_id=ann["id"])["key"])
        file_id = upload(client, chat_lines(2, model="gpt-test"))
        batch = client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        env = cli_env(
            tmp_path,
            RELAYGATE_DATABASE_URL=gateway.settings.database_url,
            RELAYGATE_SECRET_KEY=gateway.settings.secret_key or "",
        )
        table = ok(tmp_path, env, "batches", "list").splitlines()
        assert table[0].split() == [
            "ID",
            "USER",
            "STATUS",
            "COMPLETED/FAILED/TOTAL",
            "CREATED",
            "COST",
        ]
        assert table[1].split()[:4] == [batch.id, "ann", "validating", "0/0/2"]
        [item] = json.loads(ok(tmp_path, env, "batches", "list", "--user", "ann", "--json"))
        assert (item["id"], item["user_id"], item["user_name"]) == (batch.id, ann["id"], "ann")
        assert ok(tmp_path, env, "batches", "list", "--user", str(ann["id"])).count(batch.id) == 1
        assert ok(tmp_path, env, "batches", "list", "--status", "completed").strip() == "(none)"
        nobody = relaygate(tmp_path, "batches", "list", "--user", "nobody", env=env)
        assert (nobody.returncode, nobody.stderr.strip()) == (1, "error: no user 'nobody'")
        wrong = relaygate(tmp_path, "batches", "list", "--status", "done", env=env)
        assert wrong.returncode == 1 and "--status must be one of" in wrong.stderr

        cancelled = ok(tmp_path, env, "batches", "cancel", batch.id)
        assert cancelled.strip() == f"batch {batch.id} is cancelling"
        assert client.batches.retrieve(batch.id).status == "cancelling"
        assert "cancelling" in ok(tmp_path, env, "batches", "list", "--status", "cancelling")
        unknown = relaygate(tmp_path, "batches", "cancel", "batch_" + "0" * 24, env=env)
        assert unknown.returncode == 1 and "no batch" in unknown.stderr
    finally:
        gateway.stop()
