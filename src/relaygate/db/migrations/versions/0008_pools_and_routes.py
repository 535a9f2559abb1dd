"""Endpoint pools (pooling is the operator's act) and extra routes per endpoint.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("pool", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("extra_routes", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("extra_routes")
        batch.drop_column("pool")
