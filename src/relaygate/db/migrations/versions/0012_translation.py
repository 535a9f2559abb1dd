"""Translation between APIs: each endpoint's Messages, Responses and chat-completions
mode and what was found of them, the API a usage record's target spoke, and the
responses relaygate stores for its users.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        for name in ("messages_api", "responses_api", "chat_api"):
            batch.add_column(
                sa.Column(name, sa.String(length=16), nullable=False, server_default="auto")
            )
        batch.add_column(sa.Column("api_found", sa.JSON(), nullable=True))
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("upstream_path", sa.String(length=200), nullable=True))
    op.create_table(
        "stored_responses",
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("previous_id", sa.String(length=64), nullable=True),
        sa.Column("model", sa.String(length=500), nullable=False),
        sa.Column("data_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("stored_responses")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("upstream_path")
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("api_found")
        for name in ("chat_api", "responses_api", "messages_api"):
            batch.drop_column(name)
