"""Provider metadata on models; environment keys and custom auth headers on endpoints.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("api_key_env", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("auth_header", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("auth_prefix", sa.String(length=50), nullable=True))
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("display_name", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("context_window", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("max_output_tokens", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("created", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("capabilities", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        for column in (
            "capabilities",
            "created",
            "max_output_tokens",
            "context_window",
            "display_name",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("endpoints") as batch:
        for column in ("auth_prefix", "auth_header", "api_key_env"):
            batch.drop_column(column)
