"""The record of configuration: small named values (the change counter), the change
log replicas follow, and the audit log of administrative changes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from relaygate.db.tables.base import Base, UTCDateTime, utcnow


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
