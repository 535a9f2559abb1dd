"""The server's background loops: follow configuration changes into the snapshot, and
write API keys' last use. Both run off the request path."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from relaygate.changes import read_version
from relaygate.context import Context
from relaygate.errors import ConfigError
from relaygate.services.api_keys import KeyActivity

log = logging.getLogger(__name__)


async def _sleep_until(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def follow_changes(ctx: Context, stop: asyncio.Event) -> None:
    """Rebuild the snapshot whenever the change counter moves (a change made by the CLI,
    another process, or this one); checks every ``change_poll_interval`` seconds."""
    while not stop.is_set():
        await _sleep_until(stop, ctx.settings.change_poll_interval)
        try:
            async with ctx.sessions() as session:
                version = await read_version(session)
            if version != ctx.snapshots.current.version:
                await ctx.snapshots.refresh()
        except ConfigError as exc:
            log.error("%s", exc.message)
        except Exception:
            log.exception("could not check for configuration changes; retrying")


async def flush_key_activity(ctx: Context, activity: KeyActivity, stop: asyncio.Event) -> None:
    """Write keys' ``last_used_at`` every ``key_usage_flush_interval`` seconds, and once
    more when stopping."""
    while not stop.is_set():
        await _sleep_until(stop, ctx.settings.key_usage_flush_interval)
        try:
            await activity.flush(ctx)
        except Exception:
            log.exception("could not write API keys' last use; will retry")
    await activity.flush(ctx)
