"""Row ids are never reused: AUTOINCREMENT on SQLite for every table whose id is
referenced from elsewhere.

Without AUTOINCREMENT, SQLite hands the highest id out again once its row is deleted,
so a new user took a deleted user's id and, with it, their usage records (which keep
``user_id``, ``key_id`` and ``endpoint_id`` after the rows are gone), rate-limit
counters and reports. The tables are rebuilt with AUTOINCREMENT (relaygate migrates with
foreign keys off, see ``relaygate.db.migrate``, so no child row is lost), and each
table's ``sqlite_sequence`` starts past both its highest id and the highest id its usage
records name: ids deleted before this upgrade are retired too.

PostgreSQL needs nothing: a sequence never hands out a value twice.

The downgrade leaves AUTOINCREMENT in place: the earlier schema works with it, and
ids handed out meanwhile stay unique.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TABLES = {
    "users": "user_id",
    "api_keys": "key_id",
    "endpoints": "endpoint_id",
    "models": None,
    "groups": None,
}
"""The rebuilt tables, each with the usage_records column naming its ids (if any)."""


def _retire_ids(table: str, usage_column: str | None) -> None:
    bind = op.get_bind()
    highest = bind.execute(sa.text(f"SELECT MAX(id) FROM {table}")).scalar() or 0
    if usage_column is not None:
        used = bind.execute(sa.text(f"SELECT MAX({usage_column}) FROM usage_records")).scalar()
        highest = max(highest, used or 0)
    current = bind.execute(
        sa.text("SELECT seq FROM sqlite_sequence WHERE name = :name"), {"name": table}
    ).scalar()
    if current is None:
        bind.execute(
            sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:name, :seq)"),
            {"name": table, "seq": highest},
        )
    elif current < highest:
        bind.execute(
            sa.text("UPDATE sqlite_sequence SET seq = :seq WHERE name = :name"),
            {"name": table, "seq": highest},
        )


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, usage_column in TABLES.items():
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass
        _retire_ids(table, usage_column)


def downgrade() -> None:
    pass
