"""Files and batches relaygate keeps for its users: uploaded files (their contents are
stored outside the database), batches and each of their requests, and how many batch
requests at once each endpoint takes.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _when(name: str, *, nullable: bool = True, index: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, index=index)


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("batch_concurrency", sa.Integer(), nullable=True))
    op.create_table(
        "files",
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=True),
        sa.Column("url", sa.String(length=64), nullable=True),
        _when("created_at", nullable=False),
        _when("expires_at", index=True),
    )
    op.create_table(
        "batches",
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("input_file_id", sa.String(length=64), nullable=False),
        sa.Column("endpoint", sa.String(length=64), nullable=False),
        sa.Column("completion_window", sa.String(length=16), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("output_expires_seconds", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False, index=True),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("output_file_id", sa.String(length=64), nullable=True),
        sa.Column("error_file_id", sa.String(length=64), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("completed", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("failed", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("cost", sa.Float(), nullable=False, server_default="0"),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        _when("claimed_until"),
        _when("created_at", nullable=False, index=True),
        _when("expires_at", nullable=False),
        _when("in_progress_at"),
        _when("finalizing_at"),
        _when("completed_at"),
        _when("failed_at"),
        _when("expired_at"),
        _when("cancelling_at"),
        _when("cancelled_at"),
    )
    op.create_table(
        "batch_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column(
            "batch_id",
            sa.String(length=64),
            sa.ForeignKey("batches.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("custom_id", sa.String(length=512), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        _when("next_at"),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        _when("claimed_until"),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
    )
    op.create_index("ix_batch_requests_batch_state", "batch_requests", ["batch_id", "state"])
    op.create_index("ix_batch_requests_state_next", "batch_requests", ["state", "next_at"])


def downgrade() -> None:
    op.drop_index("ix_batch_requests_state_next", table_name="batch_requests")
    op.drop_index("ix_batch_requests_batch_state", table_name="batch_requests")
    op.drop_table("batch_requests")
    op.drop_table("batches")
    op.drop_table("files")
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("batch_concurrency")
