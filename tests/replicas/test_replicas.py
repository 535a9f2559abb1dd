"""Two real relaygate processes on one PostgreSQL database."""

from __future__ import annotations

import itertools
import os
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Upstream
from tests.support import databases
from tests.support.process import ServeProcess, cli_env, relaygate

pytestmark = pytest.mark.skipif(
    databases.SERVER_URL is None, reason="RELAYGATE_TEST_DATABASE_URL is not set"
)
API = "/admin/api/v1"
INTERVAL = 1.0


class Replicas:
    def __init__(self, tmp_path: Path, url: str):
        self.admin_key = "rg-" + secrets.token_urlsafe(32)
        self.env = cli_env(
            tmp_path,
            RELAYGATE_DATABASE_URL=url,
            RELAYGATE_ADMIN_KEY=self.admin_key,
            RELAYGATE_SECRET_KEY=secrets.token_urlsafe(32),
            RELAYGATE_SYNC_INTERVAL=str(INTERVAL),
        )
        self.tmp_path = tmp_path
        self.a = ServeProcess(tmp_path, self.env).wait_ready()
        self.b = ServeProcess(tmp_path, self.env).wait_ready()
        self.headers = {"authorization": f"Bearer {self.admin_key}"}

    def api(self, server: ServeProcess) -> httpx.Client:
        return httpx.Client(base_url=server.url, headers=self.headers, timeout=10)

    def stop(self) -> None:
        for server in (self.a, self.b):
            server.stop()


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Replicas]:
    url = databases.create_postgres_database()
    running = Replicas(tmp_path, url)
    yield running
    running.stop()
    databases.drop(url)


def within(seconds: float, check: Callable[[], bool]) -> float:
    """Poll ``check`` until true; returns how long it took, failing past ``seconds``."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, f"not true within {seconds} s"
        time.sleep(0.02)
    return time.monotonic() - start


def models_status(key: str, server: ServeProcess) -> int:
    return httpx.get(
        server.url + "/v1/models", headers={"authorization": f"Bearer {key}"}
    ).status_code


def test_key_created_on_a_works_on_b_within_a_second(replicas: Replicas) -> None:
    with replicas.api(replicas.a) as a:
        key = a.post(f"{API}/keys", json={"name": "new"}).json()["key"]
    within(1.0, lambda: models_status(key, replicas.b) == 200)


def test_cli_revocation_reaches_both_within_a_second(replicas: Replicas) -> None:
    with replicas.api(replicas.a) as a:
        created = a.post(f"{API}/keys", json={"name": "doomed"}).json()
    within(1.0, lambda: models_status(created["key"], replicas.b) == 200)
    result = relaygate(replicas.tmp_path, "keys", "revoke", str(created["id"]), env=replicas.env)
    assert result.returncode == 0, result.stderr
    within(
        1.0,
        lambda: (
            models_status(created["key"], replicas.a) == 401
            and models_status(created["key"], replicas.b) == 401
        ),
    )


def test_endpoint_disabled_on_b_stops_routing_on_a(replicas: Replicas, upstream: Upstream) -> None:
    with replicas.api(replicas.a) as a, replicas.api(replicas.b) as b:
        endpoint = a.post(f"{API}/endpoints", json={"name": "up", "url": upstream.url}).json()
        chat = {"model": "gpt-test", "messages": []}
        within(1.0, lambda: b.post("/v1/chat/completions", json=chat).status_code == 200)
        b.patch(f"{API}/endpoints/{endpoint['id']}", json={"enabled": False})
        within(1.0, lambda: a.post("/v1/chat/completions", json=chat).status_code == 404)


def interval_syncs(client: httpx.Client, endpoint_id: int) -> list[dict[str, Any]]:
    history = client.get(f"{API}/endpoints/{endpoint_id}/syncs", params={"limit": 1000}).json()
    return sorted((h for h in history if h["trigger"] == "interval"), key=lambda h: h["started_at"])


def test_one_sync_per_endpoint_per_interval(replicas: Replicas, upstream: Upstream) -> None:
    """Over several intervals both replicas together sync each endpoint once per interval."""
    with replicas.api(replicas.a) as a:
        first = a.post(f"{API}/endpoints", json={"name": "one", "url": upstream.url}).json()
        second = a.post(f"{API}/endpoints", json={"name": "two", "url": upstream.url}).json()
        time.sleep(6 * INTERVAL)
        for endpoint in (first, second):
            runs = interval_syncs(a, endpoint["id"])
            assert 4 <= len(runs) <= 7, len(runs)
            starts = [datetime.fromisoformat(r["started_at"]) for r in runs]
            gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
            # A second sync in one interval would start at once; a start is stamped after
            # a claim and a read, which a loaded machine delays by a fraction of it.
            assert min(gaps) >= 0.5 * INTERVAL, gaps
            pids = {replicas.a.process.pid, replicas.b.process.pid}
            assert {int(r["replica"].rsplit(":", 1)[1]) for r in runs} <= pids


def test_killing_the_syncing_replica_lets_the_other_take_over(
    replicas: Replicas, upstream: Upstream
) -> None:
    with replicas.api(replicas.a) as a, replicas.api(replicas.b) as b:
        endpoint = a.post(f"{API}/endpoints", json={"name": "up", "url": upstream.url}).json()
        within(5, lambda: len(interval_syncs(a, endpoint["id"])) >= 1)
        last = interval_syncs(a, endpoint["id"])[-1]
        victim, survivor = (
            (replicas.a, b)
            if last["replica"].endswith(f":{replicas.a.process.pid}")
            else (replicas.b, a)
        )
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait(timeout=10)
        killed_at = datetime.fromisoformat(last["started_at"])
        alive = replicas.b if victim is replicas.a else replicas.a
        alive_tag = f":{alive.process.pid}"

        def taken_over() -> bool:
            return any(
                datetime.fromisoformat(r["started_at"]) > killed_at
                and r["replica"].endswith(alive_tag)
                for r in interval_syncs(survivor, endpoint["id"])
            )

        within(3 * INTERVAL, taken_over)


def test_concurrent_syncs_leave_no_duplicate_rows(replicas: Replicas, upstream: Upstream) -> None:
    """Eight syncs of one endpoint at once on two replicas add each model exactly once."""
    upstream.state.models = [f"m-{i}" for i in range(20)]
    with replicas.api(replicas.a) as a, replicas.api(replicas.b) as b:
        endpoint = a.post(
            f"{API}/endpoints", json={"name": "up", "url": upstream.url, "sync": False}
        ).json()
        path = f"{API}/endpoints/{endpoint['id']}/sync"
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda c: c.post(path).json(), [a, b] * 4))
        assert {r["status"] for r in results} == {"ok"}
        # The scheduler may sync the new endpoint too: every sync counts, each model once.
        history = a.get(f"{API}/endpoints/{endpoint['id']}/syncs").json()
        assert sum(run["added"] for run in history) == 20
        models = a.get(f"{API}/models").json()
        ids = [m["upstream_id"] for m in models]
        assert len(ids) == len(set(ids)) == 20
