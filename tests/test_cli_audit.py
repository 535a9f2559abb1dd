"""``relaygate audit``: what CLI commands change is the CLI's; the log as a table and
as JSON, filtered; a bad filter is one line and a non-zero exit."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import databases
from tests.support.process import cli_env, relaygate


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    url = databases.database_url(tmp_path, "cli.db")
    yield cli_env(
        tmp_path, RELAYGATE_DATABASE_URL=url, RELAYGATE_SECRET_KEY=secrets.token_urlsafe(32)
    )
    databases.drop(url)


def ok(tmp_path: Path, env: dict[str, str], *args: str) -> str:
    result = relaygate(tmp_path, *args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_cli_changes_and_listing(tmp_path: Path, env: dict[str, str]) -> None:
    """A user and a key made with the CLI are entries of ``cli``; ``audit`` lists them
    newest first, filters by action prefix and actor, and prints JSON with --json."""
    ok(tmp_path, env, "users", "add", "gina", "--email", "gina@example.org")
    key = ok(tmp_path, env, "keys", "create", "--user", "gina", "--name", "gk")
    entries = json.loads(ok(tmp_path, env, "audit", "--json", "--actor", "cli"))
    assert [(e["actor_type"], e["action"], e["target_name"]) for e in entries] == [
        ("cli", "key.create", "gk"),
        ("cli", "user.create", "gina"),
    ]
    assert entries[1]["details"]["values"]["email"] == "gina@example.org"
    assert all(e["address"] is None for e in entries)
    table = ok(tmp_path, env, "audit", "--action", "user.")
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["ID", "TIME", "ACTOR", "ADDRESS"]
    assert len(lines) == 2 and "user.create" in lines[1] and "gina" in lines[1]
    secret = next(word for word in key.split() if word.startswith("rg-") and len(word) > 30)
    assert secret not in ok(tmp_path, env, "audit", "--json")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--action", "x y"], "action must be"),
        (["--from", "soon"], "--from"),
        (["--from", "2026-12-02", "--to", "2026-12-01"], "from must not be after to"),
        (["--limit", "0"], "limit"),
    ],
)
def test_bad_filters(tmp_path: Path, env: dict[str, str], args: list[str], message: str) -> None:
    result = relaygate(tmp_path, "audit", *args, env=env)
    assert result.returncode != 0 and message in result.stderr
    assert "Traceback" not in result.stderr
