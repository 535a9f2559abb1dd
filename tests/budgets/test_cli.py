"""Budgets through the CLI: set, shown, changed, cleared and reset on users, keys and
groups, and refused with a one-line message when wrong."""

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
    return result.stdout + result.stderr


def test_budgets_from_the_cli(tmp_path: Path, env: dict[str, str]) -> None:
    out = ok(tmp_path, env, "users", "add", "ann", "--budget", "5", "--budget-period", "weekly")
    assert "budget 5 per weekly period, 0 spent, resets " in out
    out = ok(tmp_path, env, "users", "update", "ann", "--budget", "7")
    assert "budget 7 per weekly period" in out
    [user] = json.loads(ok(tmp_path, env, "users", "list", "--json"))
    assert (user["budget"], user["budget_period"], user["budget_spent"]) == (7.0, "weekly", 0.0)

    out = ok(tmp_path, env, "keys", "create", "--user", "ann", "--name", "ci", "--budget", "1")
    assert "budget 1 per monthly period" in out
    [key] = json.loads(ok(tmp_path, env, "keys", "list", "--json"))
    assert (key["budget"], key["budget_period"]) == (1.0, "monthly")
    out = ok(tmp_path, env, "keys", "update", str(key["id"]), "--budget-period", "daily")
    assert "budget 1 per daily period" in out
    assert "reset the budget of key" in ok(tmp_path, env, "keys", "budget-reset", str(key["id"]))
    [key] = json.loads(ok(tmp_path, env, "keys", "list", "--json"))
    assert key["budget_reset_at"] is not None
    out = ok(tmp_path, env, "keys", "update", str(key["id"]), "--clear-budget")
    assert "no budget" in out

    out = ok(tmp_path, env, "groups", "add", "team", "--budget", "100", "--budget-period", "total")
    assert "budget 100 per total period, 0 spent)" in out
    assert "budget 50 per total" in ok(tmp_path, env, "groups", "update", "team", "--budget", "50")
    assert "reset the budget of group 'team'" in ok(tmp_path, env, "groups", "budget-reset", "team")
    assert "no budget" in ok(tmp_path, env, "groups", "update", "team", "--clear-budget")
    assert "reset the budget of user 'ann'" in ok(tmp_path, env, "users", "budget-reset", "ann")

    bad = relaygate(tmp_path, "users", "update", "ann", "--budget-period", "hourly", env=env)
    assert bad.returncode != 0
    assert "budget_period must be one of daily, weekly, monthly, total" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    negative = relaygate(tmp_path, "users", "update", "ann", "--budget", "-1", env=env)
    assert negative.returncode != 0
