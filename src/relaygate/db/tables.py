"""relaygate's tables (SQLAlchemy 2 declarative). The Alembic migrations in
``migrations/versions`` create exactly this schema; keep them in step.

A table whose id other rows name (foreign keys, and usage records, which outlive the
rows they name) has ``sqlite_autoincrement``: SQLite would otherwise hand a deleted
row's id to the next row. PostgreSQL's sequences never reuse a value."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware
    (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16), default="user")
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer)
    budget: Mapped[float | None] = mapped_column(Float)
    """Most spend per ``budget_period``, in the currency of the models' prices; None: none."""
    budget_period: Mapped[str | None] = mapped_column(String(16))
    budget_reset_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When an admin last reset the budget: spend before it is not counted."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    disabled: Mapped[bool] = mapped_column(Boolean, server_default=false())
    """A disabled user cannot sign in to the console; their keys were revoked when set."""


class ApiKey(Base):
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
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer)
    budget: Mapped[float | None] = mapped_column(Float)
    """Most spend per ``budget_period``, in the currency of the models' prices; None: none."""
    budget_period: Mapped[str | None] = mapped_column(String(16))
    budget_reset_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When an admin last reset the budget: spend before it is not counted."""


class Endpoint(Base):
    __tablename__ = "endpoints"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    type: Mapped[str] = mapped_column(String(32), default="openai")
    url: Mapped[str] = mapped_column(String(2000))
    api_key_encrypted: Mapped[str | None] = mapped_column(Text)
    api_key_hint: Mapped[str | None] = mapped_column(String(16))
    api_key_env: Mapped[str | None] = mapped_column(String(200))
    auth_header: Mapped[str | None] = mapped_column(String(100))
    auth_prefix: Mapped[str | None] = mapped_column(String(50))
    requires_user_key: Mapped[bool] = mapped_column(Boolean, default=False)
    model_filter: Mapped[list[str]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    sync_interval: Mapped[float | None] = mapped_column(Float)
    timeouts: Mapped[dict[str, float] | None] = mapped_column(JSON)
    """Per-endpoint timeouts in seconds (connect, first_byte, idle, total), over the settings."""
    pool: Mapped[str | None] = mapped_column(String(200))
    """Endpoints in one pool serve their models of the same name together (failover)."""
    extra_routes: Mapped[list[str] | None] = mapped_column(JSON)
    batch_concurrency: Mapped[int | None] = mapped_column(Integer)
    """Batch requests this endpoint takes at once per process (None: the setting's)."""
    """Routes forwarded besides the provider type's, as ``"METHOD /path"`` strings."""
    messages_api: Mapped[str] = mapped_column(String(16), server_default="auto")
    responses_api: Mapped[str] = mapped_column(String(16), server_default="auto")
    chat_api: Mapped[str] = mapped_column(String(16), server_default="auto")
    """How Anthropic Messages, OpenAI Responses and chat-completions requests reach the
    endpoint: ``native``, ``translate`` or ``auto`` (see :mod:`relaygate.proxy.translation`)."""
    api_found: Mapped[dict[str, str] | None] = mapped_column(JSON)
    """What ``auto`` found since the last sync: route (``messages``, ``count_tokens``,
    ``responses``, ``tokenize``) to ``native`` or ``translate``."""
    sync_status: Mapped[str] = mapped_column(String(16), default="never")
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_sync_error: Mapped[str | None] = mapped_column(Text)
    next_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When the next periodic sync is due; claimed atomically by one replica."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Model(Base):
    __tablename__ = "models"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "upstream_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("endpoints.id", ondelete="CASCADE"), index=True
    )
    upstream_id: Mapped[str] = mapped_column(String(500))
    alias: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="online")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    owned_by: Mapped[str | None] = mapped_column(String(200))
    display_name: Mapped[str | None] = mapped_column(String(500))
    context_window: Mapped[int | None] = mapped_column(Integer)
    max_output_tokens: Mapped[int | None] = mapped_column(Integer)
    created: Mapped[datetime | None] = mapped_column(UTCDateTime)
    capabilities: Mapped[list[str]] = mapped_column(JSON, default=list)
    fallback_model: Mapped[str | None] = mapped_column(String(500))
    """The public name of the model tried when every endpoint serving this one fails."""
    input_cost_per_million_tokens: Mapped[float | None] = mapped_column(Float)
    output_cost_per_million_tokens: Mapped[float | None] = mapped_column(Float)
    default_output_tokens: Mapped[int | None] = mapped_column(Integer)
    """Completion tokens a budget reserves for a request that states no cap (set by an
    operator; else ``max_output_tokens``, else the ``budget_output_tokens`` setting)."""
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SyncRun(Base):
    """One sync of one endpoint: the sync history."""

    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("endpoints.id", ondelete="CASCADE"), index=True
    )
    trigger: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))
    added: Mapped[int] = mapped_column(Integer, default=0)
    reactivated: Mapped[int] = mapped_column(Integer, default=0)
    deactivated: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    replica: Mapped[str | None] = mapped_column(String(200))
    """Which process ran the sync (host:pid)."""


