"""Batch claims read in id order: the index on a batch's requests by state carries the
request id, so a claim of the oldest due requests reads about as many rows as it takes
(without it PostgreSQL sorted every row of the state; SQLite's rowid made the order
implicit, but not for the ``OR`` the claim used to be).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_batch_requests_batch_state_id", "batch_requests", ["batch_id", "state", "id"]
    )
    op.drop_index("ix_batch_requests_batch_state", table_name="batch_requests")


def downgrade() -> None:
    op.create_index("ix_batch_requests_batch_state", "batch_requests", ["batch_id", "state"])
    op.drop_index("ix_batch_requests_batch_state_id", table_name="batch_requests")
