"""Retention: deleting a table's rows older than a number of days, in small batches, once
or every hour while the server runs (usage records, the audit log)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from relaygate.db.tables import utcnow
from relaygate.pauses import pause

log = logging.getLogger(__name__)
PRUNE_BATCH = 1000
"""Rows deleted per transaction: short ones, so writers are never held up for long."""
PRUNE_EVERY = 3600.0
"""Seconds between two prunings of one table while the server runs."""


async def delete_older(
    sessions: async_sessionmaker[AsyncSession],
    id_column: InstrumentedAttribute[Any],
    created_column: InstrumentedAttribute[Any],
    older_than: datetime,
) -> int:
    """Delete the rows of ``id_column``'s table whose ``created_column`` is before
    ``older_than`` (UTC), :data:`PRUNE_BATCH` at a time; returns how many."""
    table = id_column.class_
    removed = 0
    while True:
        oldest = select(id_column).where(created_column < older_than).limit(PRUNE_BATCH)
        async with sessions.begin() as session:
            result = await session.execute(
                delete(table).where(id_column.in_(oldest.scalar_subquery()))
            )
        count: int = result.rowcount  # type: ignore[attr-defined]
        removed += count
        if count < PRUNE_BATCH:
            return removed
        await asyncio.sleep(0)


async def keep_pruning(
    stop: asyncio.Event,
    days: float | None,
    prune: Callable[[datetime], Awaitable[int]],
    what: str,
    every: float = PRUNE_EVERY,
) -> None:
    """With ``days`` set, call ``prune(now - days)`` at once and then every ``every``
    seconds until ``stop``, logging what it deleted (``what``: ``usage records``);
    a failure is logged and retried next time. With ``days`` None, returns at once."""
    if days is None:
        return
    while not stop.is_set():
        try:
            removed = await prune(utcnow() - timedelta(days=days))
            if removed:
                log.info("deleted %d %s older than %g days", removed, what, days)
        except Exception:
            log.exception("could not delete old %s; will retry", what)
        await pause(stop, every)
