"""Usage reports (requests, tokens and cost grouped by user, key, model, endpoint or day,
or by day and model at once) and the retention of usage records."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select

from relaygate.context import Context
from relaygate.db.pruning import delete_older, keep_pruning
from relaygate.db.tables import ApiKey, Endpoint, UsageRecord, User, utcnow
from relaygate.errors import BadRequest

log = logging.getLogger(__name__)

GROUPS = ("user", "key", "model", "endpoint", "day")


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One group of a usage report. ``group`` is the user, key or endpoint id, the model
    name, or the day (``YYYY-MM-DD``, UTC); ``name`` the user's, key's or endpoint's name.
    ``cost`` sums the records that have one (models with prices), in the prices' currency;
    ``audio_seconds`` the seconds of audio that answers billed by duration reported."""

    group: int | str | None
    name: str | None
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float
    audio_seconds: float = 0.0


def total_of(rows: Sequence[UsageRow], name: str | None = None) -> UsageRow:
    """The sum of report ``rows`` as one row (no group), named ``name``."""
    return UsageRow(
        group=None,
        name=name,
        requests=sum(r.requests for r in rows),
        errors=sum(r.errors for r in rows),
        prompt_tokens=sum(r.prompt_tokens for r in rows),
        completion_tokens=sum(r.completion_tokens for r in rows),
        total_tokens=sum(r.total_tokens for r in rows),
        cost=sum(r.cost for r in rows),
        audio_seconds=sum(r.audio_seconds for r in rows),
    )


@dataclass(frozen=True, slots=True)
class DailyTokens:
    """The records of one model on one day (``YYYY-MM-DD``, UTC): requests, tokens and
    cost (records without a price count 0), as :func:`daily_tokens` sums them."""

    day: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float


def _day(dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", UsageRecord.created_at), "YYYY-MM-DD")
    return func.substr(UsageRecord.created_at, 1, 10)  # SQLite keeps ISO text, in UTC


async def usage_report(
    ctx: Context,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    group_by: str = "model",
    user_id: int | None = None,
) -> list[UsageRow]:
    """Requests, errors (status ≥ 400), tokens and cost of the records from ``start``
    (inclusive) to ``end`` (exclusive; defaults: the last 7 days up to now), grouped by
    ``group_by`` (one of :data:`GROUPS`), only ``user_id``'s when given; biggest first
    (by day: in date order).

    Raises :class:`BadRequest` for another grouping or an empty range.
    """
    if group_by not in GROUPS:
        raise BadRequest(f"group_by must be one of {', '.join(GROUPS)}", param="group_by")
    end = end or utcnow()
    start = start or end - timedelta(days=7)
    if start >= end:
        raise BadRequest("'from' must be before 'to'", param="from")
    record = UsageRecord
    key: Any = {
        "user": record.user_id,
        "key": record.key_id,
        "model": record.model,
        "endpoint": record.endpoint_id,
        "day": _day(ctx.engine.dialect.name),
    }[group_by]
    cost = func.coalesce(func.sum(record.cost), 0.0)
    query = (
        select(
            key.label("group"),
            func.count().label("requests"),
            func.count().filter(record.status >= 400).label("errors"),
            func.coalesce(func.sum(record.prompt_tokens), 0),
            func.coalesce(func.sum(record.completion_tokens), 0),
            func.coalesce(func.sum(record.total_tokens), 0),
            cost,
            func.coalesce(func.sum(record.audio_seconds), 0.0),
        )
        .where(record.created_at >= start, record.created_at < end)
        .group_by(key)
    )
    if user_id is not None:
        query = query.where(record.user_id == user_id)
    query = query.order_by(key) if group_by == "day" else query.order_by(cost.desc(), key)
    names: dict[Any, str] = {}
    async with ctx.sessions() as session:
        rows = (await session.execute(query)).all()
        ids = [row[0] for row in rows if row[0] is not None]
        tables: dict[str, type[User] | type[ApiKey] | type[Endpoint]] = {
            "user": User,
            "key": ApiKey,
            "endpoint": Endpoint,
        }
        table = tables.get(group_by)
        if table is not None and ids:
            found = await session.execute(select(table.id, table.name).where(table.id.in_(ids)))
            names = {row_id: name for row_id, name in found}
    return [
        UsageRow(
            group=row[0],
            name=names.get(row[0]),
            requests=row[1],
            errors=row[2],
            prompt_tokens=int(row[3]),
            completion_tokens=int(row[4]),
            total_tokens=int(row[5]),
            cost=float(row[6]),
            audio_seconds=float(row[7]),
        )
        for row in rows
    ]


async def daily_tokens(
    ctx: Context, *, start: datetime, end: datetime, user_id: int | None = None
) -> list[DailyTokens]:
    """Requests, tokens and cost per UTC day and model of the records from ``start``
    (inclusive) to ``end`` (exclusive), only ``user_id``'s when given; in date order, then
    by model name. Days and models without records are absent.

    Raises :class:`BadRequest` for an empty range.
    """
    if start >= end:
        raise BadRequest("'from' must be before 'to'", param="from")
    record = UsageRecord
    # One expression object for SELECT and GROUP BY, so PostgreSQL sees the same
    # parameters in both and accepts the grouping.
    day = _day(ctx.engine.dialect.name)
    query = (
        select(
            day,
            record.model,
            func.count(),
            func.coalesce(func.sum(record.prompt_tokens), 0),
            func.coalesce(func.sum(record.completion_tokens), 0),
            func.coalesce(func.sum(record.total_tokens), 0),
            func.coalesce(func.sum(record.cost), 0.0),
        )
        .where(record.created_at >= start, record.created_at < end)
        .group_by(day, record.model)
        .order_by(day, record.model)
    )
    if user_id is not None:
        query = query.where(record.user_id == user_id)
    async with ctx.sessions() as session:
        rows = (await session.execute(query)).all()
    return [
        DailyTokens(
            day=str(row[0]),
            model=row[1],
            requests=row[2],
            prompt_tokens=int(row[3]),
            completion_tokens=int(row[4]),
            total_tokens=int(row[5]),
            cost=float(row[6]),
        )
        for row in rows
    ]


async def prune_once(ctx: Context, older_than: datetime) -> int:
    """Delete usage records created before ``older_than``, in small batches
    (:func:`relaygate.db.pruning.delete_older`); returns how many."""
    return await delete_older(ctx.sessions, UsageRecord.id, UsageRecord.created_at, older_than)


async def prune_usage(ctx: Context, stop: asyncio.Event) -> None:
    """With ``usage_retention_days`` set, delete older usage records at start and then
    hourly until ``stop``; failures are logged and retried next time."""
    days = ctx.settings.usage_retention_days
    await keep_pruning(stop, days, lambda older: prune_once(ctx, older), "usage records")
