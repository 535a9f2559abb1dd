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
HEAD = "0008"
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


def _upgrade(connection: Connection) -> bool:
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
    stored = _stored_revision(connection)
    if stored == HEAD:
        return False
    from alembic import command

    command.upgrade(alembic_config(connection), "head")
    return stored is None


async def upgrade(engine: AsyncEngine) -> bool:
    """Migrate the database to the newest schema.

    Returns True when the database had no relaygate schema before (it was just created).
    """
    async with engine.begin() as connection:
        return await connection.run_sync(_upgrade)
