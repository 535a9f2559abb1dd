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

from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from relaygate.db.engine import make_blocking_sqlite_engine
from relaygate.db.tables import UsageRecord
from relaygate.usage_records import UsageEntry, _insert_blocking


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
