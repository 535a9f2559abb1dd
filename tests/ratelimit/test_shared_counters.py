"""The rate-limit table the workers of ``serve --workers N`` share: real processes
counting in one LMDB table at once, ended windows swept, and a full table."""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path
from typing import Any

import lmdb
import pytest

from relaygate.ratelimit_counters import (
    SWEEP_BATCH,
    SharedCounters,
    Subject,
    create_shared_table,
)

KEY = Subject("rl:{user:1}:key:1", "this API key", 60, None)
USER = Subject("rl:{user:1}", "your user", 1000, None)


def _admit_many(path: str, times: int, start: Any, results: Any) -> None:
    """Take ``times`` requests of KEY and USER in the table at ``path`` once ``start``
    is set; put how many were admitted in ``results``."""
    counters = SharedCounters(Path(path), 60.0)
    start.wait()
    results.put(sum(counters.take([KEY, USER], 1000.0)[0] for _ in range(times)))
    counters.close()


def test_processes_share_one_window(tmp_path: Path) -> None:
    """Three processes taking 50 requests each at once on a key limited to 60 admit 60 in
    all: the check and the count are one step across processes."""
    table = tmp_path / "ratelimit"
    create_shared_table(table)
    spawn = multiprocessing.get_context("spawn")
    start, results = spawn.Event(), spawn.Queue()
    processes = [
        spawn.Process(target=_admit_many, args=(str(table), 50, start, results)) for _ in range(3)
    ]
    for process in processes:
        process.start()
    start.set()
    admitted = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=10)
    assert sum(admitted) == 60
    counters = SharedCounters(table, 60.0)
    try:
        ok, counts = counters.take([KEY, USER], 1000.0)
        assert not ok
        assert (counts[0].requests, counts[1].requests) == (60, 60)
        assert counts[0].left == pytest.approx(60.0, abs=1e-6)
    finally:
        counters.close()


def test_a_window_ends_and_is_swept(tmp_path: Path) -> None:
    """A window that ended counts for nothing, its tokens included; once a window has
    passed, ended windows are deleted a batch per request."""
    table = tmp_path / "ratelimit"
    create_shared_table(table)
    counters = SharedCounters(table, 60.0)
    try:
        many = [Subject(f"rl:{{user:{i}}}", "your user", 5, 100) for i in range(SWEEP_BATCH + 10)]
        for subject in many:
            counters.take([subject], 1000.0)
        counters.add_tokens([many[0].name], 100, 1010.0)
        ok, counts = counters.take([many[0]], 1020.0)
        assert not ok and counts[0].tokens == 100  # the token limit is reached
        assert len(counters) == len(many)
        ok, counts = counters.take([many[0]], 1061.0)  # its window ended at 1060
        assert ok and (counts[0].requests, counts[0].tokens) == (1, 0)
        assert counts[0].left == pytest.approx(60.0)
        counters.take([many[1]], 1062.0)  # the next sweeps are due: a batch each
        counters.take([many[1]], 1062.0)
        assert len(counters) == 2  # the two live windows
    finally:
        counters.close()


def test_a_full_table_counts_in_the_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """When the table has no room left, subjects are counted in the process instead
    (limits still hold there), logged once; nothing fails."""
    table = tmp_path / "ratelimit"
    table.mkdir()
    lmdb.open(str(table), map_size=64 * 1024).close()  # a table of 16 pages
    counters = SharedCounters(table, 60.0, size=64 * 1024)
    try:
        with caplog.at_level(logging.ERROR, "relaygate.ratelimit_counters"):
            for i in range(2000):
                subject = Subject(f"rl:{{user:{i}}}:" + "x" * 200, "your user", 1, None)
                assert counters.take([subject], 1000.0)[0]
                assert not counters.take([subject], 1000.0)[0]
        assert [r.message for r in caplog.records].count(
            "rate limits: the table shared by the workers is full; counting the subjects it "
            "cannot hold in each worker alone"
        ) == 1
    finally:
        counters.close()
