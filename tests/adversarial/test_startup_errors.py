"""`relaygate serve` with a broken setup: one line on stderr saying what to fix, exit code
2, and nothing claiming to be ready first."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.process import cli_env


def serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relaygate", "serve", *args],
        cwd=tmp_path,
        env=cli_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a refused start printed; fails on anything else."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "ready" not in result.stdout + result.stderr
    assert "startup complete" not in result.stdout + result.stderr.lower()
    return lines[0]


def test_unknown_log_level(tmp_path: Path) -> None:
    """An unknown log level names the setting, the variable and the levels there are."""
    line = one_line(serve(tmp_path, RELAYGATE_LOG_LEVEL="loud"))
    assert "RELAYGATE_LOG_LEVEL" in line and "debug" in line and "'loud'" in line


def test_port_in_use(tmp_path: Path) -> None:
    """A port already in use is one line before anything starts, saying how to pick
    another."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line(serve(tmp_path, "--port", str(port)))
    assert f"port {port}" in line and "in use" in line and "RELAYGATE_PORT" in line


def test_unwritable_data_directory(tmp_path: Path) -> None:
    """A database path whose directory cannot be made (a file stands there) is one line
    naming the directory and the setting to change."""
    (tmp_path / "afile").write_text("not a directory")
    url = f"sqlite:///{tmp_path / 'afile' / 'relaygate.db'}"
    line = one_line(serve(tmp_path, RELAYGATE_DATABASE_URL=url))
    assert "afile" in line and "RELAYGATE_DATABASE_URL" in line


def test_unknown_setting_in_the_file_suggests_the_nearest(tmp_path: Path) -> None:
    """A typo in a config file key names the file and line and suggests the known key."""
    (tmp_path / "relaygate.yaml").write_text("port: 8123\nsync_intervall: 5\n")
    line = one_line(serve(tmp_path))
    assert "sync_intervall" in line and "line 2" in line and "'sync_interval'" in line


def test_a_bad_value_names_its_file_line_or_variable(tmp_path: Path) -> None:
    """A value of the wrong kind names the setting and where it came from: the file and
    line, or the environment variable."""
    (tmp_path / "relaygate.yaml").write_text("host: 127.0.0.1\nmax_body_bytes: lots\n")
    line = one_line(serve(tmp_path))
    assert "max_body_bytes" in line and "relaygate.yaml, line 2" in line
    (tmp_path / "relaygate.yaml").unlink()
    line = one_line(serve(tmp_path, RELAYGATE_BODY_TIMEOUT="soon"))
    assert "RELAYGATE_BODY_TIMEOUT" in line


@pytest.mark.parametrize("setting", ["RELAYGATE_MAX_HEADER_BYTES", "RELAYGATE_HEADER_TIMEOUT"])
def test_a_bound_must_be_positive(tmp_path: Path, setting: str) -> None:
    """A bound of 0 or less is refused, not taken as "no bound"."""
    line = one_line(serve(tmp_path, **{setting: "0"}))
    assert setting in line
