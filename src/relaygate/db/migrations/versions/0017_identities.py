"""Single sign-on: users' identities at OIDC providers (or the trusted proxy), sign-ins
under way, console sessions of a user rather than a key, memberships made by a
provider's group mapping, and disabled users.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identities",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("email", sa.String(320)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_sign_in_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("provider", "subject"),
    )
    op.create_table(
        "sign_in_attempts",
        sa.Column("state_hash", sa.String(64), primary_key=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("nonce", sa.String(128), nullable=False),
        sa.Column("verifier", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )
    # Plain ADD COLUMN, which SQLite does in place: a batch rebuild of `users` would lose
    # its AUTOINCREMENT (ids never reused, 0009).
    op.add_column(
        "users", sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column("group_members", sa.Column("source", sa.String(64)))
    with op.batch_alter_table("web_sessions") as batch:
        batch.alter_column("key_hash", existing_type=sa.String(64), nullable=True)
        batch.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("provider", sa.String(64)))
        batch.add_column(sa.Column("id_token", sa.Text()))
        batch.create_foreign_key(
            "fk_web_sessions_user_id", "users", ["user_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_index("ix_web_sessions_user_id", ["user_id"])


def downgrade() -> None:
    op.execute("DELETE FROM web_sessions WHERE key_hash IS NULL")
    with op.batch_alter_table("web_sessions") as batch:
        batch.drop_index("ix_web_sessions_user_id")
        batch.drop_constraint("fk_web_sessions_user_id", type_="foreignkey")
        batch.drop_column("id_token")
        batch.drop_column("provider")
        batch.drop_column("user_id")
        batch.alter_column("key_hash", existing_type=sa.String(64), nullable=False)
    with op.batch_alter_table("group_members") as batch:
        batch.drop_column("source")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("disabled")
    op.drop_table("sign_in_attempts")
    op.drop_table("identities")
