"""Sign-ins under way are no longer stored: the browser carries each sealed in its state
cookie (anyone may start one, and each used to be a row). What is stored is the state of
each sign-in whose callback reached the provider, for as long as its cookie lasts, so a
callback is never replayed.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("sign_in_attempts")
    op.create_table(
        "used_sign_ins",
        sa.Column("state_hash", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("used_sign_ins")
    op.create_table(
        "sign_in_attempts",
        sa.Column("state_hash", sa.String(64), primary_key=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("nonce", sa.String(128), nullable=False),
        sa.Column("verifier", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )
