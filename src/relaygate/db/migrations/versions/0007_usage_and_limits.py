"""Usage records, model prices, and rate limits on keys and users.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=True),
        sa.Column("model", sa.String(length=500), nullable=False),
        sa.Column("upstream_model", sa.String(length=500), nullable=True),
        sa.Column("path", sa.String(length=200), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("ttfb_ms", sa.Float(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("total_tokens", sa.Integer(), nullable=True),
        sa.Column("cost", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_usage_records_created_at", "usage_records", ["created_at"])
    op.create_index("ix_usage_records_user_created", "usage_records", ["user_id", "created_at"])
    op.create_index("ix_usage_records_key_created", "usage_records", ["key_id", "created_at"])
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("input_cost_per_million_tokens", sa.Float(), nullable=True))
        batch.add_column(sa.Column("output_cost_per_million_tokens", sa.Float(), nullable=True))
    for table in ("api_keys", "users"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("requests_per_minute", sa.Integer(), nullable=True))
            batch.add_column(sa.Column("tokens_per_minute", sa.Integer(), nullable=True))


def downgrade() -> None:
    for table in ("users", "api_keys"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("tokens_per_minute")
            batch.drop_column("requests_per_minute")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("output_cost_per_million_tokens")
        batch.drop_column("input_cost_per_million_tokens")
    op.drop_table("usage_records")
