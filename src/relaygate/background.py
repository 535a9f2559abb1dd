"""The server's background loops: follow configuration changes into the snapshot, write
API keys' last use, and watch the event loop's lag. All run off the request path."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from relaygate.changes import CHANNEL
from relaygate.context import Context
from relaygate.errors import ConfigError
from relaygate.metrics import PUBLISH_SECONDS, Metrics
from relaygate.pauses import pause, wait_any
from relaygate.services.api_keys import KeyActivity

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)


class ChangeListener:
    """PostgreSQL ``LISTEN`` on the change channel, on a connection of its own: a
    notification wakes :func:`follow_changes` at once. Reconnects when the
    connection drops; the periodic check covers the gap."""

    def __init__(self, ctx: Context, wake: asyncio.Event):
        self._dsn = make_url(ctx.settings.database_url).set(drivername="postgresql")
        self._wake = wake
        self._connection: asyncpg.Connection | None = None

    async def ensure(self) -> None:
        """Connect and listen, unless already listening; failures are logged, not raised."""
        if self._connection is not None and not self._connection.is_closed():
            return
        # Imported here, as SQLAlchemy imports its driver: the ``postgres`` extra, there
        # on PostgreSQL (checked when the engine was made).
        import asyncpg

        try:
            self._connection = await asyncpg.connect(
                self._dsn.render_as_string(hide_password=False), timeout=5
            )
            await self._connection.add_listener(CHANNEL, self._notified)
        except Exception as exc:  # any failure: the periodic check still runs
            log.warning("cannot listen for changes (%s); checking periodically", exc)
            self._connection = None

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def close(self) -> None:
        if self._connection is not None and not self._connection.is_closed():
            await self._connection.close()


async def follow_changes(ctx: Context, stop: asyncio.Event) -> None:
    """Apply to the snapshot the changes other processes (another replica, the CLI) log:
    at once on a PostgreSQL notification, and by a cheap check of the change counter
    every ``change_poll_interval`` seconds everywhere."""
    wake = asyncio.Event()
    listener = ChangeListener(ctx, wake) if ctx.engine.dialect.name == "postgresql" else None
    try:
        while not stop.is_set():
            if listener is not None:
                await listener.ensure()
            await wait_any(stop, wake, ctx.settings.change_poll_interval)
            wake.clear()
            await _check(ctx)
    finally:
        if listener is not None:
            await listener.close()


async def _check(ctx: Context) -> None:
    """Apply the changes other processes logged; errors are logged, not raised."""
    try:
        await ctx.snapshots.catch_up()
    except ConfigError as exc:
        log.error("%s", exc.message)
    except Exception:
        log.exception("could not check for configuration changes; retrying")


LAG_SAMPLE_SECONDS = 0.05


async def watch_loop_lag(metrics: Metrics, stop: asyncio.Event) -> None:
    """Sample the event loop's lag every :data:`LAG_SAMPLE_SECONDS`: how much later than
    asked a timer fires is how long the steps before it held the loop. Observed into
    ``relaygate_event_loop_lag_seconds``."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        asked = loop.time() + LAG_SAMPLE_SECONDS
        await pause(stop, LAG_SAMPLE_SECONDS)
        metrics.loop_lag.observe(max(0.0, loop.time() - asked))


async def publish_metrics(metrics: Metrics, stop: asyncio.Event) -> None:
    """Write the gauges read from functions every :data:`PUBLISH_SECONDS`, for the other
    workers' scrapes (multiprocess mode only: see :mod:`relaygate.metrics`)."""
    while not stop.is_set():
        metrics.publish()
        await pause(stop, PUBLISH_SECONDS)


async def flush_key_activity(ctx: Context, activity: KeyActivity, stop: asyncio.Event) -> None:
    """Write keys' ``last_used_at`` every ``key_usage_flush_interval`` seconds, and once
    more when stopping."""
    while not stop.is_set():
        await pause(stop, ctx.settings.key_usage_flush_interval)
        try:
            await activity.flush(ctx)
        except Exception:
            log.exception("could not write API keys' last use; will retry")
    await activity.flush(ctx)
