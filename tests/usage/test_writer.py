"""SQLite's usage writer stores every field of a batch exactly as the ORM would: the
batch goes in as one statement reading a JSON array (see ``usage_records``), and the
rows it makes must read back the same as rows inserted one by one."""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from relaygate.db.engine import make_blocking_sqlite_engine, make_engine, refused_data
from relaygate.db.tables import UsageRecord
from relaygate.usage_records import UsageEntry, _insert_blocking
from tests.support import databases
from tests.support.gateway import Gateway
from tests.support.polling import eventually


def entries() -> list[UsageEntry]:
    first = UsageEntry(
        created_at=datetime(2031, 1, 15, 12, 0, 0, 123456, tzinfo=UTC),
        request_id='req-"quoted"\\back\nline',
        user_id=2**31 - 1,
        key_id=7,
        endpoint_id=None,
        model="modèle/über-7B 🚀",
        upstream_model=None,
        path="/v1/chat/completions",
        upstream_path="/v1/messages",
        status=499,
        stream=True,
        latency_ms=0.1 + 0.2,
        ttfb_ms=None,
        prompt_tokens=0,
        completion_tokens=None,
        total_tokens=2**40,
        cost=1e-9,
        audio_seconds=12.5,
    )
    second = dataclasses.replace(
        first,
        created_at=datetime(2031, 1, 15, 12, 0, 1, tzinfo=UTC),
        request_id=None,
        endpoint_id=3,
        stream=False,
        cost=None,
        audio_seconds=None,
        model="m",
    )
    return [first, second]


def stored(path: str) -> list[tuple[object, ...]]:
    """The rows as SQLite holds them (types and text as stored, no conversion)."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return connection.execute("SELECT * FROM usage_records ORDER BY id").fetchall()


def read(path: str) -> list[tuple[object, ...]]:
    """The rows as the ORM reads them, in :class:`UsageEntry`'s field order."""
    engine = make_blocking_sqlite_engine(path)
    try:
        with Session(engine) as session:
            rows = session.scalars(select(UsageRecord).order_by(UsageRecord.id)).all()
            names = [field.name for field in dataclasses.fields(UsageEntry)]
            return [tuple(getattr(row, name) for name in names) for row in rows]
    finally:
        engine.dispose()


def written(path: str, write: Callable[[Engine], None]) -> str:
    engine = make_blocking_sqlite_engine(path)
    try:
        UsageRecord.__table__.create(engine)
        write(engine)
    finally:
        engine.dispose()
    return path


def test_a_batch_is_stored_as_the_orm_stores_its_rows(tmp_path: Path) -> None:
    """(SQLite's writer only: on PostgreSQL a batch is the ORM's executemany.) Stored
    text must match to the character: periods are read by comparing ``created_at``."""
    for name, made in (("plain", entries()), ("with a NUL", with_nul())):
        batch = written(str(tmp_path / f"{name}.db"), lambda e, m=made: _insert_blocking(e, m))

        def one_by_one(engine: Engine, made: list[UsageEntry] = made) -> None:
            with engine.begin() as connection:
                for entry in made:
                    connection.execute(insert(UsageRecord), dataclasses.asdict(entry))

        orm = written(str(tmp_path / f"{name}-orm.db"), one_by_one)
        assert stored(batch) == stored(orm), name
        assert read(batch) == [dataclasses.astuple(entry) for entry in made], name


def with_nul() -> list[UsageEntry]:
    """A batch with a model name holding a NUL (the client names the model): SQLite's
    JSON functions would cut the name there, so such a batch is written row by row."""
    made = entries()
    made[1].model = "gpt\x00-hidden"
    return made


def test_a_record_the_database_refuses_is_dropped_and_the_rest_are_written(
    gateway: Gateway,
) -> None:
    """A batch the database refuses for its data is written again record by record: the
    record it refuses alone (here a user id of NULL, refused by SQLite and PostgreSQL
    alike) is dropped and counted, and the records around it are written. Before, the
    batch went back to the queue and failed at every retry, so no usage was written again."""
    good = [entry_of(n) for n in range(3)]
    bad = dataclasses.replace(good[1], user_id=cast(int, None), request_id="refused")
    queue = gateway.app.state.usage_queue
    assert queue is not None

    async def put() -> None:
        for made in (good[0], bad, good[2]):
            queue.put(made)

    gateway.on_loop(put)

    async def written() -> list[str | None]:
        async with gateway.ctx.engine.connect() as connection:
            rows = await connection.execute(
                select(UsageRecord.request_id).order_by(UsageRecord.request_id)
            )
            return [row[0] for row in rows]

    assert eventually(lambda: gateway.on_loop(written), lambda ids: len(ids) == 2) == ["r0", "r2"]
    dropped = gateway.app.metrics.registry.get_sample_value("relaygate_usage_dropped_total")
    assert dropped == 1
    # The writer goes on: a record put after is written.
    later = dataclasses.replace(good[0], request_id="r3")

    async def put_later() -> None:
        queue.put(later)

    gateway.on_loop(put_later)
    assert eventually(lambda: gateway.on_loop(written), lambda ids: len(ids) == 3)[-1] == "r3"


def entry_of(n: int) -> UsageEntry:
    """A record every database takes (no count past PostgreSQL's 32-bit columns)."""
    return dataclasses.replace(
        entries()[1], request_id=f"r{n}", created_at=datetime.now(UTC), total_tokens=16
    )


@pytest.mark.skipif(databases.SERVER_URL is None, reason="RELAYGATE_TEST_DATABASE_URL is not set")
async def test_postgresql_errors_of_the_database_are_retried_and_of_the_data_dropped() -> None:
    """Errors raised by PostgreSQL itself, through SQLAlchemy and asyncpg: a missing
    database (and, like it, a restart, a timeout or too many connections: errors outside
    SQLSTATE classes 22 and 23) keeps the batch for a retry; a NUL in text (class 22) and
    a NULL user id (class 23) are the record's own, so only that record is dropped."""
    assert databases.SERVER_URL is not None
    url = databases.create_postgres_database()
    missing = url.rsplit("/", 1)[0] + "/rg_test_no_such_database"
    engine, gone = make_engine(url), make_engine(missing)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(lambda sync: UsageRecord.__table__.create(sync))

        async def error_of(engine: AsyncEngine, entry: UsageEntry) -> BaseException:
            with pytest.raises(Exception) as raised:
                async with engine.begin() as connection:
                    await connection.execute(insert(UsageRecord), dataclasses.asdict(entry))
            return raised.value

        nul = dataclasses.replace(entry_of(1), model="gpt\x00")
        null_user = dataclasses.replace(entry_of(2), user_id=cast(int, None))
        assert refused_data(await error_of(engine, nul))
        assert refused_data(await error_of(engine, null_user))
        assert not refused_data(await error_of(gone, entry_of(3)))
    finally:
        await engine.dispose()
        await gone.dispose()
        databases.drop_postgres_database(url)
