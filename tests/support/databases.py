"""The database a test runs on: a SQLite file, or — when the suite runs against
PostgreSQL (RELAYGATE_TEST_BACKEND=postgresql, with RELAYGATE_TEST_DATABASE_URL naming
the server) — a fresh PostgreSQL database created for the test and dropped after it.

A test that starts relaygate gets its database already migrated: a copy of one template
migrated once per test run (a file copy on SQLite, ``CREATE DATABASE … TEMPLATE`` on
PostgreSQL), which saves each such test the migrations' 0.3 s or more. Tests of the
migrations themselves take an empty database (:func:`database_url`).

On PostgreSQL a copy takes the server about 0.15 s of writing, and dropping one a few
hundredths: both are done on a thread of their own (:class:`_Spares`), two copies
ahead, so a test waits for neither."""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import shutil
import sqlite3
import tempfile
import threading
from collections import deque
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

T = TypeVar("T")
SERVER_URL = os.environ.get("RELAYGATE_TEST_DATABASE_URL")
ON_POSTGRES = os.environ.get("RELAYGATE_TEST_BACKEND") == "postgresql"
if ON_POSTGRES and not SERVER_URL:
    raise RuntimeError("RELAYGATE_TEST_BACKEND=postgresql needs RELAYGATE_TEST_DATABASE_URL")


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion on a thread of its own: the caller's thread may
    already run an event loop (playwright's sync API does)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def _admin(statement: str) -> None:
    assert SERVER_URL
    connection = await asyncpg.connect(SERVER_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def create_postgres_database() -> str:
    """Create an empty database on the test server; returns its URL."""
    assert SERVER_URL
    name = "rg_test_" + secrets.token_hex(6)
    _run(_admin(f'CREATE DATABASE "{name}"'))
    return _with_database(SERVER_URL, name)


async def _drop(url: str) -> None:
    name = url.rpartition("/")[2]
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def drop_postgres_database(url: str) -> None:
    _run(_drop(url))


def database_url(tmp_path: Path, name: str = "relaygate.db") -> str:
    """A fresh database for one test: PostgreSQL when the suite runs on it, else SQLite."""
    if ON_POSTGRES:
        return create_postgres_database()
    return f"sqlite:///{tmp_path / name}"


async def _migrate(url: str) -> None:
    from relaygate.db.engine import make_engine
    from relaygate.db.migrate import upgrade

    engine = make_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


@functools.cache
def _template() -> str:
    """The URL of this test run's migrated template database (made at the first call;
    :func:`drop_template` removes it)."""
    if ON_POSTGRES:
        url = create_postgres_database()
    else:
        folder = tempfile.mkdtemp(prefix="relaygate-template-")
        url = f"sqlite:///{folder}/template.db"
    _run(_migrate(url))
    if not ON_POSTGRES:  # one file to copy: the write-ahead log folded in
        connection = sqlite3.connect(url.split(":///", 1)[1])
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.close()
    return url


def drop_template() -> None:
    """Drop the run's template database, if one was made (at the end of the run)."""
    if _spares.cache_info().currsize:
        _spares().close()
        _spares.cache_clear()
    if _template.cache_info().currsize == 0:
        return
    url = _template()
    _template.cache_clear()
    if url.startswith("postgresql"):
        drop_postgres_database(url)
    else:
        shutil.rmtree(Path(url.split(":///", 1)[1]).parent, ignore_errors=True)


def migrated_database_url(tmp_path: Path, name: str = "relaygate.db") -> str:
    """A fresh database for one test, at relaygate's newest revision and otherwise
    empty (a copy of the run's template): PostgreSQL when the suite runs on it, else
    SQLite."""
    template = _template()
    if ON_POSTGRES:
        return _with_database(template, _spares().take())
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template.split(":///", 1)[1], path)
    return f"sqlite:///{path}"


def drop(url: str) -> None:
    """Drop a database made by :func:`database_url` or :func:`migrated_database_url`
    (SQLite files go with tmp_path); a copy of the template is dropped in the background,
    before the run ends."""
    if url.startswith("postgresql"):
        if _spares.cache_info().currsize:
            _spares().drop_later(url)
        else:
            drop_postgres_database(url)


class _Spares:
    """Copies of the template database made ahead of need, ``ahead`` at a time, and
    the copies tests are done with dropped, all on one thread of this class's own."""

    def __init__(self, template: str, ahead: int = 2) -> None:
        self._template = template.rpartition("/")[2]
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="rg-test-databases")
        self._ready: deque[Future[str]] = deque(
            self._pool.submit(self._create) for _ in range(ahead)
        )
        self._drops: list[Future[None]] = []

    def _create(self) -> str:
        name = "rg_test_" + secrets.token_hex(6)
        asyncio.run(_admin(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"'))
        return name

    def take(self) -> str:
        """The name of a fresh copy (made now if none is ready; raises what that raises)."""
        future = self._ready.popleft()
        self._ready.append(self._pool.submit(self._create))
        return future.result()

    def drop_later(self, url: str) -> None:
        self._drops.append(self._pool.submit(lambda: asyncio.run(_drop(url))))

    def close(self) -> None:
        """Drop the copies never taken, wait for every drop asked for, and raise the
        first failure of one (a database left behind)."""
        for future in self._ready:
            if future.exception() is None:  # a copy that failed left nothing to drop
                self.drop_later(_with_database(SERVER_URL or "", future.result()))
        self._ready.clear()
        self._pool.shutdown(wait=True)
        for drop in self._drops:
            drop.result()


@functools.cache
def _spares() -> _Spares:
    return _Spares(_template())


async def _dump_postgres(url: str) -> bytes:
    connection = await asyncpg.connect(url)
    try:
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
        parts = []
        for row in tables:
            rows = await connection.fetch(f'SELECT t::text AS line FROM "{row["tablename"]}" t')
            parts.extend(r["line"] for r in rows)
        return "\n".join(parts).encode()
    finally:
        await connection.close()


def dump(url: str) -> bytes:
    """Everything the database stores, as bytes to search for secrets in clear."""
    if url.startswith("postgresql"):
        return _run(_dump_postgres(url))
    path = Path(url.split(":///", 1)[1])
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


@contextmanager
def write_lock(url: str) -> Iterator[None]:
    """Stall writes to ``usage_records`` until the block ends: on PostgreSQL a
    transaction holding ``LOCK TABLE … ACCESS EXCLUSIVE``, on SQLite one holding the
    database's exclusive lock (``BEGIN EXCLUSIVE``: every writer waits)."""
    if not url.startswith("postgresql"):
        connection = sqlite3.connect(url.split(":///", 1)[1], isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            connection.execute("ROLLBACK")
            connection.close()
        return
    locked, release = threading.Event(), threading.Event()

    async def hold() -> None:
        connection = await asyncpg.connect(url)
        try:
            transaction = connection.transaction()
            await transaction.start()
            await connection.execute("LOCK TABLE usage_records IN ACCESS EXCLUSIVE MODE")
            locked.set()
            while not release.is_set():
                await asyncio.sleep(0.02)
            await transaction.rollback()
        finally:
            await connection.close()

    thread = threading.Thread(target=asyncio.run, args=(hold(),))
    thread.start()
    if not locked.wait(10):
        raise RuntimeError("could not lock usage_records")
    try:
        yield
    finally:
        release.set()
        thread.join(10)
