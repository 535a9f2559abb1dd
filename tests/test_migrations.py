"""The migrations build exactly the schema the table classes describe, on either database;
a database they have built opens without them; upgrading a database that holds rows keeps
every one of them."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Table, delete, func, insert, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from relaygate.db import migrate
from relaygate.db.engine import make_engine
from relaygate.db.migrate import HEAD, alembic_config, upgrade
from relaygate.db.tables import (
    ApiKey,
    Base,
    Endpoint,
    Group,
    GroupEndpoint,
    GroupMember,
    GroupModel,
    Meta,
    Model,
    SyncRun,
    UsageRecord,
    User,
    UserProviderKey,
    WebSession,
)
from tests.support import databases

ID_TABLES_WITHOUT_FOREIGN_KEYS = {"api_keys"}
"""Tables whose ids are named elsewhere without a foreign key (usage_records.key_id)."""


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


def _referenced_tables() -> set[str]:
    """Tables whose numeric ids other rows name (random string ids, such as a batch's,
    are never handed out twice anyway)."""
    named = {
        fk.column.table.name
        for t in Base.metadata.tables.values()
        for fk in t.foreign_keys
        if fk.column.type.python_type is int
    }
    return named | ID_TABLES_WITHOUT_FOREIGN_KEYS


async def test_referenced_ids_are_never_reused_on_sqlite(tmp_path: Path) -> None:
    """Every table whose id another row names has AUTOINCREMENT on SQLite, in the table
    classes and in a migrated database, so a deleted row's id is never handed out again."""
    expected = {"users", "api_keys", "endpoints", "models", "groups"}
    assert _referenced_tables() == expected
    for name in expected:
        assert Base.metadata.tables[name].kwargs.get("sqlite_autoincrement") is True, name
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    engine = make_engine(url)
    try:
        await upgrade(engine)
        async with engine.connect() as connection:
            found = await _autoincrement_tables(connection)
    finally:
        await engine.dispose()
    assert found == expected


async def _autoincrement_tables(connection: AsyncConnection) -> set[str]:
    rows = await connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type='table'"))
    return {name for name, sql in rows if "AUTOINCREMENT" in sql}


async def _add(connection: AsyncConnection, table: Any, **values: Any) -> Any:
    """Insert one row of ``table``; returns (the first column of) its primary key."""
    result = await connection.execute(insert(table).values(**values))
    return result.inserted_primary_key[0]


async def _fill(engine: AsyncEngine) -> dict[str, int]:
    """Rows in every table, as relaygate writes them (foreign keys on); then carol, the
    newest user, the newest endpoint and a group are deleted, leaving usage records that
    name carol, her key and the endpoint. Returns the deleted ids."""
    now = datetime.now(UTC)
    async with engine.begin() as c:
        alice = await _add(c, User, name="alice", role="admin")
        bob = await _add(c, User, name="bob", email="bob@example.com")
        carol = await _add(c, User, name="carol", requests_per_minute=5)
        e1 = await _add(c, Endpoint, name="e1", url="http://e1/v1", api_key_encrypted="enc-1")
        e2 = await _add(c, Endpoint, name="e2", url="http://e2/v1", timeouts={"idle": 3.0})
        m1 = await _add(c, Model, endpoint_id=e1, upstream_id="gpt-a", alias="a")
        await _add(c, Model, endpoint_id=e1, upstream_id="gpt-b", capabilities=["chat"])
        m3 = await _add(c, Model, endpoint_id=e2, upstream_id="gpt-c")
        keys = {}
        for user, name in ((alice, "ka"), (bob, "kb"), (carol, "kc")):
            keys[name] = await _add(
                c, ApiKey, name=name, user_id=user, prefix="rg-" + name, key_hash="h-" + name
            )
        everyone = (await c.execute(select(Group.id).where(Group.name == "everyone"))).scalar()
        team = await _add(c, Group, name="team", description="the team")
        temp = await _add(c, Group, name="temp")
        for user in (alice, bob, carol):
            await _add(c, GroupMember, group_id=team, user_id=user)
        await _add(c, GroupMember, group_id=temp, user_id=bob)
        for model in (m1, m3):
            await _add(c, GroupModel, group_id=team, model_id=model)
        for group, endpoint in ((team, e1), (everyone, e1), (everyone, e2)):
            await _add(c, GroupEndpoint, group_id=group, endpoint_id=endpoint)
        for user, endpoint in ((alice, e1), (bob, e1), (carol, e2)):
            await _add(
                c, UserProviderKey, user_id=user, endpoint_id=endpoint, api_key_encrypted="enc"
            )
        for endpoint in (e1, e2):
            await _add(
                c,
                SyncRun,
                endpoint_id=endpoint,
                trigger="manual",
                started_at=now,
                finished_at=now,
                status="ok",
            )
        await _add(
            c,
            WebSession,
            id_hash="s-1",
            key_hash="h-ka",
            csrf_token="t",
            expires_at=now + timedelta(hours=1),
        )
        for user, key, endpoint in ((alice, keys["ka"], e1), (carol, keys["kc"], e2)):
            await _add(
                c,
                UsageRecord,
                created_at=now,
                user_id=user,
                key_id=key,
                endpoint_id=endpoint,
                model="gpt",
                path="/v1/chat/completions",
                status=200,
                stream=False,
                latency_ms=1.0,
            )
    async with engine.begin() as c:
        for table, row_id in ((User, carol), (Endpoint, e2), (Group, temp)):
            await c.execute(delete(table).where(table.id == row_id))  # type: ignore[attr-defined]
    return {"users": carol, "api_keys": keys["kc"], "endpoints": e2}


