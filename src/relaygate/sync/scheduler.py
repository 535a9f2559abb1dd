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
import logging
from datetime import timedelta

from sqlalchemy import or_, select, update

from relaygate.context import Context
from relaygate.db.tables import Endpoint, utcnow
from relaygate.errors import Conflict, NotFound, RelaygateError
from relaygate.pauses import wait_any
from relaygate.sync.service import sync_endpoint

log = logging.getLogger(__name__)
TICK_SECONDS = 0.25
MAX_WAIT = 60.0
"""The longest the scheduler sleeps without reading the schedule again."""


async def due(ctx: Context) -> tuple[list[tuple[int, float]], float]:
    """The enabled endpoints whose sync is due now, as (id, interval in seconds), and
    the seconds until the next of the others is due (:data:`MAX_WAIT` at most)."""
    now = utcnow()
    found: list[tuple[int, float]] = []
    wait = MAX_WAIT
    async with ctx.sessions() as session:
        rows = await session.execute(
            select(Endpoint.id, Endpoint.sync_interval, Endpoint.next_sync_at).where(
                Endpoint.enabled
            )
        )
        for endpoint_id, interval, next_at in rows:
            if next_at is None or next_at <= now:
                found.append((endpoint_id, interval or ctx.settings.sync_interval))
            else:
                wait = min(wait, (next_at - now).total_seconds())
    return found, wait


async def claim(ctx: Context, endpoint_id: int, interval: float) -> bool:
    """Try to claim this interval's sync of an endpoint: True when this process won the
    claim (and must sync now), having moved its ``next_sync_at`` one ``interval`` ahead."""
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
        return getattr(result, "rowcount", 0) == 1


async def _sync_quietly(ctx: Context, endpoint_id: int) -> None:
    try:
        await sync_endpoint(ctx, endpoint_id, trigger="interval")
    except (NotFound, Conflict) as exc:
        # Deleted or disabled between the claim and the sync: nothing to do.
        log.debug("scheduled sync of endpoint %d skipped: %s", endpoint_id, exc.message)
    except RelaygateError as exc:  # a ConfigError above all: the operator must hear it
        log.error("scheduled sync of endpoint %d failed: %s", endpoint_id, exc.message)
    except Exception:
        log.exception("scheduled sync of endpoint %d crashed", endpoint_id)


async def run_scheduler(ctx: Context, stop: asyncio.Event) -> None:
    """Claim and start due syncs until ``stop`` is set. The schedule is the database's
    alone: the scheduler reads when each endpoint is next due, sleeps until the first of
    them (or until a change to some endpoint is applied), and one claim each decides
    which process syncs it."""
    running: dict[int, asyncio.Task[None]] = {}
    changed = ctx.snapshots.endpoints_changed
    try:
        while not stop.is_set():
            changed.clear()
            try:
                found, wait = await due(ctx)
            except Exception:
                log.exception("could not read the sync schedule; retrying")
                found, wait = [], TICK_SECONDS
            started = False
            for endpoint_id, interval in found:
                task = running.get(endpoint_id)
                if task is not None and not task.done():
                    wait = min(wait, TICK_SECONDS)  # due again while still syncing
                    continue
                try:
                    won = await claim(ctx, endpoint_id, interval)
                except Exception:
                    log.exception("could not claim the sync of endpoint %d", endpoint_id)
                    wait = min(wait, TICK_SECONDS)
                    continue
                if won:
                    running[endpoint_id] = asyncio.create_task(_sync_quietly(ctx, endpoint_id))
                started = True  # claimed here or elsewhere: read when it is next due
            for endpoint_id in [i for i, task in running.items() if task.done()]:
                del running[endpoint_id]
            if started:
                continue
            await wait_any(stop, changed, wait)
    finally:
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
