"""relaygate's CLI run for a test (in this process where that is the same), and
``relaygate serve`` as a real process with its output captured."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.servers import free_port


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment with no RELAYGATE_* leaking in from the caller, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYGATE_")}
    env.update(extra)
    return env


SUBPROCESS_ONLY = frozenset(("serve",))
"""Commands that run as a real process (but for ``--help``): ``serve`` forks, handles
signals and configures logging, none of which a test process may share."""

HARMLESS = frozenset(("PYTEST_CURRENT_TEST", "COLUMNS", "LINES", "NO_COLOR", "TERM"))
"""Variables a CLI call may set differently and still run in this process: how output
is laid out, which no server of the process reads (pytest's ``PYTEST_CURRENT_TEST``
changes between a fixture's set-up and the test)."""


def relaygate(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``relaygate ARGS`` in ``tmp_path`` with exactly the environment ``env``
    (default: this one without RELAYGATE_*) and return what it did as a finished process.

    The CLI's logic runs in this process (click's test runner: the same command, its
    arguments, output and exit code) unless the command is in :data:`SUBPROCESS_ONLY`,
    ``env`` sets a variable other than a RELAYGATE_* setting (the servers a test runs in
    this process would see it too) or the caller runs an event loop (the CLI starts its
    own); :func:`relaygate_process` always starts a real one."""
    env = env or cli_env(tmp_path)
    # A variable of its own (an endpoint's key, PYTHONPATH) would be seen by the servers
    # this process runs too: only RELAYGATE_* settings, read at start, and the layout
    # of output (HARMLESS) may differ.
    own = any(
        os.environ.get(k) != v
        for k, v in env.items()
        if not k.startswith("RELAYGATE_") and k not in HARMLESS
    )
    serving = bool(args) and args[0] in SUBPROCESS_ONLY and "--help" not in args
    if serving or own or _loop_running():
        return relaygate_process(tmp_path, *args, env=env, input=input)
    return _in_process(tmp_path, list(args), env, input)


def relaygate_process(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m relaygate ARGS`` in ``tmp_path`` and return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "relaygate", *args],
        cwd=tmp_path,
        env=env or cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        input=input,
    )


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _in_process(
    cwd: Path, args: list[str], env: dict[str, str], input: str | None
) -> subprocess.CompletedProcess[str]:
    import typer
    from click.testing import CliRunner

    from relaygate.cli import app
    from relaygate.cli.help import tidy

    command = tidy(typer.main.get_command(app))
    # Exactly ``env``: what this process has and ``env`` lacks is unset for the call.
    overrides: dict[str, str | None] = {k: None for k in os.environ if k not in env}
    overrides.update(env)
    with _working_directory(cwd):
        result = CliRunner().invoke(
            command, args, input=input, env=overrides, prog_name="relaygate"
        )
    stderr = result.stderr
    failure = result.exception
    if failure is not None and not isinstance(failure, SystemExit):
        # As Python prints an exception nothing caught, and exits with 1.
        stderr += "".join(traceback.format_exception(failure))
    return subprocess.CompletedProcess(
        ["relaygate", *args], result.exit_code, result.stdout, stderr
    )


class ServeProcess:
    """``relaygate serve`` in ``cwd`` on a free port; output goes to ``log_path``."""

    def __init__(self, cwd: Path, env: dict[str, str], *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = cwd / f"serve-{self.port}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "relaygate", "serve", "--port", str(self.port), *args],
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30) -> ServeProcess:
        """This process once its ``/readyz`` answers 200; raises RuntimeError (with its
        output) when it exits or is not ready within ``timeout`` s, stopped and its log
        closed (a caller that never got it could not stop it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"relaygate exited early:\n{self.output}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"relaygate did not become ready:\n{self.output}")

    @property
    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> int:
        """Stop the process (SIGTERM) if it still runs; returns its exit code."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            code = self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._log.close()
        return code
