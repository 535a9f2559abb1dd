"""relaygate's tables (SQLAlchemy 2 declarative), one module per concept; every table
is named here, so ``Base.metadata`` holds them all once this package is imported. The
Alembic migrations in ``migrations/versions`` create exactly this schema; keep them in
step.

- :mod:`~relaygate.db.tables.base`: ``Base``, :class:`UTCDateTime`, :func:`utcnow`
- :mod:`~relaygate.db.tables.accounts`: users, API keys, groups and grants, users'
  provider keys, console sessions, sign-in identities
- :mod:`~relaygate.db.tables.endpoints`: endpoints, models, sync runs
- :mod:`~relaygate.db.tables.usage`: usage records, budget counters and alerts
- :mod:`~relaygate.db.tables.changes`: named values, the change log, the audit log
- :mod:`~relaygate.db.tables.stored`: stored responses, files, batches and their requests
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Table

from relaygate.db.tables.accounts import (
    ApiKey,
    Group,
    GroupEndpoint,
    GroupMember,
    GroupModel,
    Identity,
    UsedSignIn,
    User,
    UserProviderKey,
    WebSession,
)
from relaygate.db.tables.base import Base, UTCDateTime, utcnow
from relaygate.db.tables.changes import AuditEntry, ConfigChange, Meta
from relaygate.db.tables.endpoints import Endpoint, Model, SyncRun
from relaygate.db.tables.stored import Batch, BatchRequest, StoredFile, StoredResponse
from relaygate.db.tables.usage import BudgetAlert, BudgetCounter, UsageRecord

__all__ = [
    "ApiKey",
    "AuditEntry",
    "Base",
    "Batch",
    "BatchRequest",
    "BudgetAlert",
    "BudgetCounter",
    "ConfigChange",
    "Endpoint",
    "Group",
    "GroupEndpoint",
    "GroupMember",
    "GroupModel",
    "Identity",
    "Meta",
    "Model",
    "StoredFile",
    "StoredResponse",
    "SyncRun",
    "UTCDateTime",
    "UsageRecord",
    "UsedSignIn",
    "User",
    "UserProviderKey",
    "WebSession",
    "encrypted_columns",
    "utcnow",
]


def encrypted_columns() -> list[tuple[Table, Column[Any]]]:
    """Every column holding a value encrypted with the secret key (named ``*_encrypted``),
    with its table: what a secret-key rotation must re-encrypt."""
    return [
        (table, column)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if column.name.endswith("_encrypted")
    ]
