"""``relaygate serve --workers 2`` on SQLite without Redis, as real processes: requests
spread over both workers (fresh connections, sent at once) are counted together by
``/metrics`` whichever worker answers the scrape, and rate limits and budgets hold
across the workers."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import stat
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from tests.conftest import Upstream
from tests.support.process import ServeProcess, cli_env

API = "/admin/api/v1"
HELLO = [{"role": "user", "content": "hi"}]
PRICE = 1000.0
"""Per million tokens, in and out: the upstream's 3 + 4 tokens cost 0.007."""


class Workers:
    """``serve --workers 2`` with an admin key, the test upstream as an endpoint, and its
    temporary directory (the workers' shared one is made in it) under ``tmp``."""

    def __init__(self, tmp_path: Path, upstream: Upstream):
        self.admin_key = "rg-" + secrets.token_urlsafe(32)
        self.tmp = tmp_path / "tmp"
        self.tmp.mkdir()
        env = cli_env(
            tmp_path,
            RELAYGATE_ADMIN_KEY=self.admin_key,
            RELAYGATE_USAGE_FLUSH_INTERVAL="0.1",
            TMPDIR=str(self.tmp),
        )
        self.server = ServeProcess(tmp_path, env, "--workers", "2").wait_ready(timeout=90)
        self.admin = httpx.Client(
            base_url=self.server.url, headers={"authorization": f"Bearer {self.admin_key}"}
        )
        _ok(self.admin.post(f"{API}/endpoints", json={"name": "up", "url": upstream.url}))

    def key(self, **fields: Any) -> str:
        """A new API key with ``fields`` (limits, budget), once both workers serve it."""
        created = _ok(self.admin.post(f"{API}/keys", json={"name": secrets.token_hex(4)}))
        if fields:
            _ok(self.admin.patch(f"{API}/keys/{created['id']}", json=fields))
        self.caught_up()
        return str(created["key"])

    def caught_up(self) -> None:
        """Wait until the lowest snapshot version any worker serves (the ``livemin``
        gauge) is the newest one a worker reports. The newest is asked of the worker that
        made the changes (the admin client's kept-alive connection: a worker serves its
        own changes at once) as well as on fresh connections: fresh ones alone may all
        reach the worker that lags, and report its version as the newest."""
        deadline = time.monotonic() + 30
        while True:
            newest = max(
                self.admin.get("/readyz").json()["snapshot_version"],
                *(
                    httpx.get(self.server.url + "/readyz").json()["snapshot_version"]
                    for _ in range(6)
                ),
            )
            if scrape(self.server.url, "relaygate_snapshot_version") >= newest:
                return
            assert time.monotonic() < deadline, "a worker never caught up"
            time.sleep(0.2)

    def served_by_worker(self) -> dict[str, float]:
        """Proxied answers by worker (pid), read from each worker's own metrics file."""
        counts: dict[str, float] = {}
        for path in self.tmp.glob("relaygate-workers-*/metrics/counter_*.db"):
            pid = path.stem.rsplit("_", 1)[1]
            for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
                _, sample, _, _ = json.loads(key)
                if sample == "relaygate_proxy_requests_total":
                    counts[pid] = counts.get(pid, 0.0) + value
        return counts

    def stop(self) -> None:
        self.admin.close()
        assert self.server.stop() == 0


@pytest.fixture
def workers(tmp_path: Path, upstream: Upstream) -> Iterator[Workers]:
    running = Workers(tmp_path, upstream)
    try:
        yield running
    finally:
        running.stop()
    # serve removes the directory its workers shared.
    assert list(running.tmp.glob("relaygate-workers-*")) == []


def _ok(response: httpx.Response) -> Any:
    assert response.status_code < 300, response.text
    return response.json()


def scrape(url: str, sample: str) -> float:
    """The value of the unlabelled ``sample`` (or the sum of its series) on ``/metrics``."""
    text = httpx.get(url + "/metrics").text
    found = re.findall(rf"^{re.escape(sample)}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    assert found, f"{sample} not on /metrics"
    return sum(float(v) for v in found)


def at_once(count: int, send: Callable[[int], httpx.Response]) -> list[httpx.Response]:
    """``send(i)`` for ``i`` in ``range(count)``, 16 at a time."""
    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(send, range(count)))


def chat(url: str, key: str) -> httpx.Response:
    """One chat completion on a connection of its own (so the kernel may hand it to
    either worker)."""
    return httpx.post(
        url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "gpt-test", "messages": HELLO, "max_tokens": 4},
        timeout=30,
    )


