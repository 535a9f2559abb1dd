"""Batch requests read in id order: the index on a batch's requests by state carries the
request id, so a claim of the oldest due requests reads about as many rows as it takes,
and a second index on (batch, id) serves the pages of a batch being finalized (without
them each claim and each page read and sorted every row of the batch).

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
    op.create_index("ix_batch_requests_batch_id", "batch_requests", ["batch_id", "id"])
    op.drop_index("ix_batch_requests_batch_state", table_name="batch_requests")


def downgrade() -> None:
    op.drop_index("ix_batch_requests_batch_id", table_name="batch_requests")
    op.create_index("ix_batch_requests_batch_state", "batch_requests", ["batch_id", "state"])
    op.drop_index("ix_batch_requests_batch_state_id", table_name="batch_requests")
