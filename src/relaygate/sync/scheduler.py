"""The periodic sync: each enabled endpoint is synced every ``sync_interval`` seconds
(its own, or the global default).

Replicas share the schedule through the database: the replica whose atomic
``UPDATE … WHERE next_sync_at <= now`` moves an endpoint's ``next_sync_at`` one
interval ahead is the one that syncs it; the others learn when it is next due. A
replica that dies mid-sync leaves ``next_sync_at`` set, so another claims the
endpoint at the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta

from sqlalchemy import or_, select, update

from relaygate.context import Context
from relaygate.db.tables import Endpoint, utcnow
from relaygate.errors import RelaygateError
from relaygate.sync.service import sync_endpoint

log = logging.getLogger(__name__)
TICK_SECONDS = 0.25


async def claim(ctx: Context, endpoint_id: int, interval: float) -> float | None:
    """Try to claim this interval's sync of an endpoint.

    Returns None when this process won the claim (and must sync now), else the
    number of seconds until the sync is next due.
    """
    now = utcnow()
    async with ctx.sessions.begin() as session:
        result = await session.execute(
            update(Endpoint)
            .where(
                Endpoint.id == endpoint_id,
                Endpoint.enabled,
                or_(Endpoint.next_sync_at.is_(None), Endpoint.next_sync_at <= now),
            )
            .values(next_sync_at=now + timedelta(seconds=interval))
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) == 1:
            return None
        due = await session.scalar(select(Endpoint.next_sync_at).where(Endpoint.id == endpoint_id))
    if due is None:
        return interval
    return max(0.0, (due - utcnow()).total_seconds())


async def _sync_quietly(ctx: Context, endpoint_id: int) -> None:
    try:
        await sync_endpoint(ctx, endpoint_id, trigger="interval")
    except RelaygateError as exc:
        # Deleted or disabled between the claim and the sync: nothing to do.
        log.debug("scheduled sync of endpoint %d skipped: %s", endpoint_id, exc.message)
    except Exception:
        log.exception("scheduled sync of endpoint %d crashed", endpoint_id)


async def run_scheduler(ctx: Context, stop: asyncio.Event) -> None:
    """Claim and start due syncs until ``stop`` is set. Which endpoints exist comes from
    the snapshot; the claims are the only queries, about one per endpoint per interval."""
    running: dict[int, asyncio.Task[None]] = {}
    next_check: dict[int, float] = {}
    try:
        while not stop.is_set():
            for endpoint in ctx.snapshots.current.endpoints:
                now = time.monotonic()
                task = running.get(endpoint.id)
                if (task is not None and not task.done()) or now < next_check.get(endpoint.id, 0):
                    continue
                interval = endpoint.sync_interval or ctx.settings.sync_interval
                try:
                    wait = await claim(ctx, endpoint.id, interval)
                except Exception:
                    log.exception("could not claim the sync of endpoint %r", endpoint.name)
                    wait = interval
                if wait is None:
                    running[endpoint.id] = asyncio.create_task(_sync_quietly(ctx, endpoint.id))
                    wait = interval
                next_check[endpoint.id] = now + wait
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_SECONDS)
    finally:
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
