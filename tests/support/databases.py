"""The database a test runs on: a SQLite file, or — when the suite runs against
PostgreSQL (RELAYGATE_TEST_BACKEND=postgresql, with RELAYGATE_TEST_DATABASE_URL naming
the server) — a fresh PostgreSQL database created for the test and dropped after it.

A test that starts relaygate gets its database already migrated: a copy of one template
migrated once per test run (a file copy on SQLite, ``CREATE DATABASE … TEMPLATE`` on
PostgreSQL), which saves each such test the migrations' 0.3 s or more. Tests of the
migrations themselves take an empty database (:func:`database_url`).

On PostgreSQL, copying the template costs the server more CPU than most tests use:
copies are reused instead, emptied back to the template's rows between tests
(:class:`_Copies`)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import shutil
import sqlite3
import tempfile
import threading
import time
from collections import deque
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
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
    try:
        if _copies.cache_info().currsize:
            copies = _copies()
            _copies.cache_clear()
            copies.close()
    finally:
        if _template.cache_info().currsize:
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
        return _with_database(template, _copies().take())
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template.split(":///", 1)[1], path)
    return f"sqlite:///{path}"


def drop(url: str) -> None:
    """Drop a database made by :func:`database_url` or :func:`migrated_database_url`
    (SQLite files go with tmp_path). On PostgreSQL a copy of the template goes back to
    be reused (:class:`_Copies`), and any other database is dropped in the background,
    before the run ends."""
    if url.startswith("postgresql"):
        if _copies.cache_info().currsize:
            _copies().give_back(url)
        else:
            drop_postgres_database(url)


SCHEMA_FINGERPRINT = """
SELECT md5(string_agg(item, ',' ORDER BY item)) FROM (
    SELECT 'column ' || c.relname || '.' || a.attnum::text || ' ' || a.attname || ' '
        || a.attidentity::text || a.attgenerated::text || ' '
        || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull::text || ' '
        || coalesce(pg_get_expr(d.adbin, d.adrelid), '') AS item
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL SELECT 'relation ' || relname || ' ' || relkind::text || ' '
        || relpersistence::text || ' ' || relrowsecurity::text || ' '
        || coalesce(relacl::text, '') FROM pg_class WHERE relnamespace = 'public'::regnamespace
    UNION ALL SELECT 'view ' || viewname || ' ' || definition FROM pg_views
        WHERE schemaname = 'public'
    UNION ALL SELECT 'type ' || typname || ' ' || typtype::text FROM pg_type
        WHERE typnamespace = 'public'::regnamespace AND typtype IN ('e', 'd')
    UNION ALL SELECT 'label ' || enumtypid::regtype::text || ' ' || enumlabel FROM pg_enum
    UNION ALL SELECT 'policy ' || polrelid::regclass::text || ' ' || polname FROM pg_policy
    UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
    UNION ALL SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' '
        || pg_get_constraintdef(oid) FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace
    UNION ALL SELECT 'function ' || oid::regprocedure::text || ' ' || md5(prosrc) FROM pg_proc
        WHERE pronamespace = 'public'::regnamespace
    UNION ALL SELECT 'trigger ' || tgrelid::regclass::text || ' ' || tgname || ' '
        || tgenabled::text || ' ' || pg_get_triggerdef(oid) FROM pg_trigger
    UNION ALL SELECT 'schema ' || nspname FROM pg_namespace
        WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
    UNION ALL SELECT 'extension ' || extname FROM pg_extension
) AS items
"""
"""One hash of everything a test could change in a database's schema: tables (their
columns in order, types, defaults, persistence, row security, grants), views, enum and
domain types, indexes, constraints, policies, functions, triggers (the foreign keys'
own too, enabled or not), schemas and extensions."""

MOST_USES = 100
"""Tests a copy serves before it is dropped for a new one (its deleted rows' space)."""


@dataclass(frozen=True)
class _Pristine:
    """What the template holds besides its schema: the rows of each table that has any
    (column names, rows) and each sequence's (name, last value or None, start value)."""

    schema: str
    tables: list[str]
    rows: dict[str, tuple[list[str], list[tuple[Any, ...]]]]
    sequences: list[tuple[str, int | None, int]]


async def _read_pristine(url: str) -> _Pristine:
    connection = await asyncpg.connect(url)
    try:
        schema = await connection.fetchval(SCHEMA_FINGERPRINT)
        tables = [
            r["tablename"]
            for r in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        rows = {}
        for table in tables:
            records = await connection.fetch(f'SELECT * FROM "{table}"')
            if records:
                rows[table] = (list(records[0].keys()), [tuple(r) for r in records])
        sequences = [
            (r["sequencename"], r["last_value"], r["start_value"])
            for r in await connection.fetch(
                "SELECT sequencename, last_value, start_value FROM pg_sequences "
                "WHERE schemaname = 'public'"
            )
        ]
        return _Pristine(schema, tables, rows, sequences)
    finally:
        await connection.close()


async def _renamed(old: str) -> str:
    """``old``'s new name once every connection to it has ended: a server a test left
    running (it should not) can then never write into the next test's database. Raises
    what the server raises when a connection does not end within 5 s."""
    new = "rg_test_" + secrets.token_hex(6)
    admin = await asyncpg.connect(SERVER_URL)
    try:
        deadline = time.monotonic() + 5
        while True:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                old,
            )
            try:
                await admin.execute(f'ALTER DATABASE "{old}" RENAME TO "{new}"')
                await admin.execute(f'ALTER DATABASE "{new}" RESET ALL')
                return new
            except asyncpg.ObjectInUseError:  # a backend still ending
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.02)
    finally:
        await admin.close()


