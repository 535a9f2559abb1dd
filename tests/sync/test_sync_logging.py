"""Sync logs that are worth reading: silence while nothing changes, one line when
something does, one line when an endpoint starts failing and one when it recovers,
and one line per cause for an endpoint that cannot be used, however often the catalogue
is synced or rebuilt."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaygate.sync.service import sync_history
from tests.conftest import Upstream
from tests.support.gateway import Gateway

API = "/admin/api/v1"


@pytest.fixture
def busy(tmp_path: Path, upstream: Upstream) -> Iterator[Gateway]:
    """A gateway that syncs every endpoint every 0.05 s: 20 syncs a second (stopped
    before the upstream is)."""
    running = Gateway(tmp_path, sync_interval=0.05).start()
    yield running
    running.stop()


def latest_sync(gateway: Gateway, endpoint_id: int) -> int:
    """The id of the endpoint's latest sync run (0: none yet), read from the database
    on the server's loop (an HTTP request would add lines of its own)."""
    history = gateway.on_loop(lambda: sync_history(gateway.ctx, endpoint_id, 1))
    return history[0].id if history else 0


def wait_syncs(gateway: Gateway, endpoint_id: int, count: int) -> None:
    """Wait until the endpoint has been synced ``count`` more times."""
    target = latest_sync(gateway, endpoint_id) + count
    deadline = time.monotonic() + 30
    while latest_sync(gateway, endpoint_id) < target:
        assert time.monotonic() < deadline, "the endpoint is not being synced"
        time.sleep(0.05)


def server_lines(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    """Log lines at ``level`` or above from the server, less those of the test's own admin
    requests (its HTTP client's, and uvicorn's access lines, which ``relaygate serve``
    turns off)."""
    return [
        f"{r.levelname} {r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= level and not r.name.startswith(("httpx", "uvicorn.access"))
    ]


def test_an_idle_minute_of_successful_syncs_logs_nothing(
    busy: Gateway, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """Forty syncs in a row that find the same models write no log line at info or
    above (at every 30 s per endpoint, that is twenty idle minutes)."""
    caplog.set_level(logging.INFO)
    endpoint = busy.add_endpoint("local", upstream.url)
    wait_syncs(busy, endpoint["id"], 3)
    caplog.clear()
    wait_syncs(busy, endpoint["id"], 40)
    assert server_lines(caplog) == []


def test_changes_failures_and_recovery_are_logged_once_each(
    busy: Gateway, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """A vanished model is logged once, a failing endpoint once (a warning, however many
    syncs fail), and its recovery once."""
    caplog.set_level(logging.INFO)
    upstream.state.models = ["gpt-test", "other"]
    endpoint = busy.add_endpoint("local", upstream.url)
    wait_syncs(busy, endpoint["id"], 3)
    caplog.clear()
    upstream.state.models = ["gpt-test"]
    wait_syncs(busy, endpoint["id"], 10)
    assert server_lines(caplog) == [
        "INFO relaygate.sync.service: synced endpoint 'local': 1 model "
        "(0 added, 0 reactivated, 1 deactivated)"
    ]
    caplog.clear()
    upstream.state.listing = "500"
    wait_syncs(busy, endpoint["id"], 10)
    lines = server_lines(caplog)
    assert len(lines) == 1 and lines[0].startswith("WARNING relaygate.sync.service: sync of")
    assert "'local' failed" in lines[0]
    caplog.clear()
    upstream.state.listing = "ok"
    wait_syncs(busy, endpoint["id"], 10)
    assert server_lines(caplog) == [
        "INFO relaygate.sync.service: endpoint 'local' recovered: 1 model "
        "(0 added, 1 reactivated, 0 deactivated)"
    ]


def test_an_unusable_endpoint_is_logged_once_per_cause(
    busy: Gateway,
    upstream: Upstream,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An endpoint whose key variable is unset is logged as unusable once, however often
    its entry is rebuilt (every change to it) or its sync fails; once it has a key, one
    line says it can be used again."""
    caplog.set_level(logging.INFO)
    monkeypatch.delenv("LOGTEST_MISSING_API_KEY", raising=False)
    endpoint = busy.add_endpoint("keyless", upstream.url, api_key_env="LOGTEST_MISSING_API_KEY")
    wait_syncs(busy, endpoint["id"], 5)
    for seconds in (50, 60, 70):  # each a change that rebuilds the endpoint's entry
        patched = busy.admin.patch(
            f"{API}/endpoints/{endpoint['id']}", json={"timeouts": {"total": seconds}}
        )
        assert patched.status_code == 200, patched.text
    wait_syncs(busy, endpoint["id"], 5)
    unusable = [line for line in server_lines(caplog) if "cannot be used" in line]
    assert unusable == [
        "ERROR relaygate.loader: endpoint 'keyless' cannot be used: environment variable "
        "LOGTEST_MISSING_API_KEY (its API key) is not set"
    ]
    failures = [line for line in server_lines(caplog) if line.startswith("WARNING")]
    assert len(failures) == 1 and "LOGTEST_MISSING_API_KEY" in failures[0]
    caplog.clear()
    patched = busy.admin.patch(
        f"{API}/endpoints/{endpoint['id']}", json={"api_key_env": None, "api_key": "sk-fine"}
    )
    assert patched.status_code == 200, patched.text
    wait_syncs(busy, endpoint["id"], 5)
    lines = server_lines(caplog)
    assert "INFO relaygate.loader: endpoint 'keyless' can be used again" in lines
    assert not [line for line in lines if "cannot be used" in line]
