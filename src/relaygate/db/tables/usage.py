"""What was used and spent: one usage record per proxied request, budget counters
and the budget alerts already sent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from relaygate.db.tables.base import Base, UTCDateTime, utcnow


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