async def _emptied(name: str, pristine: _Pristine) -> bool:
    """Put the database ``name`` back as the template was: every row deleted, the
    template's rows and sequence values restored. False, changing nothing, when its
    schema is not the template's any more (a migration test's, say)."""
    connection = await asyncpg.connect(
        _with_database(SERVER_URL or "", name),
        server_settings={"lock_timeout": "10s", "statement_timeout": "60s"},
    )
    try:
        if await connection.fetchval(SCHEMA_FINGERPRINT) != pristine.schema:
            return False
        async with connection.transaction():
            # Every row goes, so no foreign key needs checking (nor allows any order).
            await connection.execute("SET LOCAL session_replication_role = replica")
            await connection.execute("; ".join(f'DELETE FROM "{t}"' for t in pristine.tables))
            await connection.execute("SELECT lo_unlink(oid) FROM pg_largeobject_metadata")
            for sequence, last, start in pristine.sequences:
                await connection.execute(
                    "SELECT setval($1, $2, $3)",
                    f'public."{sequence}"',
                    start if last is None else last,
                    last is not None,
                )
            for table, (columns, records) in pristine.rows.items():
                await connection.copy_records_to_table(table, records=records, columns=columns)
        return True
    finally:
        await connection.close()


class _Copies:
    """Copies of the template database, reused: a test's copy, once it is done, is
    renamed (its connections ended) and emptied back to the template's rows, and goes
    to the next test; one whose schema changed, or that served :data:`MOST_USES`
    tests, is dropped. Copying the template costs the server 0.15 to 0.5 s of CPU a
    test (the whole catalogue is written again), emptying a copy about 0.02 s. All of
    it runs on one thread of this class's own; a copy is made ahead when none is ready."""

    def __init__(self, template: str) -> None:
        self._template = template.rpartition("/")[2]
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="rg-test-databases")
        self._pristine = self._thread.submit(lambda: asyncio.run(_read_pristine(template)))
        self._ready: deque[Future[tuple[str, int] | None]] = deque(
            [self._thread.submit(self._create)]
        )
        self._uses: dict[str, int] = {}
        self._drops: list[Future[None]] = []
        self._failures: list[Exception] = []

    def _create(self) -> tuple[str, int]:
        name = "rg_test_" + secrets.token_hex(6)
        asyncio.run(_admin(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"'))
        return name, 0

    def take(self) -> str:
        """The name of a copy as the template is (raises what making one raises)."""
        while True:
            if not self._ready:
                self._ready.append(self._thread.submit(self._create))
            ready = self._ready.popleft().result()
            if ready is not None:
                break
        name, uses = ready
        self._uses[name] = uses
        if not self._ready:  # the next test's, unless this one's comes back first
            self._ready.append(self._thread.submit(self._create))
        return name

    def give_back(self, url: str) -> None:
        """Take back the database at ``url`` when it is a copy (reused), else drop it."""
        name = url.rpartition("/")[2]
        uses = self._uses.pop(name, None)
        if uses is None:
            self._drop_later(url)
            return
        self._ready.append(self._thread.submit(self._reused, name, uses + 1))

    def _drop_later(self, url: str) -> None:
        self._drops.append(self._thread.submit(lambda: asyncio.run(_drop(url))))

    def _reused(self, name: str, uses: int) -> tuple[str, int] | None:
        async def reuse() -> tuple[str, int] | None:
            current = name
            try:
                current = await _renamed(name)
                if uses < MOST_USES and await _emptied(current, self._pristine.result()):
                    return current, uses
                await _drop(_with_database(SERVER_URL or "", current))
            except Exception as exc:  # raised at the end of the run; the tests go on
                self._failures.append(exc)
                with contextlib.suppress(Exception):
                    await _drop(_with_database(SERVER_URL or "", current))
            return None

        return asyncio.run(reuse())

    def close(self) -> None:
        """Drop every copy, those ready and any a test took and never gave back, wait
        for every drop asked for, and then raise the first failure (a database may have
        been left behind)."""
        names = list(self._uses)
        for future in self._ready:
            try:
                ready = future.result()
            except Exception as exc:  # a copy that could not be made
                self._failures.append(exc)
            else:
                if ready is not None:
                    names.append(ready[0])
        for name in names:
            self._drop_later(_with_database(SERVER_URL or "", name))
        self._ready.clear()
        self._uses.clear()
        self._thread.shutdown(wait=True)
        for dropped in self._drops:
            try:
                dropped.result()
            except Exception as exc:
                self._failures.append(exc)
        if self._failures:
            raise RuntimeError("a test database could not be reused") from self._failures[0]


@functools.cache
def _copies() -> _Copies:
    return _Copies(_template())


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
