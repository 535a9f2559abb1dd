"""``relaygate serve`` as an operator runs it: first start, config seeding, secrets."""

from __future__ import annotations

import base64
import itertools
import json
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import Upstream
from tests.support.polling import eventually
from tests.support.process import ServeProcess, cli_env, relaygate

KEY_PATTERN = re.compile(r"rg-[A-Za-z0-9_-]{43}")


def test_first_start_creates_admin_and_prints_key_once(tmp_path: Path) -> None:
    """With no admin and no RELAYGATE_ADMIN_KEY, the first start prints a working admin key
    once; a restart prints none. The generated secret key file is mode 0600."""
    env = cli_env(tmp_path)
    server = ServeProcess(tmp_path, env).wait_ready()
    try:
        keys = KEY_PATTERN.findall(server.output)
        assert len(keys) == 1
        assert "will not be shown again" in server.output
        response = httpx.get(
            server.url + "/admin/api/v1/endpoints", headers={"authorization": f"Bearer {keys[0]}"}
        )
        assert response.status_code == 200
    finally:
        assert server.stop() == 0
    assert (tmp_path / "data" / "relaygate.db").is_file()
    secret = tmp_path / "data" / "relaygate.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    again = ServeProcess(tmp_path, env).wait_ready()
    try:
        assert KEY_PATTERN.findall(again.output) == []
    finally:
        again.stop()


def test_admin_key_env_is_imported_once(tmp_path: Path) -> None:
    """RELAYGATE_ADMIN_KEY becomes an admin key, idempotently, and is never printed."""
    admin_key = "rg-" + "k" * 43
    env = cli_env(tmp_path, RELAYGATE_ADMIN_KEY=admin_key)
    for _ in range(2):
        server = ServeProcess(tmp_path, env).wait_ready()
        try:
            listed = httpx.get(
                server.url + "/admin/api/v1/keys", headers={"authorization": f"Bearer {admin_key}"}
            ).json()
            assert [k["name"] for k in listed] == ["RELAYGATE_ADMIN_KEY"]
        finally:
            server.stop()
        assert admin_key not in server.output
        assert KEY_PATTERN.findall(server.output) == []


def test_config_seeds_endpoints_only_into_a_new_database(
    tmp_path: Path, upstream: Upstream, second_upstream: Upstream
) -> None:
    """Config endpoints are written on first creation (with ${VAR} expanded); later edits
    of the file are ignored with a warning that names them and says why."""
    upstream.state.api_key = "sk-seeded-provider-key-5555"
    config = tmp_path / "relaygate.yaml"
    config.write_text(
        "sync_interval: 60\n"
        "endpoints:\n"
        f"  - name: local\n    url: {upstream.url}\n    api_key: ${{PROVIDER_KEY}}\n"
    )
    admin_key = "rg-" + "a" * 43
    env = cli_env(
        tmp_path, RELAYGATE_ADMIN_KEY=admin_key, PROVIDER_KEY="sk-seeded-provider-key-5555"
    )
    headers = {"authorization": f"Bearer {admin_key}"}
    server = ServeProcess(tmp_path, env).wait_ready()
    try:
        endpoints = httpx.get(server.url + "/admin/api/v1/endpoints", headers=headers).json()
        assert [(e["name"], e["has_api_key"]) for e in endpoints] == [("local", True)]
        # Ready means the snapshot is loaded; the first sync runs just after.
        models = eventually(
            lambda: httpx.get(server.url + "/v1/models", headers=headers).json()["data"],
            lambda listed: listed != [],
        )
        assert [m["id"] for m in models] == ["gpt-test"]
    finally:
        server.stop()
    config.write_text(
        "endpoints:\n"
        f"  - name: local\n    url: {upstream.url}\n"
        f"  - name: extra\n    url: {second_upstream.url}\n"
    )
    server = ServeProcess(tmp_path, env).wait_ready()
    try:
        endpoints = httpx.get(server.url + "/admin/api/v1/endpoints", headers=headers).json()
        assert [e["name"] for e in endpoints] == ["local"]
    finally:
        server.stop()
    warning = [line for line in server.output.splitlines() if "ignored endpoint" in line]
    assert len(warning) == 1
    assert "'extra'" in warning[0] and "'local'" not in warning[0]
    assert "only when the database is first created" in warning[0]


