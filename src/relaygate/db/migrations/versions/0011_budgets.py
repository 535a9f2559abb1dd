"""Budgets: a spend limit per period on API keys, users and groups, their counters
(used on PostgreSQL without Redis), the alerts sent for them, and the
completion tokens reserved per model when a request states no cap.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_TABLES = ("users", "api_keys", "groups")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("budget", sa.Float(), nullable=True))
            batch.add_column(sa.Column("budget_period", sa.String(16), nullable=True))
            batch.add_column(
                sa.Column("budget_reset_at", sa.DateTime(timezone=True), nullable=True)
            )
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("default_output_tokens", sa.Integer(), nullable=True))
    op.create_table(
        "budget_counters",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("spent", sa.BigInteger(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_budget_counters_ends_at", "budget_counters", ["ends_at"])
    op.create_table(
        "budget_alerts",
        sa.Column("counter", sa.String(100), primary_key=True),
        sa.Column("threshold", sa.Float(), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_budget_alerts_created_at", "budget_alerts", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_budget_alerts_created_at", "budget_alerts")
    op.drop_table("budget_alerts")
    op.drop_index("ix_budget_counters_ends_at", "budget_counters")
    op.drop_table("budget_counters")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("default_output_tokens")
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("budget_reset_at")
            batch.drop_column("budget_period")
            batch.drop_column("budget")
