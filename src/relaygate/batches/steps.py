"""A batch's work in the database, each step one short transaction that a replica
claims before doing it, so replicas share batches row by row and one that dies leaves
its work to the others once its claim (``batch_lease_seconds``) runs out:

- **prepare** (:mod:`.prepare`): a ``validating`` batch's input file is read (its
  checksum verified) into one ``batch_requests`` row per request, then the batch is
  ``in_progress``;
- **claim**: queued requests of ``in_progress`` batches within their window (or running
  ones whose claim ran out) become this replica's, ``running``;
- **finish** (:mod:`.outcomes`) or **retry**: a request's outcome is written as soon as
  it is known, together with the others known then, with their batches' counts, tokens
  and cost in the same transaction; a request whose outcome is written is never sent
  again;
- **expire**: past its window, a batch's queued requests, and running ones whose claim
  ran out, end as ``expired``;
- **finalize** (:mod:`.finalize`): a batch with nothing left to send (or cancelled, or
  expired) gets its output and error files and its final status, and its rows are
  deleted.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from relaygate.batches import ENDED
from relaygate.context import Context
from relaygate.db.tables import ApiKey, Batch, BatchRequest, Endpoint, utcnow
from relaygate.errors import ClaimLost

log = logging.getLogger(__name__)
INSERT_ROWS = 1000
"""Rows written per transaction when a batch is prepared, and read per page when it is
finalized."""


@dataclass(frozen=True, slots=True)
class Claimed:
    """A batch request this replica claimed: its row, batch, place in the input file and
    the attempt this is (1 for the first)."""

    id: int
    batch_id: str
    custom_id: str
    offset: int
    length: int
    attempt: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a request ended with: an answer (``status_code``, ``request_id``,
    ``response`` as JSON text) or an error that got none (``error_code``,
    ``error_message``), and the tokens and cost it used."""

    status_code: int | None = None
    request_id: str | None = None
    response: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _lease(ctx: Context, now: datetime) -> datetime:
    return now + timedelta(seconds=ctx.settings.batch_lease_seconds)


def _free(now: datetime) -> ColumnElement[bool]:
    """A claim that has run out (or none)."""
    return or_(Batch.claimed_until.is_(None), Batch.claimed_until < now)


async def claim_batch(ctx: Context, batch_id: str, status: str, new_status: str) -> bool:
    """Claim the batch ``batch_id`` while it is ``status`` and not claimed by a live
    replica, moving it to ``new_status``; True when this replica got it."""
    now = utcnow()
    values: dict[str, object] = {
        "status": new_status,
        "claimed_by": ctx.claimant,
        "claimed_until": _lease(ctx, now),
    }
    if new_status == "finalizing" and status != "finalizing":
        values["finalizing_at"] = now
    async with ctx.sessions.begin() as session:
        result = await session.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.status == status, _free(now))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return getattr(result, "rowcount", 0) == 1


async def insert_rows(ctx: Context, batch_id: str, rows: list[dict[str, object]]) -> None:
    """Write ``rows`` and renew this replica's claim on the batch in one transaction.
    Raises :class:`ClaimLost` (writing nothing) when the claim is no longer held."""
    async with ctx.sessions.begin() as session:
        await renew_batch(ctx, session, batch_id, "validating")
        if rows:
            await session.execute(insert(BatchRequest), rows)
    rows.clear()


async def release_batch(
    ctx: Context, session: AsyncSession, batch_id: str, status: str, values: dict[Any, Any]
) -> bool:
    """Move a batch this process holds in ``status`` on (``values``, keyed by column)
    and give up its claim, in ``session``; False when this process no longer held it."""
    result = await session.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.status == status, Batch.claimed_by == ctx.claimant)
        .values({**values, Batch.claimed_by: None, Batch.claimed_until: None})
        .execution_options(synchronize_session=False)
    )
    return getattr(result, "rowcount", 0) == 1