@pytest.mark.parametrize(
    ("config", "env", "message"),
    [
        ("port: [1\n", {}, "is not valid YAML at line"),
        ("endpoints:\n  - name: x\n    url: ${NOPE}\n", {}, "uses ${NOPE} but NOPE is not set"),
        ("", {"RELAYGATE_PORT": "eighty"}, "setting 'port'"),
        ("bogus: 1\n", {}, "setting 'bogus'"),
        ("", {"RELAYGATE_DATABASE_URL": "mysql://x/y"}, "setting 'database_url'"),
        ("", {"RELAYGATE_ADMIN_KEY": "changeme"}, "at least 32 characters"),
        ("endpoints:\n  - name: a\n    url: not-a-url\n", {}, "config endpoint 'a': url"),
        (
            "endpoints:\n  - {name: a, url: 'http://h/v1'}\n  - {name: a, url: 'http://g/v1'}\n",
            {},
            "lists endpoint 'a' twice",
        ),
    ],
    ids=[
        "yaml",
        "missing-var",
        "bad-port",
        "unknown-setting",
        "bad-database",
        "short-admin-key",
        "seed-url",
        "seed-twice",
    ],
)
def test_broken_config_is_one_line(
    tmp_path: Path, config: str, env: dict[str, str], message: str
) -> None:
    """A broken config stops `serve` with exit code 2 and one line saying what to fix."""
    (tmp_path / "relaygate.yaml").write_text(config)
    result = relaygate(tmp_path, "serve", env=cli_env(tmp_path, **env))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0]


WEAK_SECRETS = {
    "one-character": "a",
    "31-bytes": base64.urlsafe_b64encode(bytes(range(100, 131))).decode().rstrip("="),
    "64-hex-zeros": "0" * 64,
    "passphrase": "correct horse battery staple " * 4,
}


@pytest.mark.parametrize("secret", list(WEAK_SECRETS.values()), ids=list(WEAK_SECRETS))
def test_weak_secret_key_is_refused_at_start(tmp_path: Path, secret: str) -> None:
    """A RELAYGATE_SECRET_KEY of fewer than 32 random bytes stops `serve` with exit code 2
    and one line saying how to make a strong one, before anything is encrypted with it;
    the line does not repeat the key."""
    result = relaygate(tmp_path, "serve", env=cli_env(tmp_path, RELAYGATE_SECRET_KEY=secret))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: setting 'secret_key' (RELAYGATE_SECRET_KEY) must hold")
    assert "at least 32 random bytes" in lines[0]
    assert "`relaygate secrets generate`" in lines[0]
    if len(secret) > 1:
        assert secret not in result.stderr
    assert not (tmp_path / "data").exists()


