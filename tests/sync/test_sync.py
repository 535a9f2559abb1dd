"""Model discovery against a real upstream: reconcile, history, errors, interval, filter."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Upstream
from tests.support.gateway import Gateway
from tests.support.polling import eventually
from tests.support.servers import free_port

API = "/admin/api/v1"


def models_by_id(gateway: Gateway) -> dict[str, str]:
    return {m["upstream_id"]: m["status"] for m in gateway.admin.get(f"{API}/models").json()}


def sync(gateway: Gateway, endpoint_id: int) -> dict[str, Any]:
    body: dict[str, Any] = gateway.admin.post(f"{API}/endpoints/{endpoint_id}/sync").json()
    return body


def test_vanished_models_go_offline_and_come_back(gateway: Gateway, upstream: Upstream) -> None:
    """Vanished models are kept offline, returning ones go online, all in the sync history."""
    upstream.state.models = ["a", "b"]
    endpoint = gateway.add_endpoint("up", upstream.url)
    upstream.state.models = ["b", "c"]
    result = sync(gateway, endpoint["id"])
    assert {k: result[k] for k in ("status", "added", "reactivated", "deactivated", "total")} == {
        "status": "ok",
        "added": 1,
        "reactivated": 0,
        "deactivated": 1,
        "total": 2,
    }
    assert models_by_id(gateway) == {"a": "offline", "b": "online", "c": "online"}
    assert sorted(m.id for m in gateway.openai().models.list()) == ["b", "c"]
    upstream.state.models = ["a", "b", "c"]
    result = sync(gateway, endpoint["id"])
    assert (result["added"], result["reactivated"], result["deactivated"]) == (0, 1, 0)
    assert models_by_id(gateway) == {"a": "online", "b": "online", "c": "online"}
    history = gateway.admin.get(f"{API}/endpoints/{endpoint['id']}/syncs").json()
    assert [h["trigger"] for h in history] == ["manual", "manual", "created"]
    assert [h["total"] for h in history] == [3, 2, 2]


@pytest.mark.parametrize(
    ("listing", "expected"),
    [
        ("401", "HTTP 401 from the provider"),
        ("html", "is not a model list (got text/html"),
        ("slow", "timed out after 0.5 s"),
    ],
)
def test_sync_errors_name_endpoint_and_cause(
    tmp_path: Path, upstream: Upstream, listing: str, expected: str
) -> None:
    """A failing sync keeps the models (offline) and records an actionable reason."""
    gateway = Gateway(tmp_path, sync_timeout=0.5).start()
    try:
        upstream.state.slow_seconds = 2
        endpoint = gateway.add_endpoint("flaky", upstream.url)
        upstream.state.listing = listing
        result = sync(gateway, endpoint["id"])
        assert result["status"] == "error"
        assert "endpoint 'flaky'" in result["error"]
        assert expected in result["error"]
        shown = gateway.admin.get(f"{API}/endpoints/{endpoint['id']}").json()["sync"]
        assert shown["status"] == "error" and expected in shown["error"]
        assert models_by_id(gateway) == {"gpt-test": "offline"}
    finally:
        gateway.stop()


def test_refused_connection_is_named(gateway: Gateway) -> None:
    """An endpoint nobody listens on: the error says the connection was refused."""
    endpoint = gateway.add_endpoint("down", f"http://127.0.0.1:{free_port()}/v1")
    assert endpoint["sync"]["status"] == "error"
    assert "connection refused" in endpoint["sync"]["error"]
    assert "endpoint 'down'" in endpoint["sync"]["error"]


def test_model_filter_limits_synced_models(gateway: Gateway, upstream: Upstream) -> None:
    """Only models matching the filter's ids or globs are stored and served."""
    upstream.state.models = ["gpt-4o", "gpt-4o-mini", "gpt-3.5", "whisper-1"]
    gateway.add_endpoint("up", upstream.url, model_filter=["gpt-4*", "whisper-1"])
    assert sorted(models_by_id(gateway)) == ["gpt-4o", "gpt-4o-mini", "whisper-1"]


def test_periodic_sync_follows_upstream(tmp_path: Path, upstream: Upstream) -> None:
    """With a short per-endpoint interval, a vanished model goes offline without any action."""
    gateway = Gateway(tmp_path).start()
    try:
        upstream.state.models = ["a", "b"]
        gateway.add_endpoint("up", upstream.url, sync_interval=0.5)
        upstream.state.models = ["a"]
        deadline = time.monotonic() + 10
        while models_by_id(gateway).get("b") != "offline":
            assert time.monotonic() < deadline, "periodic sync did not run"
            time.sleep(0.1)
        # The view the proxy reads follows the database's commit a moment later.
        listed = eventually(
            lambda: [m.id for m in gateway.openai().models.list()], lambda ids: ids == ["a"]
        )
        assert listed == ["a"]
        history = gateway.admin.get(f"{API}/endpoints/1/syncs").json()
        assert "interval" in {h["trigger"] for h in history}
    finally:
        gateway.stop()


@pytest.mark.parametrize("prefix", ["/admin/api/v1", "/v1"])
def test_registry_refresh_and_status(
    gateway: Gateway, upstream: Upstream, second_upstream: Upstream, prefix: str
) -> None:
    """refresh syncs every enabled endpoint; status shows the refresh, counts and host info."""
    gateway.add_endpoint("one", upstream.url, sync=False)
    gateway.add_endpoint("two", second_upstream.url, sync=False)
    before = gateway.admin.get(f"{prefix}/registry/status").json()
    assert before["last_refresh_at"] is None
    refreshed = gateway.admin.post(f"{prefix}/registry/refresh").json()
    assert sorted(r["endpoint"] for r in refreshed["results"]) == ["one", "two"]
    assert {r["status"] for r in refreshed["results"]} == {"ok"}
    status = gateway.admin.get(f"{prefix}/registry/status").json()
    assert status["last_refresh_at"] is not None
    assert status["models_online"] == 2
    assert [e["sync"]["status"] for e in status["endpoints"]] == ["ok", "ok"]
    assert status["host"]["cpus"] >= 1 and status["host"]["python"]
