"""relaygate as a real process: the CLI, and ``relaygate serve`` with its output captured."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.servers import free_port


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment with no RELAYGATE_* leaking in from the caller, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYGATE_")}
    env.update(extra)
    return env


def relaygate(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``relaygate ARGS`` in ``tmp_path`` and return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "relaygate", *args],
        cwd=tmp_path,
        env=env or cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        input=input,
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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"relaygate exited early:\n{self.output}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
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
        code = self.process.wait(timeout=20)
        self._log.close()
        return code