def test_weak_secret_key_in_the_config_file_is_refused(tmp_path: Path) -> None:
    """The rule holds for `secret_key` in the config file as for the variable."""
    (tmp_path / "relaygate.yaml").write_text("secret_key: correcthorsebatterystaple\n")
    result = relaygate(tmp_path, "serve", env=cli_env(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "setting 'secret_key' must hold at least 32 random bytes" in lines[0]
    assert "(from relaygate.yaml, line 1)" in lines[0]


def test_weak_secret_key_file_is_refused(tmp_path: Path) -> None:
    """A key file (`secret_key_file`) holding a weak key is refused like the variable:
    exit code 2, one line naming the file."""
    key_file = tmp_path / "secret.txt"
    key_file.write_text("hunter2\n")
    env = cli_env(tmp_path, RELAYGATE_SECRET_KEY_FILE=str(key_file))
    result = relaygate(tmp_path, "serve", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"the secret key in {key_file} must hold at least 32 random bytes" in lines[0]
    assert "hunter2" not in result.stderr


def test_generated_secret_key_is_accepted(tmp_path: Path) -> None:
    """A key from `relaygate secrets generate` starts the server."""
    generated = relaygate(tmp_path, "secrets", "generate")
    assert generated.returncode == 0
    env = cli_env(tmp_path, RELAYGATE_SECRET_KEY=generated.stdout.strip())
    server = ServeProcess(tmp_path, env).wait_ready()
    assert server.stop() == 0
    assert not (tmp_path / "data" / "relaygate.secret").exists()


@pytest.mark.parametrize(
    "make",
    [
        lambda raw: base64.b64encode(raw).decode(),
        lambda raw: base64.b64encode(raw).decode().rstrip("="),
        lambda raw: base64.urlsafe_b64encode(raw).decode(),
        lambda raw: raw.hex(),
        lambda raw: raw.hex().upper(),
    ],
    ids=["openssl-base64", "base64-unpadded", "urlsafe-padded", "hex", "hex-upper"],
)
def test_strong_secret_keys_in_other_spellings_are_accepted(
    tmp_path: Path, make: Callable[[bytes], str]
) -> None:
    """32 bytes as `openssl rand -base64 32` or `openssl rand -hex 32` print them (or in
    URL-safe base64, or without padding) are accepted."""
    # 32 distinct bytes whose base64 holds '+' and '/' (URL-safe: '-' and '_'), so each
    # alphabet is read as itself.
    secret = make(bytes(range(224, 256)))
    result = relaygate(
        tmp_path, "db", "upgrade", env=cli_env(tmp_path, RELAYGATE_SECRET_KEY=secret)
    )
    assert result.returncode == 0, result.stderr


def test_wrong_secret_key_is_one_line(tmp_path: Path) -> None:
    """Starting with another RELAYGATE_SECRET_KEY than the database's is refused clearly."""
    assert relaygate(tmp_path, "db", "upgrade").returncode == 0
    result = relaygate(
        tmp_path, "serve", env=cli_env(tmp_path, RELAYGATE_SECRET_KEY=secrets.token_urlsafe(32))
    )
    assert result.returncode == 2
    assert "RELAYGATE_SECRET_KEY is not the key" in result.stderr


def test_no_key_in_clear_in_database_or_logs(tmp_path: Path, upstream: Upstream) -> None:
    """Provider keys and user keys never appear in the SQLite file or the (debug) logs."""
    provider_key = "sk-provider-key-in-clear-never-0001"
    admin_key = "rg-" + "b" * 43
    upstream.state.api_key = provider_key
    env = cli_env(tmp_path, RELAYGATE_ADMIN_KEY=admin_key, RELAYGATE_LOG_LEVEL="debug")
    server = ServeProcess(tmp_path, env).wait_ready()
    headers = {"authorization": f"Bearer {admin_key}"}
    try:
        api = server.url + "/admin/api/v1"
        created = httpx.post(
            api + "/endpoints",
            headers=headers,
            json={"name": "p", "url": upstream.url, "api_key": provider_key},
        )
        assert created.json()["sync"]["status"] == "ok"
        user_key = httpx.post(api + "/keys", headers=headers, json={"name": "u"}).json()["key"]
        chat = httpx.post(
            server.url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {user_key}"},
            json={"model": "gpt-test", "messages": []},
        )
        assert chat.status_code == 200
        upstream.state.api_key = "sk-rotated-elsewhere"
        assert httpx.post(f"{api}/endpoints/1/sync", headers=headers).json()["status"] == "error"
        bad = httpx.post(
            api + "/endpoints",
            headers=headers,
            json={"name": "p", "url": upstream.url, "api_key": provider_key},
        )
        assert bad.status_code == 409 and provider_key not in bad.text
    finally:
        server.stop()
    stored = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("relaygate.db*"))
    logs = server.output
    for secret in (provider_key, user_key, admin_key):
        assert secret.encode() not in stored
        assert secret not in logs
    assert b"sk-provider-key" not in stored
    assert " DEBUG " in logs


def test_workers_share_one_schedule(tmp_path: Path, upstream: Upstream) -> None:
    """`serve --workers 2`: the first admin key is printed once, both workers serve, and
    the endpoint is still synced once per interval."""
    env = cli_env(tmp_path, RELAYGATE_SYNC_INTERVAL="1")
    server = ServeProcess(tmp_path, env, "--workers", "2").wait_ready()
    try:
        keys = KEY_PATTERN.findall(server.output)
        assert len(keys) == 1
        headers = {"authorization": f"Bearer {keys[0]}"}
        api = server.url + "/admin/api/v1"
        created = httpx.post(
            api + "/endpoints", headers=headers, json={"name": "up", "url": upstream.url}
        )
        assert created.status_code == 201
        time.sleep(4.5)
        history = httpx.get(f"{api}/endpoints/1/syncs", headers=headers).json()
        starts = sorted(
            datetime.fromisoformat(h["started_at"]) for h in history if h["trigger"] == "interval"
        )
        assert 3 <= len(starts) <= 6  # two schedules would sync about twice as often
        # One sync per interval (1 s): a second one in the same interval would start
        # at once; a start is stamped after a claim and a read, late by up to ~0.5 s.
        assert min((b - a).total_seconds() for a, b in itertools.pairwise(starts)) >= 0.5
        for _ in range(10):
            listed = httpx.get(server.url + "/v1/models", headers=headers).json()["data"]
            assert [m["id"] for m in listed] == ["gpt-test"]
    finally:
        server.stop()


def test_sigterm_drains_in_flight_streams_then_exits_0(tmp_path: Path, upstream: Upstream) -> None:
    """On SIGTERM relaygate stops accepting connections, lets the stream in flight run to
    its end, writes the keys' last use (queued in memory) and exits 0."""
    admin_key = "rg-" + "d" * 43
    env = cli_env(tmp_path, RELAYGATE_ADMIN_KEY=admin_key, RELAYGATE_DRAIN_TIMEOUT="20")
    server = ServeProcess(tmp_path, env).wait_ready()
    headers = {"authorization": f"Bearer {admin_key}"}
    api = server.url + "/admin/api/v1"
    try:
        created = httpx.post(
            api + "/endpoints", headers=headers, json={"name": "up", "url": upstream.url}
        )
        assert created.status_code == 201
        user_key = httpx.post(api + "/keys", headers=headers, json={"name": "u"}).json()["key"]
        upstream.state.hold_stream = threading.Event()
        with httpx.stream(
            "POST",
            server.url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {user_key}"},
            json={"model": "gpt-test", "messages": [], "stream": True},
            timeout=30,
        ) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
            server.process.terminate()
            deadline = time.monotonic() + 10
            refused = False
            while time.monotonic() < deadline and not refused:
                try:
                    httpx.get(server.url + "/healthz", timeout=1)
                    time.sleep(0.05)
                except httpx.ConnectError:
                    refused = True
            assert refused, "still accepting connections after SIGTERM"
            assert server.process.poll() is None, "exited with a stream in flight"
            upstream.state.hold_stream.set()
            rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]"
        assert len(rest) == 5  # the four remaining chunks and [DONE]
        assert server.process.wait(timeout=20) == 0
    finally:
        upstream.state.hold_stream = None
        server.stop()
    assert "Waiting for connections to close" in server.output or "Shutting down" in server.output
    keys = relaygate(tmp_path, "keys", "list", "--json", env=env)
    assert keys.returncode == 0, keys.stderr
    used = [k for k in json.loads(keys.stdout) if k["name"] == "u"]
    assert used[0]["last_used_at"] is not None
