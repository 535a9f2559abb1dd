"""Model sources: endpoints, the models synced from them, and each sync's outcome."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from relaygate.db.tables.base import Base, UTCDateTime, utcnow


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
