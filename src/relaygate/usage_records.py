"""Usage records: made on the request path as a queue append, written in batches off it.

The proxy appends one :class:`UsageEntry` per request to a bounded
:class:`UsageQueue`; :func:`write_usage` (a background task) inserts them in batches
every ``usage_flush_interval`` seconds, or as soon as ``usage_batch_size`` wait, and once
more when stopping. On SQLite a batch is written whole in a worker thread, one hop off
the event loop: through the async driver each database call is a hop of its own, and on
a loop busy with a few thousand requests a second each hop waits its turn: the queue
then grew five times faster. A process held at full CPU for minutes still outruns the
writer (it waits for the GIL) and fills the queue (``bench/RESULTS.md``, issue 22). A
stalled database never blocks a request: past
``usage_queue_size`` waiting entries, new ones are dropped, counted in the metric
``relaygate_usage_dropped_total`` and logged (once per burst of drops).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from operator import attrgetter

import orjson
from sqlalchemy import Engine, insert

from relaygate.context import Context
from relaygate.db.engine import make_blocking_sqlite_engine, refused_data
from relaygate.db.tables import UsageRecord
from relaygate.metrics import Metrics
from relaygate.pauses import pause, wait_any

log = logging.getLogger(__name__)


@dataclass(slots=True)
class UsageEntry:
    """One proxied request, as stored in ``usage_records``. Times in milliseconds;
    ``cost`` in the currency of the model's prices, or None when it has none;
    ``audio_seconds`` what an answer billed by the audio's length reported (a
    transcription's ``usage.seconds``)."""

    created_at: datetime
    request_id: str | None
    user_id: int
    key_id: int
    endpoint_id: int | None
    model: str
    upstream_model: str | None
    path: str
    upstream_path: str | None
    """The route the target was sent, when translated (below the endpoint URL)."""
    status: int
    stream: bool
    latency_ms: float
    ttfb_ms: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cost: float | None
    audio_seconds: float | None = None


def cost_of(
    prompt: int | None,
    completion: int | None,
    input_price: float | None,
    output_price: float | None,
) -> float | None:
    """The cost of ``prompt`` and ``completion`` tokens at prices per million tokens;
    None when the model has no price at all or no tokens were reported."""
    if (input_price is None and output_price is None) or (prompt is None and completion is None):
        return None
    return ((prompt or 0) * (input_price or 0.0) + (completion or 0) * (output_price or 0.0)) / 1e6


class UsageQueue:
    """The bounded queue between the request path and :func:`write_usage`."""

    def __init__(self, metrics: Metrics, size: int = 100_000, batch: int = 500):
        self._metrics = metrics
        self._size = size
        self._batch = batch
        self._items: list[UsageEntry] = []
        self._dropping = False
        self.ready = asyncio.Event()
        """Set when a batch is waiting: the writer need not wait for its interval."""

    def __len__(self) -> int:
        return len(self._items)

    def put(self, entry: UsageEntry) -> None:
        """Queue ``entry``, or drop it (counted and logged) when the queue is full."""
        items = self._items
        if len(items) >= self._size:
            self._metrics.usage_dropped.inc()
            if not self._dropping:
                self._dropping = True
                log.error(
                    "usage queue full (%d records waiting; is the database stalled?): "
                    "dropping usage records until it drains",
                    self._size,
                )
            return
        items.append(entry)
        if len(items) == self._batch:
            self.ready.set()

    def take(self) -> list[UsageEntry]:
        """The oldest waiting entries, one batch at most (empty: none wait). Bounded
        batches keep a backlog from costing its size again in rows and SQL parameters,
        and let other writers at the database between two batches."""
        items = self._items
        if len(items) <= self._batch:
            self._items = []
            taken = items
        else:
            taken = items[: self._batch]
            del items[: self._batch]
        if len(self._items) < self._batch:
            self.ready.clear()
        if self._dropping and not taken:
            self._dropping = False
        return taken

    def give_back(self, entries: list[UsageEntry]) -> None:
        """Put a batch that could not be written back in front, within the bound."""
        room = self._size - len(self._items)
        if room < len(entries):
            self._metrics.usage_dropped.inc(len(entries) - max(room, 0))
            entries = entries[len(entries) - max(room, 0) :]
        self._items[:0] = entries
        if len(self._items) >= self._batch:
            self.ready.set()


_COLUMNS = tuple(field.name for field in fields(UsageEntry))
# A Core insert run as one executemany: the ORM's bulk insert and dataclasses.asdict (a
# deep copy) cost several times more per row, on the event loop's thread.
_INSERT = insert(UsageRecord)
# SQLite's batch: every row in one statement, read from one JSON array of rows by SQLite
# itself (json_each). An executemany steps once per row, and Python's sqlite3 lets go of
# the GIL around each step: on a process whose event loop holds the GIL, taking it back
# waited up to the switch interval (5 ms) per row, 660 µs a row in all (measured;
# bench/RESULTS.md, issue 22). One statement takes it back a few times per batch.
_JSON_INSERT = "INSERT INTO {table} ({names}) SELECT {picks} FROM json_each(?)".format(
    table=UsageRecord.__tablename__,
    names=", ".join(_COLUMNS),
    picks=", ".join(f"json_extract(value, '$[{n}]')" for n in range(len(_COLUMNS))),
)
_AFTER_CREATED = attrgetter(*_COLUMNS[1:])
assert _COLUMNS[0] == "created_at"