async def _columns(engine: AsyncEngine) -> dict[str, set[str]]:
    """The columns each table has at the database's revision (tables a later migration
    adds are left out)."""
    tables: list[Table] = list(Base.metadata.sorted_tables)
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda c: {
                t.name: {col["name"] for col in inspect(c).get_columns(t.name)}
                for t in tables
                if inspect(c).has_table(t.name)
            }
        )


async def _contents(
    engine: AsyncEngine, columns: dict[str, set[str]] | None = None
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table as sorted tuples by table name, in ``columns`` (default:
    those the database has at its revision; a later migration's columns left out)."""
    tables: list[Table] = list(Base.metadata.sorted_tables)
    present = columns or await _columns(engine)
    async with engine.connect() as connection:
        return {
            table.name: sorted(
                tuple(row)
                for row in await connection.execute(
                    select(*[col for col in table.columns if col.name in present[table.name]])
                )
            )
            for table in tables
            if table.name in present
        }


async def test_upgrade_keeps_every_row_and_retires_deleted_ids(tmp_path: Path) -> None:
    """A database at 0007 holding users, keys, group memberships and grants, provider
    keys, models, sync runs and usage records keeps every row when migrated to head (no
    child lost to ON DELETE CASCADE while SQLite rebuilds a parent table), breaks no
    foreign key, enforces them again after, and hands out no id that its usage records
    still name (ids deleted before the upgrade included)."""
    url = databases.database_url(tmp_path)
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(lambda c: command.upgrade(alembic_config(c), "0007"))
        deleted = await _fill(engine)
        at_0007 = await _columns(engine)
        before = await _contents(engine, at_0007)
        for name in ("api_keys", "group_members", "group_models", "group_endpoints"):
            assert before[name], name
        assert {"user_provider_keys", "sync_runs", "models", "usage_records"} <= {
            name for name, rows in before.items() if rows
        }

        assert await upgrade(engine) is False
        assert await _contents(engine, at_0007) == before
        async with engine.connect() as connection:
            stored = await connection.scalar(text("SELECT version_num FROM alembic_version"))
            assert stored == HEAD
            if engine.dialect.name == "sqlite":
                assert (await connection.execute(text("PRAGMA foreign_key_check"))).all() == []
                assert await connection.scalar(text("PRAGMA foreign_keys")) == 1
                assert await _autoincrement_tables(connection) == _referenced_tables()

        async with engine.begin() as c:
            user = await _add(c, User, name="dave")
            key = await _add(c, ApiKey, name="kd", user_id=user, prefix="rg-kd", key_hash="h-kd")
            endpoint = await _add(c, Endpoint, name="e3", url="http://e3/v1")
        assert user > deleted["users"]
        assert key > deleted["api_keys"]
        assert endpoint > deleted["endpoints"]
        async with engine.begin() as c:
            # Foreign keys still cascade: deleting alice deletes her key and membership.
            await c.execute(delete(User).where(User.name == "alice"))
            left = await c.scalar(
                select(func.count()).select_from(ApiKey).where(ApiKey.name == "ka")
            )
            assert left == 0
            assert await c.scalar(select(func.count()).select_from(Meta)) == len(before["meta"])
    finally:
        await engine.dispose()
        databases.drop(url)


def _downgrade_to_0007(connection: Connection) -> None:
    """Downgrade as :func:`relaygate.db.migrate.upgrade` upgrades: with SQLite's foreign
    keys off, so rebuilding a parent table deletes no child row."""
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        migrate._set_foreign_keys(connection, False)
    try:
        with connection.begin():
            command.downgrade(alembic_config(connection), "0007")
    finally:
        if sqlite:
            migrate._set_foreign_keys(connection, True)


async def test_upgrade_after_a_downgrade_to_0007(tmp_path: Path) -> None:
    """Downgrading 0009 leaves AUTOINCREMENT in place; upgrading again rebuilds the
    tables once more and keeps every row and the retired ids."""
    url = databases.database_url(tmp_path)
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(lambda c: command.upgrade(alembic_config(c), "0007"))
        deleted = await _fill(engine)
        await upgrade(engine)
        before = await _contents(engine)
        async with engine.connect() as connection:
            await connection.run_sync(_downgrade_to_0007)
        await upgrade(engine)
        assert await _contents(engine) == before
        async with engine.begin() as c:
            user = await _add(c, User, name="erin")
        assert user > deleted["users"]
        if engine.dialect.name == "sqlite":
            async with engine.connect() as connection:
                names = await connection.execute(text("SELECT name FROM sqlite_sequence"))
                listed = [name for (name,) in names]
            assert sorted(listed) == sorted(set(listed))
    finally:
        await engine.dispose()
        databases.drop(url)
