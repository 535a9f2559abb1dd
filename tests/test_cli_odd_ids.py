"""Ids typed oddly on the command line (a superscript digit, a number past 64 bits) are
a one-line refusal, never a traceback."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests.support import databases
from tests.support.process import cli_env, relaygate
from tests.support.servers import free_port


@pytest.mark.parametrize("ident", ["²", "99999999999999999999999"])
@pytest.mark.parametrize(
    "command",
    [("models", "update", "--alias", "x"), ("users", "update", "--name", "y")],
    ids=lambda c: c[0],
)
def test_an_odd_id_is_a_one_line_not_found(
    tmp_path: Path, ident: str, command: tuple[str, ...]
) -> None:
    """A model or user named by something that looks numeric but is no id is `error: no
    …` on one line (exit 1), like any unknown name."""
    url = databases.database_url(tmp_path, "cli.db")
    env = cli_env(
        tmp_path,
        RELAYGATE_DATABASE_URL=url,
        RELAYGATE_SECRET_KEY=secrets.token_urlsafe(32),
        RELAYGATE_PORT=str(free_port()),
    )
    try:
        result = relaygate(tmp_path, command[0], command[1], ident, *command[2:], env=env)
    finally:
        databases.drop(url)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no "), result.stderr