async def renew_batch(ctx: Context, session: AsyncSession, batch_id: str, status: str) -> None:
    result = await session.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.status == status, Batch.claimed_by == ctx.claimant)
        .values(claimed_until=_lease(ctx, utcnow()))
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise ClaimLost(batch_id)


def _queued_due(now: datetime) -> ColumnElement[bool]:
    """A queued request whose time has come (never tried, or its retry is due)."""
    return and_(
        BatchRequest.state == "queued",
        or_(BatchRequest.next_at.is_(None), BatchRequest.next_at <= now),
    )


def _lapsed(now: datetime, busy: Collection[int]) -> ColumnElement[bool]:
    """A request running under a claim that ran out (never one of ``busy``, those this
    process is sending, however late their renewal)."""
    lapsed = and_(BatchRequest.state == "running", BatchRequest.claimed_until < now)
    if busy:
        lapsed = and_(lapsed, BatchRequest.id.notin_(list(busy)))
    return lapsed


FAIR_BATCHES = 8
"""Batches a claim shares its room between, oldest first."""


async def claim_requests(
    ctx: Context, limit: int, busy: Collection[int] = (), turn: int = 0
) -> list[Claimed]:
    """Claim up to ``limit`` requests to send for ``batch_lease_seconds`` (renewed by
    :func:`renew` while they run), none of ``busy`` (those this process is sending), the
    room shared between the :data:`FAIR_BATCHES` oldest batches with requests due (so
    one large batch does not hold back every later one), each batch's oldest first; the
    batch served first (and given any rounding) goes round with ``turn``."""
    now = utcnow()
    waiting = (
        select(Batch.id)
        .where(
            Batch.status == "in_progress",
            Batch.expires_at > now,  # past its window a batch sends nothing more
            # Two tests, each read by (batch, state): one over both parts read every
            # request of the batch that was done before reaching a queued one.
            or_(
                *(
                    select(BatchRequest.id).where(BatchRequest.batch_id == Batch.id, due).exists()
                    for due in (_queued_due(now), _lapsed(now, busy))
                )
            ),
        )
        .order_by(Batch.created_at, Batch.id)
        .limit(FAIR_BATCHES)
    )
    claimed: list[Claimed] = []
    async with ctx.sessions() as session:
        batch_ids = list((await session.scalars(waiting)).all())
    if batch_ids:
        start = turn % len(batch_ids)
        batch_ids = batch_ids[start:] + batch_ids[:start]
    for index, batch_id in enumerate(batch_ids):
        share = -(-(limit - len(claimed)) // (len(batch_ids) - index))  # ceiling
        if share > 0:
            claimed.extend(await _claim_of(ctx, batch_id, share, now, busy))
    return claimed


async def _claim_of(
    ctx: Context, batch_id: str, limit: int, now: datetime, busy: Collection[int]
) -> list[Claimed]:
    """Claim up to ``limit`` due requests of one batch in one transaction: those whose
    claim ran out first, then the queued ones, each oldest first. Each part is read in
    the order of ``ix_batch_requests_batch_state_id``, so a claim reads about as many rows
    as it takes, however large the batch (an ``OR`` of both parts made the database
    read and sort every row of the batch each time). On SQLite each part is one
    ``UPDATE``, a write from its start (a read upgraded to a write fails at once when
    another writer came first); on PostgreSQL rows another replica is claiming are
    skipped (``FOR UPDATE SKIP LOCKED``)."""
    async with ctx.sessions.begin() as session:
        claimed = await _claim_part(ctx, session, batch_id, _lapsed(now, busy), limit, now)
        if len(claimed) < limit:
            due = _queued_due(now)
            claimed += await _claim_part(ctx, session, batch_id, due, limit - len(claimed), now)
    return claimed


async def _claim_part(
    ctx: Context,
    session: AsyncSession,
    batch_id: str,
    due: ColumnElement[bool],
    limit: int,
    now: datetime,
) -> list[Claimed]:
    pick = (
        select(BatchRequest.id)
        .where(
            BatchRequest.batch_id == batch_id,
            due,
            select(Batch.id)
            .where(Batch.id == batch_id, Batch.status == "in_progress", Batch.expires_at > now)
            .exists(),
        )
        .order_by(BatchRequest.id)
        .limit(limit)
    )
    chosen: Any = pick
    if ctx.engine.dialect.name == "postgresql":
        # Locked first, then updated: PostgreSQL does not keep a LIMIT inside a
        # locking IN (…) subquery of an UPDATE, and has no read to upgrade.
        locked = pick.with_for_update(of=BatchRequest, skip_locked=True)
        chosen = list((await session.scalars(locked)).all())
        if not chosen:
            return []
    # No second test of ``due`` here: on SQLite the statement is one write, on
    # PostgreSQL the rows are locked; and with it SQLite read by state, every queued row.
    found = await session.execute(
        update(BatchRequest)
        .where(BatchRequest.id.in_(chosen))
        .values(
            state="running",
            claimed_by=ctx.claimant,
            claimed_until=_lease(ctx, now),
            attempts=BatchRequest.attempts + 1,
        )
        .returning(
            BatchRequest.id,
            BatchRequest.batch_id,
            BatchRequest.custom_id,
            BatchRequest.offset,
            BatchRequest.length,
            BatchRequest.attempts,
        )
        .execution_options(synchronize_session=False)
    )
    return sorted((Claimed(*row) for row in found), key=lambda c: c.id)


def _mine(claimed: Claimed, replica: str) -> ColumnElement[bool]:
    return and_(
        BatchRequest.id == claimed.id,
        BatchRequest.claimed_by == replica,
        BatchRequest.state == "running",
    )


async def renew(ctx: Context, ids: Sequence[int]) -> None:
    """Extend this replica's claims on the running requests ``ids``."""
    if not ids:
        return
    async with ctx.sessions.begin() as session:
        await session.execute(
            update(BatchRequest)
            .where(
                BatchRequest.id.in_(list(ids)),
                BatchRequest.claimed_by == ctx.claimant,
                BatchRequest.state == "running",
            )
            .values(claimed_until=_lease(ctx, utcnow()))
            .execution_options(synchronize_session=False)
        )


async def retry_later(
    ctx: Context, claimed: Claimed, seconds: float, *, attempted: bool = True
) -> None:
    """Queue ``claimed`` again, to be sent in ``seconds``; ``attempted`` False gives back
    the attempt it was claimed for (it was never sent)."""
    values: dict[object, object] = {
        BatchRequest.state: "queued",
        BatchRequest.next_at: utcnow() + timedelta(seconds=seconds),
        BatchRequest.claimed_by: None,
        BatchRequest.claimed_until: None,
    }
    if not attempted:
        values[BatchRequest.attempts] = BatchRequest.attempts - 1
    async with ctx.sessions.begin() as session:
        await session.execute(
            update(BatchRequest)
            .where(_mine(claimed, ctx.claimant))
            .values(values)
            .execution_options(synchronize_session=False)
        )


async def expire_due(ctx: Context, busy: Collection[int] = ()) -> None:
    """End the requests of batches past their window that are not being sent (queued,
    or running under a claim that ran out, but for ``busy``: those this process is still
    sending or writing, however late their renewal) as ``expired``, and a batch still
    ``validating`` then as a whole. No request of such a batch is claimed again
    (:func:`claim_requests`), so one given back by a withdrawn send is ended here at the
    next step rather than claimed and withdrawn in turn."""
    now = utcnow()
    late = select(Batch.id).where(Batch.status == "in_progress", Batch.expires_at <= now)
    stale = select(Batch.id).where(Batch.status == "validating", Batch.expires_at <= now)
    async with ctx.sessions.begin() as session:
        if await session.scalar(stale.limit(1)) is not None:  # never prepared in its window
            await session.execute(
                update(Batch)
                .where(Batch.status == "validating", Batch.expires_at <= now)
                .values(status="expired", expired_at=now, claimed_by=None, claimed_until=None)
                .execution_options(synchronize_session=False)
            )
        if await session.scalar(late.limit(1)) is None:
            return  # the common case costs two reads, never a write
        await session.execute(
            update(BatchRequest)
            .where(
                BatchRequest.batch_id.in_(late),
                or_(BatchRequest.state == "queued", _lapsed(now, busy)),
            )
            .values(state="expired")
            .execution_options(synchronize_session=False)
        )


async def batches_to_step(ctx: Context) -> tuple[list[str], list[tuple[str, str]]]:
    """The batches a replica may step now: ``validating`` ones to prepare, and (id,
    status) of those ready to finalize (nothing left to send, or cancelled or expired
    with nothing running, or being finalized by a replica whose claim ran out)."""
    now = utcnow()
    # In progress: anything queued or running; cancelled: running under a live claim
    # (what a dead replica held is written as cancelled).
    # Two tests, each read by (batch, state): one over both read every request of the
    # batch that was done before reaching an unsettled one.
    unsettled = or_(
        and_(
            Batch.status == "in_progress",
            select(BatchRequest.id)
            .where(BatchRequest.batch_id == Batch.id, BatchRequest.state.in_(("queued", "running")))
            .exists(),
        ),
        select(BatchRequest.id)
        .where(
            BatchRequest.batch_id == Batch.id,
            BatchRequest.state == "running",
            BatchRequest.claimed_until >= now,
        )
        .exists(),
    )
    async with ctx.sessions() as session:
        validating = list(
            (
                await session.scalars(
                    select(Batch.id).where(Batch.status == "validating", _free(now))
                )
            ).all()
        )
        ready = await session.execute(
            select(Batch.id, Batch.status).where(
                or_(
                    and_(Batch.status.in_(("in_progress", "cancelling")), ~unsettled),
                    and_(Batch.status == "finalizing", _free(now)),
                )
            )
        )
        return validating, [(batch_id, status) for batch_id, status in ready]


async def endpoint_limits(ctx: Context) -> dict[int, int]:
    """Each endpoint's own ``batch_concurrency``, where it sets one."""
    async with ctx.sessions() as session:
        found = await session.execute(
            select(Endpoint.id, Endpoint.batch_concurrency).where(
                Endpoint.batch_concurrency.is_not(None)
            )
        )
        return {endpoint_id: limit for endpoint_id, limit in found if limit is not None}


async def queued_count(ctx: Context) -> int:
    """Batch requests waiting to be sent, across every batch."""
    async with ctx.sessions() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(BatchRequest).where(BatchRequest.state == "queued")
            )
            or 0
        )


def new_request_id() -> str:
    """The id a batch request goes by upstream (a UUID: some servers take no other)."""
    return str(uuid.uuid4())


async def key_hash_of(ctx: Context, key_id: int) -> str | None:
    """The hash of API key ``key_id`` (None when it is gone)."""
    async with ctx.sessions() as session:
        return await session.scalar(select(ApiKey.key_hash).where(ApiKey.id == key_id))


async def withdrawn(ctx: Context, batch_ids: list[str]) -> tuple[frozenset[str], list[str]]:
    """Those of ``batch_ids`` that send no more requests (cancelled, past their window,
    or ended), and those of them that have ended."""
    if not batch_ids:
        return frozenset(), []
    async with ctx.sessions() as session:
        found = list(
            await session.execute(
                select(Batch.id, Batch.status).where(
                    Batch.id.in_(batch_ids),
                    or_(Batch.status != "in_progress", Batch.expires_at <= utcnow()),
                )
            )
        )
    return (
        frozenset(batch_id for batch_id, _ in found),
        [batch_id for batch_id, status in found if status in ENDED],
    )
