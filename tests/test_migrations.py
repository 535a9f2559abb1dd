"""The migrations build exactly the schema the table classes describe, on either database."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from relaygate.db.engine import make_engine
from relaygate.db.migrate import upgrade
from relaygate.db.tables import Base
from tests.support import databases


async def test_migrated_schema_matches_the_tables(tmp_path: Path) -> None:
    url = databases.database_url(tmp_path)
    engine = make_engine(url)
    try:
        await upgrade(engine)

        def differences(connection: Connection) -> list[object]:
            context = MigrationContext.configure(connection, opts={"compare_type": False})
            return list(compare_metadata(context, Base.metadata))

        async with engine.connect() as connection:
            found = await connection.run_sync(differences)
    finally:
        await engine.dispose()
        databases.drop(url)
    assert found == []
