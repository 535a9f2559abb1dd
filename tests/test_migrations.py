"""The migrations build exactly the schema the table classes describe, on either database;
a database they have built opens without them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from relaygate.db.engine import make_engine
from relaygate.db.migrate import HEAD, alembic_config, upgrade
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


def test_head_is_the_newest_migration() -> None:
    """``HEAD``, which spares a migrated database Alembic, names the newest migration."""
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD


async def test_a_migrated_database_opens_without_alembic(tmp_path: Path) -> None:
    """Upgrading a database already at ``HEAD`` changes nothing and imports no Alembic,
    so a server never carries it."""
    url = databases.database_url(tmp_path)
    engine = make_engine(url)
    try:
        assert await upgrade(engine) is True
        script = (
            "import asyncio, sys\n"
            "from relaygate.db.engine import make_engine\n"
            "from relaygate.db.migrate import upgrade\n"
            "async def main():\n"
            f"    engine = make_engine({url!r})\n"
            "    try:\n"
            "        print(await upgrade(engine), 'alembic' in sys.modules)\n"
            "    finally:\n"
            "        await engine.dispose()\n"
            "asyncio.run(main())\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )
    finally:
        await engine.dispose()
        databases.drop(url)
    assert done.stdout.split() == ["False", "False"], done.stderr
