"""The periodic sync: each enabled endpoint is synced every ``sync_interval`` seconds
(its own, or the global default), starting at process start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from relaygate.context import Context
from relaygate.errors import RelaygateError
from relaygate.sync.service import sync_endpoint

log = logging.getLogger(__name__)
TICK_SECONDS = 0.5


async def _sync_quietly(ctx: Context, endpoint_id: int) -> None:
    try:
        await sync_endpoint(ctx, endpoint_id, trigger="interval")
    except RelaygateError as exc:
        # Deleted or disabled between the tick and the sync: nothing to do.
        log.debug("scheduled sync of endpoint %d skipped: %s", endpoint_id, exc.message)
    except Exception:
        log.exception("scheduled sync of endpoint %d crashed", endpoint_id)


async def run_scheduler(ctx: Context, stop: asyncio.Event) -> None:
    """Start due syncs until ``stop`` is set; endpoints come from the current snapshot,
    so scheduling adds no database query."""
    running: dict[int, asyncio.Task[None]] = {}
    try:
        while not stop.is_set():
            now = time.monotonic()
            for endpoint in ctx.snapshots.current.endpoints:
                task = running.get(endpoint.id)
                if task is not None and not task.done():
                    continue
                interval = endpoint.sync_interval or ctx.settings.sync_interval
                last = ctx.sync_state.last_run.get(endpoint.id)
                if last is None or now - last >= interval:
                    running[endpoint.id] = asyncio.create_task(_sync_quietly(ctx, endpoint.id))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_SECONDS)
    finally:
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
