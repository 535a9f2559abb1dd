"""SQLite's usage writer against an event loop that holds the GIL: seconds per row of
relaygate's batch (one ``INSERT … SELECT FROM json_each(?)``) and of the executemany it
replaced, each with the process otherwise idle and with a thread spinning in Python
beside it (as the event loop does at saturation). Run by hand:

    .venv/bin/python bench/usage_writer.py [rows]

Prints one line per writer and condition: wall and CPU microseconds per row.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, insert

from relaygate.db.engine import make_blocking_sqlite_engine
from relaygate.db.tables import UsageRecord
from relaygate.usage_records import UsageEntry, _insert_blocking

BATCH = 500


def entries(count: int) -> list[UsageEntry]:
    start = datetime(2031, 1, 15, tzinfo=UTC)
    return [
        UsageEntry(
            created_at=start + timedelta(microseconds=n),
            request_id=f"{n:032x}",
            user_id=n % 50,
            key_id=n % 200,
            endpoint_id=1,
            model="gpt-test",
            upstream_model="gpt-test",
            path="/v1/chat/completions",
            upstream_path=None,
            status=200,
            stream=False,
            latency_ms=1.25,
            ttfb_ms=0.75,
            prompt_tokens=11,
            completion_tokens=5,
            total_tokens=16,
            cost=None,
        )
        for n in range(count)
    ]


def executemany(engine: Engine, batch: list[UsageEntry]) -> None:
    """The writer before: the ORM table's Core insert as one executemany."""
    with engine.begin() as connection:
        connection.execute(insert(UsageRecord), [dataclasses.asdict(e) for e in batch])


def measure(
    write: Callable[[Engine, list[UsageEntry]], None], rows: list[UsageEntry], busy: bool
) -> tuple[float, float]:
    """Microseconds per row (wall, CPU of the writing thread) writing ``rows`` in batches."""
    with tempfile.TemporaryDirectory() as folder:
        engine = make_blocking_sqlite_engine(str(Path(folder) / "usage.db"))
        UsageRecord.__table__.create(engine)
        stop = threading.Event()

        def spin() -> None:
            count = 0
            while not stop.is_set():
                count += 1

        spinner = threading.Thread(target=spin)
        if busy:
            spinner.start()
        try:
            began, cpu = time.perf_counter(), time.thread_time()
            for at in range(0, len(rows), BATCH):
                write(engine, rows[at : at + BATCH])
            wall, cpu = time.perf_counter() - began, time.thread_time() - cpu
        finally:
            stop.set()
            if busy:
                spinner.join()
            engine.dispose()
    return wall / len(rows) * 1e6, cpu / len(rows) * 1e6


def main() -> None:
    rows = entries(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
    for name, write in (("json_each (now)", _insert_blocking), ("executemany", executemany)):
        for busy in (False, True):
            wall, cpu = measure(write, rows, busy)
            beside = "a spinning thread beside" if busy else "idle process"
            print(f"{name:16} {beside:25} {wall:8.1f} µs/row wall {cpu:6.1f} µs/row CPU")


if __name__ == "__main__":
    main()
