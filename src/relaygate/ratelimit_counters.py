"""Where rate-limit counters live without Redis: in this process (:class:`LocalCounters`),
or in a table the worker processes of one ``relaygate serve --workers N`` share
(:class:`SharedCounters`). Both follow the semantics of :mod:`relaygate.ratelimit`'s
Redis scripts: per subject a fixed window starting at its first count, whose requests
and tokens are checked and counted for all of a request's subjects in one atomic step.

**The shared table** is an LMDB environment (https://www.lmdb.tech/doc/, through the
``lmdb`` binding: https://lmdb.readthedocs.io/) in the directory ``serve`` made for its
workers: memory-mapped, one writer at a time under LMDB's own process-shared lock (a
robust mutex: a worker that dies holding it does not block the others), every reader
and writer in the same file. Each subject is one record, ``name -> (window end,
requests, tokens)``; a check-and-count is one write transaction (about 3 µs for two
subjects). Window ends are ``time.monotonic()`` values: on Linux ``CLOCK_MONOTONIC``,
one clock for every process of the machine. Nothing is written to disk for durability
(``sync=False``): the table lives as long as the ``serve`` that made it. Ended windows
are deleted by each worker once per window, a few hundred records per request.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import lmdb

log = logging.getLogger(__name__)

TABLE_BYTES = 256 * 1024 * 1024
"""The shared table's largest size (a sparse file: only what is used takes memory).
A record takes about 100 bytes: room for some two million subjects in one window."""
SWEEP_BATCH = 256
"""Records a worker looks at for ended windows per request while it sweeps."""
_RECORD = struct.Struct("<dqq")  # window end (monotonic seconds), requests, tokens


@dataclass(frozen=True, slots=True)
class Subject:
    """One counted party of a request: its counter's name, how messages call it, and
    its limits (None: not limited on that)."""

    name: str
    label: str
    rpm: int | None
    tpm: int | None


@dataclass(frozen=True, slots=True)
class Count:
    """A subject's counter: requests and tokens in its window, seconds left of it
    (0 when it has no window)."""

    requests: int
    tokens: int
    left: float


class Counters(Protocol):
    def take(self, subjects: Sequence[Subject], now: float) -> tuple[bool, list[Count]]:
        """Count one request in every subject's window when none has reached a limit;
        returns (admitted, the counts after)."""
        ...

    def add_tokens(self, names: Sequence[str], tokens: int, now: float) -> None:
        """Add ``tokens`` to the named subjects' current windows (opening one if none)."""
        ...


@dataclass(slots=True)
class _Window:
    ends: float
    requests: int = 0
    tokens: int = 0


def _admits(subjects: Sequence[Subject], windows: Sequence[_Window | None]) -> bool:
    """Whether no subject's live window has reached one of its limits."""
    return not any(
        w is not None
        and (
            (s.rpm is not None and w.requests >= s.rpm) or (s.tpm is not None and w.tokens >= s.tpm)
        )
        for s, w in zip(subjects, windows, strict=True)
    )


class LocalCounters:
    """The counters of one process. Ended windows are dropped as they are met, and all
    of them once per window."""

    def __init__(self, window: float):
        self._window = window
        self._windows: dict[str, _Window] = {}
        self._swept_at = 0.0

    def _live(self, name: str, now: float) -> _Window | None:
        window = self._windows.get(name)
        if window is not None and window.ends <= now:
            del self._windows[name]
            return None
        return window

    def take(self, subjects: Sequence[Subject], now: float) -> tuple[bool, list[Count]]:
        self._sweep(now)
        windows = [self._live(s.name, now) for s in subjects]
        admitted = _admits(subjects, windows)
        counts = []
        for subject, window in zip(subjects, windows, strict=True):
            if admitted:
                if window is None:
                    window = self._windows[subject.name] = _Window(now + self._window)
                window.requests += 1
            if window is None:
                counts.append(Count(0, 0, 0.0))
            else:
                counts.append(Count(window.requests, window.tokens, window.ends - now))
        return admitted, counts

    def add_tokens(self, names: Sequence[str], tokens: int, now: float) -> None:
        for name in names:
            window = self._live(name, now)
            if window is None:
                window = self._windows[name] = _Window(now + self._window)
            window.tokens += tokens

    def _sweep(self, now: float) -> None:
        if now - self._swept_at < self._window:
            return
        self._swept_at = now
        for name in [n for n, w in self._windows.items() if w.ends <= now]:
            del self._windows[name]


def create_shared_table(path: Path, size: int = TABLE_BYTES) -> None:
    """Make the shared table's files (at most ``size`` bytes) in the directory ``path``
    (``serve`` does, once, before starting its workers). Raises :class:`OSError` or
    :class:`lmdb.Error` when it cannot."""
    path.mkdir(mode=0o700, exist_ok=True)
    _open(path, size).close()


