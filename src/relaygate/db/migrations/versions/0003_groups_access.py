"""Groups, model and endpoint grants, users' own provider keys, per-key model limits.

Existing endpoints are granted to the built-in ``everyone`` group, so users keep
reaching what they reached before.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    groups = op.create_table(
        "groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("builtin", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_id", "user_id"),
    )
    op.create_index("ix_group_members_user_id", "group_members", ["user_id"])
    op.create_table(
        "group_models",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_id", "model_id"),
    )
    op.create_index("ix_group_models_model_id", "group_models", ["model_id"])
    op.create_table(
        "group_endpoints",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["endpoint_id"], ["endpoints.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_id", "endpoint_id"),
    )
    op.create_index("ix_group_endpoints_endpoint_id", "group_endpoints", ["endpoint_id"])
    op.create_table(
        "user_provider_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("api_key_encrypted", sa.Text(), nullable=False),
        sa.Column("api_key_hint", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["endpoint_id"], ["endpoints.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "endpoint_id"),
    )
    op.create_index("ix_user_provider_keys_user_id", "user_provider_keys", ["user_id"])
    op.create_index("ix_user_provider_keys_endpoint_id", "user_provider_keys", ["endpoint_id"])
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(
            sa.Column("requires_user_key", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("allowed_models", sa.JSON(), nullable=True))

    op.bulk_insert(
        groups,
        [
            {
                "name": "everyone",
                "builtin": True,
                "description": "Every user; endpoints are granted to it when created",
                "created_at": datetime.now(UTC),
            }
        ],
    )
    op.execute(
        "INSERT INTO group_endpoints (group_id, endpoint_id) "
        "SELECT g.id, e.id FROM groups g, endpoints e WHERE g.name = 'everyone'"
    )


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("allowed_models")
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("requires_user_key")
    for table in (
        "user_provider_keys",
        "group_endpoints",
        "group_models",
        "group_members",
        "groups",
    ):
        op.drop_table(table)