def test_metrics_add_up_over_the_workers(workers: Workers) -> None:
    """Requests answered by both workers are all in ``/metrics``, counters and histograms
    alike, on every scrape whichever worker answers it; gauges appear once."""
    key = workers.key()
    url = workers.server.url
    answers = at_once(60, lambda _: chat(url, key))
    assert {a.status_code for a in answers} == {200}
    by_worker = workers.served_by_worker()
    assert len(by_worker) == 2 and min(by_worker.values()) > 0, by_worker
    [shared] = workers.tmp.glob("relaygate-workers-*")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o700  # no other local user reads or writes it
    deadline = time.monotonic() + 5
    while scrape(url, "relaygate_proxy_requests_total") < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(8):  # fresh connections: scrapes answered by either worker
        text = httpx.get(url + "/metrics").text
        assert 'relaygate_proxy_requests_total{status="2xx"} 60.0' in text
        assert re.search(
            r'^relaygate_requests_total\{gen_ai_request_model="gpt-test",'
            r'relaygate_endpoint="up",status="200"\} 60\.0$',
            text,
            re.M,
        )
        assert re.search(
            r"^gen_ai_client_operation_duration_seconds_count\{[^}]*\} 60\.0$", text, re.M
        )
        assert re.search(
            r'^relaygate_tokens_total\{[^}]*gen_ai_token_type="input"[^}]*\} 180\.0$', text, re.M
        )
        assert len(re.findall(r"^relaygate_proxy_in_flight ", text, re.M)) == 1
    assert sum(workers.served_by_worker().values()) == 60


def test_a_rate_limit_holds_across_the_workers(workers: Workers) -> None:
    """A key limited to 6 requests a minute gets exactly 6 of 12 requests sent at once
    over both workers; the rest are refused with OpenAI's 429."""
    url = workers.server.url
    for _ in range(3):  # until the admitted requests were spread over both workers
        key = workers.key(requests_per_minute=6)
        before = workers.served_by_worker()
        answers = at_once(12, lambda _, key=key: chat(url, key))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200] * 6 + [429] * 6
        refused = [a for a in answers if a.status_code == 429]
        assert {a.json()["error"]["code"] for a in refused} == {"rate_limit_exceeded"}
        assert {a.json()["error"]["type"] for a in refused} == {"requests"}
        late = chat(url, key)
        assert late.status_code == 429 and late.headers["x-ratelimit-remaining-requests"] == "0"
        after = workers.served_by_worker()
        if all(after[pid] - before.get(pid, 0.0) > 0 for pid in after) and len(after) == 2:
            break
    else:
        pytest.fail("the requests never reached both workers")


def test_a_budget_holds_across_the_workers(workers: Workers, upstream: Upstream) -> None:
    """A budget of 0.1 on a key is never passed by 50 requests sent at once over both
    workers (each worker alone would let about 0.1 through): budgets are kept in the
    SQLite database they share."""
    for model in _ok(workers.admin.get(f"{API}/models")):
        prices = {"input_cost_per_million_tokens": PRICE, "output_cost_per_million_tokens": PRICE}
        _ok(workers.admin.patch(f"{API}/models/{model['id']}", json=prices))
    key = workers.key(budget=0.1, budget_period="daily")
    before = workers.served_by_worker()
    answers = at_once(50, lambda _: chat(workers.server.url, key))
    served = sum(a.status_code == 200 for a in answers)
    refused = [a for a in answers if a.status_code == 429]
    assert {a.json()["error"]["code"] for a in refused} == {"budget_exceeded"}
    assert served + len(refused) == 50
    assert 1 <= served <= 14  # 14 * 0.007 = 0.098
    after = workers.served_by_worker()
    assert len(after) == 2
    assert all(after[pid] - before.get(pid, 0.0) > 0 for pid in after), (before, after)
    deadline = time.monotonic() + 10
    while True:
        total = _ok(workers.admin.get(f"{API}/usage"))["total"]
        if total["requests"] >= 50 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert total["cost"] == pytest.approx(served * 0.007)
    assert total["cost"] <= 0.1


def test_a_dead_worker_counts_stay_and_its_gauges_go(workers: Workers) -> None:
    """A worker killed outright is replaced by the supervisor; the requests it answered
    stay in ``/metrics`` totals, and its gauge files summed over live workers are
    removed (``mark_process_dead``), so they no longer count."""
    key = workers.key()
    url = workers.server.url
    assert {a.status_code for a in at_once(30, lambda _: chat(url, key))} == {200}
    before = workers.served_by_worker()
    victim = next(pid for pid, served in before.items() if served > 0)
    [shared] = workers.tmp.glob("relaygate-workers-*")
    assert (shared / "metrics" / f"gauge_livesum_{victim}.db").exists()
    os.kill(int(victim), signal.SIGKILL)
    deadline = time.monotonic() + 90
    while len(workers.served_by_worker()) < 3:
        assert time.monotonic() < deadline, "no worker replaced the one killed"
        time.sleep(0.2)
    while (shared / "metrics" / f"gauge_livesum_{victim}.db").exists():
        assert time.monotonic() < deadline, "the dead worker's gauges were kept"
        time.sleep(0.2)
    workers.caught_up()
    assert {a.status_code for a in at_once(10, lambda _: chat(url, key))} == {200}
    deadline = time.monotonic() + 5
    while scrape(url, "relaygate_proxy_requests_total") < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(4):
        assert scrape(url, "relaygate_proxy_requests_total") == 40
        assert scrape(url, "relaygate_proxy_in_flight") == 0
