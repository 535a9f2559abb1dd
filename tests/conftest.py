"""Shared fixtures: a controllable upstream and a running relaygate, both on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import databases
from tests.support.gateway import Gateway
from tests.support.servers import ServerThread
from tests.support.upstream import UpstreamState, make_upstream


def pytest_configure(config: pytest.Config) -> None:
    """httpx reads a whole bundle of certificate authorities for every client it makes
    (about 25 ms each, several per test: the SDKs' clients, ``httpx.get``); the same
    authorities in the system's hashed directory are looked up only when a certificate
    is checked. Verification stays on; the tests reach loopback servers only."""
    if os.path.isdir("/etc/ssl/certs"):
        os.environ.pop("SSL_CERT_FILE", None)
        os.environ["SSL_CERT_DIR"] = "/etc/ssl/certs"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the migrated template the run's databases were copied from."""
    databases.drop_template()


class Upstream:
    def __init__(self, name: str = "upstream"):
        self.state = UpstreamState()
        self.server = ServerThread(make_upstream(self.state, name)).start()
        self.url = self.server.url + "/v1"

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """An OpenAI-compatible upstream serving ``gpt-test`` (change ``.state`` to steer it)."""
    server = Upstream()
    yield server
    server.stop()


@pytest.fixture
def second_upstream() -> Iterator[Upstream]:
    server = Upstream("second")
    yield server
    server.stop()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    """relaygate on a fresh SQLite file, started with a known admin key."""
    running = Gateway(tmp_path).start()
    yield running
    running.stop()
