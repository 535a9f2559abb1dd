"""Run the Alembic migrations in ``migrations/`` against an async engine."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at relaygate's migrations, bound to ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


# Any constant: replicas starting together on PostgreSQL migrate one after the other.
MIGRATION_LOCK = 0x72656C6179


def _upgrade(connection: Connection) -> bool:
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
    created = not inspect(connection).has_table("alembic_version")
    command.upgrade(alembic_config(connection), "head")
    return created


async def upgrade(engine: AsyncEngine) -> bool:
    """Migrate the database to the newest schema.

    Returns True when the database had no relaygate schema before (it was just created).
    """
    async with engine.begin() as connection:
        return await connection.run_sync(_upgrade)
