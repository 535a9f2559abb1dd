"""A real ``relaygate serve`` process, on its own port and data directory, for tests that
attack it over raw sockets and watch its memory."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Upstream
from tests.support.process import ServeProcess, cli_env

Start = Callable[..., "Served"]


class Served:
    """A running ``relaygate serve`` with a known admin key and a user key for model
    ``gpt-test`` of ``upstream``; ``rss()`` is its resident memory in bytes."""

    def __init__(self, tmp_path: Path, upstream: Upstream, **settings: str) -> None:
        self.admin_key = "rg-" + secrets.token_urlsafe(32)
        env = cli_env(
            tmp_path,
            RELAYGATE_ADMIN_KEY=self.admin_key,
            RELAYGATE_LOG_LEVEL="warning",
            **{f"RELAYGATE_{name.upper()}": value for name, value in settings.items()},
        )
        self.process = ServeProcess(tmp_path, env).wait_ready()
        self.url = self.process.url
        self.port = self.process.port
        self.admin = httpx.Client(
            base_url=self.url, headers={"authorization": f"Bearer {self.admin_key}"}, timeout=30
        )
        created = self.admin.post(
            "/admin/api/v1/endpoints", json={"name": "up", "url": upstream.url}
        )
        assert created.status_code == 201, created.text

    def user_key(self, name: str) -> str:
        user = self.admin.post("/admin/api/v1/users", json={"name": name}).json()
        made = self.admin.post("/admin/api/v1/keys", json={"user_id": user["id"]})
        assert made.status_code == 201, made.text
        key: str = made.json()["key"]
        return key

    def chat(self, key: str) -> httpx.Response:
        """One chat completion for ``gpt-test`` with ``key``, as an ordinary client sends it."""
        return httpx.post(
            self.url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "gpt-test", "messages": []},
            timeout=5,
        )

    def rss(self) -> int:
        status = Path(f"/proc/{self.process.process.pid}/status").read_text()
        line = next(row for row in status.splitlines() if row.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def stop(self) -> None:
        self.admin.close()
        self.process.stop()


@pytest.fixture
def serve(tmp_path: Path, upstream: Upstream) -> Iterator[Start]:
    """Start ``relaygate serve`` with settings given as keyword arguments (stopped after)."""
    started: list[Served] = []

    def start(**settings: str) -> Served:
        served = Served(tmp_path, upstream, **settings)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def read_answer(sock: socket.socket, timeout: float = 10) -> bytes:
    """What the server sends on ``sock`` until it closes it (or ``timeout``)."""
    sock.settimeout(timeout)
    answer = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return answer
