"""Recent requests: the usage records themselves, newest first, with the names of their
user, key and endpoint, filtered and read a page at a time (the console's Requests
page)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select

from relaygate.context import Context
from relaygate.db.tables import ApiKey, Endpoint, UsageRecord, User
from relaygate.errors import BadRequest

MAX_PAGE = 200
"""The most records one page holds."""

Outcome = Literal["ok", "error"]


@dataclass(frozen=True, slots=True)
class RequestFilter:
    """Which records to read: those of ``user_id``, of the public ``model`` name, served
    by ``endpoint_id``, ``ok`` (status below 400) or ``error`` (400 and up), made from
    ``start`` (inclusive) to ``end`` (exclusive), older than the record ``before``
    (the page cursor). None: any."""

    user_id: int | None = None
    model: str | None = None
    endpoint_id: int | None = None
    outcome: Outcome | None = None
    start: datetime | None = None
    end: datetime | None = None
    before: int | None = None


@dataclass(frozen=True, slots=True)
class RecentRequest:
    """One usage record, with the names of its user, key and endpoint (None when they
    were deleted since, or no endpoint answered). Times in ms; cost in the prices'
    currency (None: the model had no price)."""

    id: int
    created_at: datetime
    request_id: str | None
    user_id: int
    user_name: str | None
    key_id: int
    key_name: str | None
    key_prefix: str | None
    model: str
    endpoint_id: int | None
    endpoint_name: str | None
    path: str
    status: int
    stream: bool
    latency_ms: float
    ttfb_ms: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cost: float | None

    @property
    def ok(self) -> bool:
        return self.status < 400


@dataclass(frozen=True, slots=True)
class RequestPage:
    """One page of records, newest first; ``older`` is the cursor of the next page (the
    ``before`` of its filter), None on the last."""

    rows: list[RecentRequest]
    older: int | None


async def recent_requests(ctx: Context, wanted: RequestFilter, limit: int = 50) -> RequestPage:
    """Up to ``limit`` (1 to :data:`MAX_PAGE`) records matching ``wanted``, newest first.

    Raises :class:`BadRequest` for a limit out of range or an empty time range.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be from 1 to {MAX_PAGE}", param="limit")
    if wanted.start is not None and wanted.end is not None and wanted.start >= wanted.end:
        raise BadRequest("'from' must be before 'to'", param="from")
    record = UsageRecord
    query = (
        select(record, User.name, ApiKey.name, ApiKey.prefix, Endpoint.name)
        .outerjoin(User, User.id == record.user_id)
        .outerjoin(ApiKey, ApiKey.id == record.key_id)
        .outerjoin(Endpoint, Endpoint.id == record.endpoint_id)
        .order_by(record.id.desc())
        .limit(limit + 1)
    )
    if wanted.user_id is not None:
        query = query.where(record.user_id == wanted.user_id)
    if wanted.model:
        query = query.where(record.model == wanted.model)
    if wanted.endpoint_id is not None:
        query = query.where(record.endpoint_id == wanted.endpoint_id)
    if wanted.outcome == "ok":
        query = query.where(record.status < 400)
    elif wanted.outcome == "error":
        query = query.where(record.status >= 400)
    if wanted.start is not None:
        query = query.where(record.created_at >= wanted.start)
    if wanted.end is not None:
        query = query.where(record.created_at < wanted.end)
    if wanted.before is not None:
        query = query.where(record.id < wanted.before)
    async with ctx.sessions() as session:
        found = (await session.execute(query)).all()
    rows = [
        RecentRequest(
            id=row.id,
            created_at=row.created_at,
            request_id=row.request_id,
            user_id=row.user_id,
            user_name=user_name,
            key_id=row.key_id,
            key_name=key_name,
            key_prefix=key_prefix,
            model=row.model,
            endpoint_id=row.endpoint_id,
            endpoint_name=endpoint_name,
            path=row.path,
            status=row.status,
            stream=row.stream,
            latency_ms=row.latency_ms,
            ttfb_ms=row.ttfb_ms,
            prompt_tokens=row.prompt_tokens,
            completion_tokens=row.completion_tokens,
            total_tokens=row.total_tokens,
            cost=row.cost,
        )
        for row, user_name, key_name, key_prefix, endpoint_name in found[:limit]
    ]
    return RequestPage(rows, rows[-1].id if len(found) > limit else None)


async def filter_choices(ctx: Context) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """The users and the endpoints, as (id, name) sorted by name, for the filter form."""
    async with ctx.sessions() as session:
        users = (await session.execute(select(User.id, User.name).order_by(User.name))).all()
        endpoints = (
            await session.execute(select(Endpoint.id, Endpoint.name).order_by(Endpoint.name))
        ).all()
    return [(i, n) for i, n in users], [(i, n) for i, n in endpoints]