def _open(path: Path, size: int) -> lmdb.Environment:
    # No writemap: a write into a sparse shared mapping on a full tmpfs would kill the
    # worker (SIGBUS) rather than fail; sync/metasync off: nothing here must survive the
    # serve that made it.
    return lmdb.open(
        str(path),
        map_size=size,
        subdir=True,
        writemap=False,
        sync=False,
        metasync=False,
        readahead=False,
        meminit=False,
        max_dbs=0,
    )


class SharedCounters:
    """Counters in the LMDB table at ``path`` (made by :func:`create_shared_table`),
    shared by every process that opens it, ``window`` seconds long. When the table is
    full (more live subjects than ``size`` bytes hold), a subject is counted in this
    process instead, logged once. Raises :class:`lmdb.Error` when it cannot open."""

    def __init__(self, path: Path, window: float, size: int = TABLE_BYTES):
        self._env = _open(path, size)
        self._window = window
        self._local = LocalCounters(window)
        self._sweep_due = 0.0
        self._sweep_from: bytes | None = None
        self._full = False

    def close(self) -> None:
        self._env.close()

    def __len__(self) -> int:
        """The records held: live windows, and ended ones not yet swept."""
        return int(self._env.stat()["entries"])

    def take(self, subjects: Sequence[Subject], now: float) -> tuple[bool, list[Count]]:
        self._sweep_safely(now)
        keys = [s.name.encode() for s in subjects]
        try:
            with self._env.begin(write=True) as txn:
                windows = [self._live(txn.get(key), now) for key in keys]
                admitted = _admits(subjects, windows)
                counts = []
                for key, window in zip(keys, windows, strict=True):
                    if admitted:
                        window = window or _Window(now + self._window)
                        window.requests += 1
                        txn.put(key, _RECORD.pack(window.ends, window.requests, window.tokens))
                    if window is None:
                        counts.append(Count(0, 0, 0.0))
                    else:
                        counts.append(Count(window.requests, window.tokens, window.ends - now))
        except lmdb.MapFullError:
            self._table_full()
            return self._local.take(subjects, now)
        except lmdb.Error as exc:  # e.g. a subject's name too long for a key
            self._failed(exc)
            return self._local.take(subjects, now)
        return admitted, counts

    def add_tokens(self, names: Sequence[str], tokens: int, now: float) -> None:
        try:
            with self._env.begin(write=True) as txn:
                for name in names:
                    key = name.encode()
                    window = self._live(txn.get(key), now) or _Window(now + self._window)
                    txn.put(key, _RECORD.pack(window.ends, window.requests, window.tokens + tokens))
        except lmdb.MapFullError:
            self._table_full()
            self._local.add_tokens(names, tokens, now)
        except lmdb.Error as exc:
            self._failed(exc)
            self._local.add_tokens(names, tokens, now)

    @staticmethod
    def _live(record: bytes | None, now: float) -> _Window | None:
        if record is None:
            return None
        ends, requests, tokens = _RECORD.unpack(record)
        return _Window(ends, requests, tokens) if ends > now else None

    def _table_full(self) -> None:
        if not self._full:
            self._full = True
            log.error(
                "rate limits: the table shared by the workers is full; counting the "
                "subjects it cannot hold in each worker alone"
            )
        self._sweep_due = 0.0  # sweep at once: ended windows may free room

    def _failed(self, exc: lmdb.Error) -> None:
        if not self._full:
            self._full = True
            log.error(
                "rate limits: the table shared by the workers failed (%s); counting in "
                "each worker alone what it cannot hold",
                exc,
            )

    def _sweep_safely(self, now: float) -> None:
        """:meth:`_sweep`, a failure logged and the next sweep a window later (a full
        table may fail to delete too: the requests are counted, not failed)."""
        try:
            self._sweep(now)
        except lmdb.Error as exc:
            self._sweep_from = None
            self._sweep_due = now + self._window
            self._failed(exc)

    def _sweep(self, now: float) -> None:
        """Delete up to :data:`SWEEP_BATCH` ended windows, going through the whole table
        once per window."""
        if self._sweep_from is None:
            if now < self._sweep_due:
                return
            self._sweep_from = b""
        with self._env.begin(write=True) as txn:
            cursor = txn.cursor()
            more = cursor.set_range(self._sweep_from) if self._sweep_from else cursor.first()
            for _ in range(SWEEP_BATCH):
                if not more:
                    break
                if _RECORD.unpack(cursor.value())[0] <= now:
                    # delete() moves to the next record; the key is empty past the last.
                    more = cursor.delete() and bool(cursor.key())
                else:
                    more = cursor.next()
            if more:
                self._sweep_from = cursor.key()
            else:
                self._sweep_from = None
                self._sweep_due = now + self._window
