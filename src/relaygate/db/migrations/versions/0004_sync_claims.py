"""When each endpoint's next periodic sync is due, claimed by one replica at a time;
which replica ran each sync.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("next_sync_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(sa.Column("replica", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("replica")
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("next_sync_at")
