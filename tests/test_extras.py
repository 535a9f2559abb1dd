"""The optional dependencies: a setting that needs the ``postgres`` or ``redis`` extra,
on a machine without it, stops ``relaygate`` with one line naming the extra to install,
and the embedded default (SQLite, no Redis) runs without either."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.process import ServeProcess, cli_env, relaygate


def without(tmp_path: Path, *modules: str) -> str:
    """A directory that, first on ``PYTHONPATH``, makes importing ``modules`` fail as on
    a machine where they are not installed."""
    hidden = tmp_path / "hidden"
    hidden.mkdir(exist_ok=True)
    for module in modules:
        (hidden / f"{module}.py").write_text(f"raise ImportError('No module named {module}')\n")
    return str(hidden)


@pytest.mark.parametrize(
    ("setting", "value", "module", "extra"),
    [
        ("RELAYGATE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/x", "asyncpg", "postgres"),
        ("RELAYGATE_REDIS_URL", "redis://127.0.0.1:6379", "redis", "redis"),
    ],
    ids=["postgres", "redis"],
)
def test_a_setting_needing_a_missing_extra_is_one_line(
    tmp_path: Path, setting: str, value: str, module: str, extra: str
) -> None:
    """``serve`` with a PostgreSQL URL without asyncpg, or a Redis URL without redis,
    exits 2 with one line saying which extra to install."""
    env = cli_env(tmp_path, PYTHONPATH=without(tmp_path, module), **{setting: value})
    result = relaygate(tmp_path, "serve", env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and f"pip install 'relaygate[{extra}]'" in lines[0]


def test_the_embedded_default_needs_neither_extra(tmp_path: Path) -> None:
    """Without asyncpg and redis, ``serve`` on its SQLite default starts and answers."""
    env = cli_env(tmp_path, PYTHONPATH=without(tmp_path, "asyncpg", "redis"))
    server = ServeProcess(tmp_path, env).wait_ready()
    try:
        assert httpx.get(server.url + "/readyz", timeout=10).status_code == 200
    finally:
        server.stop()