def _insert_blocking(engine: Engine, entries: list[UsageEntry]) -> None:
    """Insert ``entries`` in one transaction of ``engine``, a SQLite file's (run in a
    worker thread): one statement reading the rows from a JSON array (passed as text:
    SQLite 3.45 reads a blob as its binary JSONB), or an executemany when a row cannot go
    through JSON as it is (a string that is not UTF-8, or holds a NUL, at which SQLite's
    JSON functions would cut it)."""
    dialect = engine.dialect  # the column's type as the dialect stores it (text)
    stamp = UsageRecord.__table__.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
    assert stamp is not None
    rows: bytes | None
    try:
        rows = orjson.dumps([(stamp(e.created_at), *_AFTER_CREATED(e)) for e in entries])
    except TypeError:  # orjson's JSONEncodeError: a lone surrogate, say
        rows = None
    with engine.begin() as connection:
        if rows is None or b"\\u0000" in rows:  # (orjson writes a NUL so)
            connection.execute(_INSERT, [_row(entry) for entry in entries])
        else:
            connection.exec_driver_sql(_JSON_INSERT, (rows.decode(),))


def _row(entry: UsageEntry) -> dict[str, object]:
    return {name: getattr(entry, name) for name in _COLUMNS}


async def _insert(ctx: Context, entries: list[UsageEntry], blocking: Engine | None) -> None:
    """Insert ``entries`` in one transaction (with ``blocking``, a SQLite engine, in a
    worker thread); raises what the database raises."""
    if blocking is not None:
        await asyncio.to_thread(_insert_blocking, blocking, entries)
    else:
        async with ctx.engine.begin() as connection:
            await connection.execute(_INSERT, [_row(entry) for entry in entries])


async def _write_each(
    ctx: Context,
    queue: UsageQueue,
    entries: list[UsageEntry],
    metrics: Metrics,
    blocking: Engine | None,
) -> None:
    """Insert ``entries`` one per transaction after their batch was refused for its data:
    a record the database refuses on its own is dropped (counted in
    ``relaygate_usage_dropped_total`` and logged), so one bad record never holds back the
    others. Once a record fails for another reason, it and those after it go back to
    ``queue`` and the error is raised."""
    for at, entry in enumerate(entries):
        try:
            await _insert(ctx, [entry], blocking)
        except Exception as exc:
            if not refused_data(exc):
                queue.give_back(entries[at:])
                raise
            metrics.usage_dropped.inc()
            log.error("dropped a usage record the database refused (%s): %r", exc, entry)
        else:
            metrics.usage_written.inc()


async def _write(
    ctx: Context, queue: UsageQueue, metrics: Metrics, blocking: Engine | None = None
) -> None:
    """Write what waits in ``queue``, a batch per transaction (with ``blocking``, a
    SQLite engine, in a worker thread). A batch the database refuses for its data (see
    :func:`refused_data`) is written again record by record (:func:`_write_each`); a
    batch that failed otherwise (the database unreachable, say) goes back to the queue
    and the error is raised."""
    while entries := queue.take():
        started = time.monotonic()
        try:
            await _insert(ctx, entries, blocking)
        except Exception as exc:
            if refused_data(exc):
                log.warning("a batch of usage records was refused (%s): writing each", exc)
                await _write_each(ctx, queue, entries, metrics, blocking)
                continue
            queue.give_back(entries)
            log.warning("could not write %d usage records (will retry): %s", len(entries), exc)
            raise
        metrics.usage_written.inc(len(entries))
        log.debug(
            "wrote %d usage records in %.1f ms", len(entries), (time.monotonic() - started) * 1e3
        )


async def write_usage(
    ctx: Context, queue: UsageQueue, metrics: Metrics, stop: asyncio.Event
) -> None:
    """Write queued usage records until ``stop`` is set, then write what is left."""
    interval = ctx.settings.usage_flush_interval
    path = ctx.settings.sqlite_path
    blocking = make_blocking_sqlite_engine(str(path)) if path is not None else None
    try:
        while not stop.is_set():
            await wait_any(stop, queue.ready, interval)
            try:
                await _write(ctx, queue, metrics, blocking)
            except Exception:
                await pause(stop, interval)
        for _ in range(3):  # stopping: a few tries, then give up on what is left
            try:
                await _write(ctx, queue, metrics, blocking)
                return
            except Exception:
                await asyncio.sleep(0.2)
        if len(queue):
            log.error("stopping with %d usage records unwritten", len(queue))
    finally:
        if blocking is not None:
            blocking.dispose()


def now() -> datetime:
    """The time a usage record is stamped with (UTC)."""
    return datetime.now(UTC)