class Group(Base):
    """A group of users; models and whole endpoints are granted to groups. The built-in
    ``everyone`` group holds every user without storing memberships."""

    __tablename__ = "groups"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    budget: Mapped[float | None] = mapped_column(Float)
    """Most spend per ``budget_period``, in the currency of the models' prices; None: none."""
    budget_period: Mapped[str | None] = mapped_column(String(16))
    budget_reset_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When an admin last reset the budget: spend before it is not counted."""
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


class Meta(Base):
    """Small named values: the change counter, seeding time, the secret-key check."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ConfigChange(Base):
    """The change log: what each configuration change changed, under its counter value
    (see :mod:`relaygate.changes`); ``changes`` is JSON, ``[["key", 12], ...]``."""

    __tablename__ = "config_changes"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    changes: Mapped[str] = mapped_column(Text)
    token: Mapped[str] = mapped_column(String(32))
    """Random: tells this entry from another given the same version after the counter
    went back (a database restored from a backup)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UsageRecord(Base):
    """One proxied request: who, which model and endpoint, how it went, tokens and cost.
    ``cost`` is in the currency of the model's prices (per million tokens); times in ms."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_user_created", "user_id", "created_at"),
        Index("ix_usage_records_key_created", "key_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    request_id: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(Integer)
    key_id: Mapped[int] = mapped_column(Integer)
    endpoint_id: Mapped[int | None] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(500))
    upstream_model: Mapped[str | None] = mapped_column(String(500))
    path: Mapped[str] = mapped_column(String(200))
    upstream_path: Mapped[str | None] = mapped_column(String(200))
    """The path the target was sent, when relaygate translated the request to another API."""
    status: Mapped[int] = mapped_column(Integer)
    stream: Mapped[bool] = mapped_column(Boolean)
    latency_ms: Mapped[float] = mapped_column(Float)
    ttfb_ms: Mapped[float | None] = mapped_column(Float)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    total_tokens: Mapped[int | None] = mapped_column(Integer)
    cost: Mapped[float | None] = mapped_column(Float)
    audio_seconds: Mapped[float | None] = mapped_column(Float)
    """The seconds of audio an answer billed by duration reported (a transcription's)."""


class BudgetCounter(Base):
    """One budget's spend and reservations in one period (its counter ``name``, see
    :mod:`relaygate.budgets`), kept here when there is no Redis on PostgreSQL. Amounts
    are in nano-units of the prices' currency; ``ends_at`` is when the period ends (None
    for a ``total`` budget), after which the row may be deleted."""

    __tablename__ = "budget_counters"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    spent: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


class BudgetAlert(Base):
    """A budget alert sent (or being sent): one per counter and threshold, so each
    threshold alerts once per period across every replica."""

    __tablename__ = "budget_alerts"

    counter: Mapped[str] = mapped_column(String(100), primary_key=True)
    threshold: Mapped[float] = mapped_column(Float, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


def encrypted_columns() -> list[tuple[Table, Column[Any]]]:
    """Every column holding a value encrypted with the secret key (named ``*_encrypted``),
    with its table: what a secret-key rotation must re-encrypt."""
    return [
        (table, column)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if column.name.endswith("_encrypted")
    ]


class StoredResponse(Base):
    """A response relaygate produced by translating the Responses API, kept so its owner
    can read it, delete it and continue from it (``previous_response_id``). ``data`` is
    the encrypted JSON of ``{"input": [items], "response": {Response object}}``; the
    conversation before it is ``previous_id``'s."""

    __tablename__ = "stored_responses"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    previous_id: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(500))
    data_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class StoredFile(Base):
    """A file a user uploaded (``purpose`` ``batch``) or a batch wrote for them
    (``batch_output``); its contents live in the file store (:mod:`relaygate.files`)
    under its ``id``, ``sha256`` their checksum. ``lines`` and ``url`` describe a batch
    input file: its requests and the one route they all go to."""

    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    lines: Mapped[int | None] = mapped_column(Integer)
    url: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


class Batch(Base):
    """A batch of requests relaygate runs for a user (OpenAI's Batch API): its status and
    the times it reached each, its request counts, the tokens and cost of its answers,
    and the replica holding it while it is prepared or finalized (``claimed_by`` until
    ``claimed_until``)."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key_id: Mapped[int] = mapped_column(Integer)
    input_file_id: Mapped[str] = mapped_column(String(64))
    endpoint: Mapped[str] = mapped_column(String(64))
    completion_window: Mapped[str] = mapped_column(String(16))
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON)
    output_expires_seconds: Mapped[int | None] = mapped_column(Integer)
    """Seconds its output and error files are kept (None: ``file_retention_days``)."""
    status: Mapped[str] = mapped_column(String(16), index=True)
    errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    output_file_id: Mapped[str | None] = mapped_column(String(64))
    error_file_id: Mapped[str | None] = mapped_column(String(64))
    total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    completed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cost: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    in_progress_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finalizing_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelling_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class BatchRequest(Base):
    """One request of a batch: line ``line`` of its input file (``length`` bytes at
    ``offset``), its ``state`` (``queued``, ``running``, ``done``, ``failed``,
    ``cancelled``, ``expired``), the replica running it until ``claimed_until``, and its
    outcome: the answer's status, request id and body (``response``, JSON text), or an
    error that got no answer (``error_code``, ``error_message``)."""

    __tablename__ = "batch_requests"
    __table_args__ = (
        Index("ix_batch_requests_batch_state_id", "batch_id", "state", "id"),
        Index("ix_batch_requests_batch_id", "batch_id", "id"),
        Index("ix_batch_requests_state_next", "state", "next_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    line: Mapped[int] = mapped_column(Integer)
    custom_id: Mapped[str] = mapped_column(String(512))
    offset: Mapped[int] = mapped_column(BigInteger)
    length: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(12))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(String(64))
    response: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)


class AuditEntry(Base):
    """One administrative change (see :mod:`relaygate.audit`): who (``actor_type``
    ``user``, ``cli``, ``config`` or ``system``; a user's id and name), when, from which
    address, the action (``endpoint.update``), its target, and ``details`` as JSON: the
    changed fields' names and their non-secret new values. Never a secret."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_created_at", "created_at"),
        Index("ix_audit_log_action_id", "action", "id"),
        Index("ix_audit_log_actor_name_id", "actor_name", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor_name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    target_name: Mapped[str | None] = mapped_column(String(500))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
