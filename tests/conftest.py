"""Shared fixtures: a controllable upstream and a running relaygate, both on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import databases
from tests.support.gateway import Gateway
from tests.support.servers import ServerThread
from tests.support.upstream import UpstreamState, make_upstream


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
