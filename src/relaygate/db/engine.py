"""The async engine and session factory for a database URL, a blocking engine of a
SQLite file for work done whole in a worker thread (the usage writer's), and one
consistent view of the database for reads that span tables.

Operators write plain URLs (``sqlite:///./data/relaygate.db``,
``postgresql://user@host/db``); relaygate picks the async driver.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession
from sqlalchemy.orm import Session

from relaygate.extras import require


def async_url(url: str) -> str:
    """Return ``url`` with its async driver: aiosqlite for SQLite, asyncpg for PostgreSQL."""
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url[len("sqlite:") :]
    if url.startswith("postgres:"):
        return "postgresql+asyncpg:" + url[len("postgres:") :]
    if url.startswith("postgresql:"):
        return "postgresql+asyncpg:" + url[len("postgresql:") :]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def make_engine(url: str) -> AsyncEngine:
    """Create the engine for ``url``; SQLite gets foreign keys, WAL and a busy timeout.
    Raises :class:`ConfigError` for a PostgreSQL URL without the ``postgres`` extra."""
    if async_url(url).startswith("postgresql+asyncpg:"):
        require("asyncpg", "postgres", "a PostgreSQL database_url")
    # hide_parameters: bound values (key hashes, encrypted keys) stay out of error messages.
    engine = create_async_engine(
        async_url(url), pool_pre_ping=not url.startswith("sqlite"), hide_parameters=True
    )
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def make_blocking_sqlite_engine(path: str) -> Engine:
    """A blocking engine (Python's own ``sqlite3``) of the SQLite file at ``path``, with the
    same foreign keys, WAL and busy timeout, for work done whole in a worker thread: its
    connections may be used from any one thread at a time."""
    engine = create_engine(
        f"sqlite:///{path}",
        hide_parameters=True,
        connect_args={"check_same_thread": False},
        pool_size=1,
        max_overflow=0,
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def make_sessionmaker(
    engine: AsyncEngine, session_class: type[Session] = Session
) -> async_sessionmaker[AsyncSession]:
    """A session factory whose objects stay readable after commit; its ORM sessions are
    of ``session_class`` (relaygate's own: :class:`relaygate.changes.TrackedSession`)."""
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=session_class)


async def read_one_view(session: AsyncSession) -> None:
    """Make every statement ``session`` runs from now until it ends read the database as
    it was at the first of them, whatever other connections commit meanwhile: call it
    before the session's first statement. Returns nothing; raises what the driver raises.

    On PostgreSQL the transaction is REPEATABLE READ. On SQLite an explicit ``BEGIN``
    opens the read transaction: Python's ``sqlite3`` (under aiosqlite) begins one only
    before a write, so each SELECT would otherwise see the database as it is at that
    moment (https://www.sqlite.org/isolation.html: a read transaction sees one snapshot
    of a WAL database). The session's end (commit or rollback) ends it."""
    if session.get_bind().dialect.name == "postgresql":
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    else:
        await session.execute(text("BEGIN"))


def refused_data(exc: BaseException) -> bool:
    """Whether ``exc``, raised writing rows, is the database refusing what was
    written, not failing to be reached or to work: an ``IntegrityError`` or ``DataError``,
    a driver error whose SQLSTATE is of class 22 (data exception) or 23 (integrity
    constraint violation), or a value SQLAlchemy could not bind. Anything else (refused
    connections, a restart, a timeout, too many connections, a locked or full file) is
    the database's own: what was written may be written again later."""
    if isinstance(exc, IntegrityError | DataError):
        return True
    if isinstance(exc, DBAPIError):
        state = getattr(exc.orig, "sqlstate", None)
        return isinstance(state, str) and state[:2] in ("22", "23")
    return isinstance(exc, StatementError)  # raised binding a value, before the database
