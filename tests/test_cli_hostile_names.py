"""Model names an upstream lists cannot write to the operator's terminal: no escape
sequences, no forged table rows."""

from __future__ import annotations

import secrets
from pathlib import Path

from tests.conftest import Upstream
from tests.support import databases
from tests.support.process import cli_env, relaygate
from tests.support.servers import free_port

FORGED = "evil\n99  forged-model  online"
ESCAPE = "evil\x1b]0;pwned\x07\x1b[2J"


def test_control_characters_in_listed_model_names_never_reach_the_terminal(
    tmp_path: Path, upstream: Upstream
) -> None:
    """An upstream listing names with a line break or terminal escapes: the sync keeps
    its plain models, and `models list` prints no forged row and no escape character."""
    upstream.state.models = ["plain", FORGED, ESCAPE]
    url = databases.database_url(tmp_path, "cli.db")
    env = cli_env(
        tmp_path,
        RELAYGATE_DATABASE_URL=url,
        RELAYGATE_SECRET_KEY=secrets.token_urlsafe(32),
        RELAYGATE_PORT=str(free_port()),
    )
    try:
        added = relaygate(tmp_path, "endpoints", "add", "hostile", upstream.url, env=env)
        listed = relaygate(tmp_path, "models", "list", env=env)
    finally:
        databases.drop(url)
    assert added.returncode == 0 and listed.returncode == 0, added.stderr + listed.stderr
    for output in (added.stdout + added.stderr, listed.stdout):
        assert "\x1b" not in output and "\x07" not in output
        assert not any(line.startswith("99 ") for line in output.splitlines())
    assert "plain" in listed.stdout
