"""Run the Alembic migrations in ``migrations/`` against an async engine.

Alembic (with Mako and Pygments under it) costs a server some 10 MB that it would
keep for its whole life, and a database already at :data:`HEAD` needs none of it: so
:func:`upgrade` reads the stored revision first, and imports Alembic only to migrate.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0018"
"""The newest revision in ``migrations/versions`` (a test keeps the two in step)."""


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at relaygate's migrations, bound to ``connection``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


# Any constant: replicas starting together on PostgreSQL migrate one after the other.
MIGRATION_LOCK = 0x72656C6179


def _stored_revision(connection: Connection) -> str | None:
    """The revision Alembic recorded, or None for a database without relaygate's schema."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _migrate(connection: Connection) -> bool:
    """Run the migrations still due, inside the caller's transaction; True when the
    database had no relaygate schema before."""
    stored = _stored_revision(connection)
    if stored == HEAD:
        return False
    from alembic import command

    command.upgrade(alembic_config(connection), "head")
    return stored is None


def _set_foreign_keys(connection: Connection, on: bool) -> None:
    """Turn SQLite's foreign-key enforcement on or off for this connection; raises
    RuntimeError when SQLite ignored it (it does inside a transaction)."""
    with connection.begin():
        connection.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
        if connection.exec_driver_sql("PRAGMA foreign_keys").scalar() != int(on):
            raise RuntimeError("PRAGMA foreign_keys cannot change inside a transaction")


def _upgrade_sqlite(connection: Connection) -> bool:
    with connection.begin():
        if _stored_revision(connection) == HEAD:
            return False
    # SQLite alters a table by rebuilding it: copy, drop the old one, rename the copy. With
    # foreign keys on, dropping a parent table deletes its children (ON DELETE CASCADE),
    # so they go off for the migration, as SQLite's documentation prescribes; they can
    # change only outside a transaction, and foreign_key_check vouches for the result
    # before it commits.
    _set_foreign_keys(connection, False)
    try:
        with connection.begin():
            # sqlite3 would begin a transaction only at the first INSERT, leaving the DDL
            # before it outside; IMMEDIATE also makes a second migrator wait for the first.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            created = _migrate(connection)
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
            if broken:
                raise RuntimeError(f"migrating would break foreign keys: {broken[:5]}")
    finally:
        try:
            _set_foreign_keys(connection, True)
        except Exception:
            # Never hand a connection without foreign keys back to the pool.
            connection.invalidate()
            raise
    return created


def _upgrade(connection: Connection) -> bool:
    if connection.dialect.name == "sqlite":
        return _upgrade_sqlite(connection)
    with connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        return _migrate(connection)


async def upgrade(engine: AsyncEngine) -> bool:
    """Migrate the database to the newest schema, in one transaction.

    Returns True when the database had no relaygate schema before (it was just created).
    On SQLite, foreign keys are off while migrating (see :func:`_upgrade_sqlite`); raises
    RuntimeError, changing nothing, when the migrated data would break one.
    """
    async with engine.connect() as connection:
        return await connection.run_sync(_upgrade)
