"""The change log: what each configuration change changed, so that every process
applies it to its snapshot incrementally instead of rebuilding the whole.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "config_changes",
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("changes", sa.Text(), nullable=False),
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("config_changes")
