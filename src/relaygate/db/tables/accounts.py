"""Who may use relaygate: users, their API keys, groups and their grants, users' own
provider keys, console sessions and sign-in identities."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from relaygate.db.tables.base import Base, UTCDateTime, utcnow


class BudgetColumns:
    """The budget of a user, an API key or a group (:mod:`relaygate.budget`)."""

    budget: Mapped[float | None] = mapped_column(Float)
    """Most spend per ``budget_period``, in the currency of the models' prices; None: none."""
    budget_period: Mapped[str | None] = mapped_column(String(16))
    budget_reset_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When an admin last reset the budget: spend before it is not counted."""


class RateLimitColumns:
    """The rate limits of a user or an API key (:mod:`relaygate.ratelimit`); None: none."""

    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer)


class User(RateLimitColumns, BudgetColumns, Base):
    __tablename__ = "users"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16), default="user")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    disabled: Mapped[bool] = mapped_column(Boolean, server_default=false())
    """A disabled user cannot sign in to the console; their keys were revoked when set."""


class ApiKey(RateLimitColumns, BudgetColumns, Base):
    __tablename__ = "api_keys"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    allowed_models: Mapped[list[str] | None] = mapped_column(JSON)
    """Public model names this key is limited to (narrower than its user's), or None."""


class Group(BudgetColumns, Base):
    """A group of users; models and whole endpoints are granted to groups. The built-in
    ``everyone`` group holds every user without storing memberships."""

    __tablename__ = "groups"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GroupMember(Base):
    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    source: Mapped[str | None] = mapped_column(String(64))
    """None: added by an administrator; ``oidc:<provider>`` or ``proxy``: made by that
    sign-in's ``group_map``, and removed by it when the provider no longer lists it."""


class GroupModel(Base):
    """A model granted to a group."""

    __tablename__ = "group_models"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class GroupEndpoint(Base):
    """A whole endpoint (every model of it, present and future) granted to a group."""

    __tablename__ = "group_endpoints"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("endpoints.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class UserProviderKey(Base):
    """A user's own key for one endpoint (bring your own key), encrypted like every
    provider key; it replaces the endpoint's key for that user's requests."""

    __tablename__ = "user_provider_keys"
    __table_args__ = (UniqueConstraint("user_id", "endpoint_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("endpoints.id", ondelete="CASCADE"), index=True
    )
    api_key_encrypted: Mapped[str] = mapped_column(Text)
    api_key_hint: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WebSession(Base):
    """A web-console sign-in: the cookie's hash, the API key it was made with (by hash,
    so revoking the key ends the session), its CSRF token and its expiry."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    """The API key signed in with; None for a single sign-on session (``user_id``)."""
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str | None] = mapped_column(String(64))
    """The OIDC provider of a single sign-on session (its end-session endpoint)."""
    id_token: Mapped[str | None] = mapped_column(Text)
    """The ID token of a single sign-on session, sent as ``id_token_hint`` at sign-out."""
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Identity(Base):
    """A user's account at an identity provider: (provider, subject) is who signs in;
    ``provider`` is an ``oidc:`` entry's name or ``proxy``."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("provider", "subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UsedSignIn(Base):
    """The hash of the ``state`` of an OIDC sign-in whose callback reached the provider,
    kept until its state cookie can no longer be opened: a callback is taken once."""

    __tablename__ = "used_sign_ins"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
