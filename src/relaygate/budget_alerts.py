"""Budget alerts: a log line and a webhook call when a budget's spend crosses a threshold.

**When.** After each settlement :class:`relaygate.budgets.Budgets` tells
:meth:`BudgetAlerts.check` every budget's counts. Each threshold of the
``budget_alert_thresholds`` setting (fractions of the limit, default 0.8 and 1.0) that the
spend has reached alerts once per budget and period: one settlement that crosses two
thresholds alerts for both. A new period, or an admin's reset, starts a new counter and
so alerts again; raising a limit within a period does not alert again for a threshold
already alerted. A budget of 0 never alerts (it refuses every priced request).

**Off the request path.** :meth:`BudgetAlerts.check` only compares numbers and queues
an :class:`Alert` (at most :data:`MAX_QUEUED`; past that, alerts are dropped, counted as
``dropped`` and logged). :func:`run_budget_alerts`, a background task, takes them off
the queue one by one.

**Once across replicas.** Each alert is first claimed in the ``budget_alerts`` table
(``INSERT … ON CONFLICT DO NOTHING`` on the counter and threshold): only the process
whose insert took the row logs the alert (a warning) and sends it, so replicas, and a
process restarted within the period, do not repeat it.

**The webhook.** With ``budget_alert_webhook_url`` set, the claimed alert is POSTed
there as JSON::

    {
      "budget": "key:12",
      "subject": {"kind": "key", "id": 12, "name": "ci"},
      "threshold": 0.8,
      "spent": 8.0,
      "limit": 10.0,
      "period": "daily",
      "period_start": "2026-12-01T00:00:00Z",
      "resets_at": "2026-12-02T00:00:00Z",
      "time": "2026-12-01T12:00:00Z"
    }

``kind`` is ``key``, ``user`` or ``group``; ``spent`` and ``limit`` are in the currency
of the models' prices; ``period`` is ``daily``, ``weekly``, ``monthly`` or ``total``;
``period_start`` is when the budget's current window began (its period's start, or the
admin's last reset), ``resets_at`` when it ends (null for a ``total`` budget); ``time``
is when the spend was seen. Times are UTC, ISO 8601 to the second with ``Z``.

Any 2xx answer is success; its body is not read. A redirect is a failure and is never
followed. A connection error, a timeout (:data:`TIMEOUT_SECONDS`), a 408, a 429 or a 5xx
is retried, :data:`ATTEMPTS` times in all, after 1 s, 2 s, 4 s, 8 s; any other answer
fails at once. ``relaygate_budget_alerts_total{outcome}`` counts ``sent``, ``failed``
(after every attempt) and ``dropped`` (queue full, or left unsent at shutdown). Log
lines name the webhook by scheme and host only: its path may hold a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy import delete, select, tuple_

from relaygate.budget import Budget, Window, from_nanos
from relaygate.budget_stores import KEEP_ENDED, Count, Line
from relaygate.db.tables import BudgetAlert, BudgetCounter, utcnow
from relaygate.metrics import Metrics
from relaygate.pauses import pause

if TYPE_CHECKING:
    from relaygate.context import Context

log = logging.getLogger(__name__)

MAX_QUEUED = 1000
"""Alerts waiting to be sent; more are dropped."""
ATTEMPTS = 5
RETRY_DELAY = 1.0
"""Seconds before the first retry; each further retry waits twice as long."""
TIMEOUT_SECONDS = 10.0
MAX_ERROR_BYTES = 256
"""Of a failed answer's body, read for the log line; nothing more is ever read."""
RETRIED_STATUSES = frozenset({408, 429})
KEEP_ALERTS = timedelta(days=400)
"""How long a claimed alert's row is kept."""
PRUNE_BATCH = 500


@dataclass(frozen=True, slots=True)
class Alert:
    """One threshold a budget's spend reached: the ``budget``, its ``window``, the
    ``threshold`` (a fraction of the limit), the ``spent`` nano-units and ``time`` seen."""

    budget: Budget
    window: Window
    threshold: float
    spent: int
    time: datetime

    def body(self) -> dict[str, Any]:
        """The webhook's JSON body (see the module's docstring)."""
        budget = self.budget
        return {
            "budget": f"{budget.kind}:{budget.subject_id}",
            "subject": {"kind": budget.kind, "id": budget.subject_id, "name": budget.name},
            "threshold": self.threshold,
            "spent": from_nanos(self.spent),
            "limit": budget.limit,
            "period": budget.period,
            "period_start": iso(self.window.start),
            "resets_at": iso(self.window.end) if self.window.end is not None else None,
            "time": iso(self.time),
        }


def iso(moment: datetime) -> str:
    """``moment`` in UTC as ISO 8601 to the second with ``Z``: ``2026-12-01T00:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class _Seen:
    """How many of the thresholds one counter has queued, and when its window ends."""

    handled: int
    end: datetime | None


class BudgetAlerts:
    """Queues an :class:`Alert` the first time a counter's spend reaches each of
    ``thresholds`` (fractions, ascending) in this process; :func:`run_budget_alerts`
    sends them. ``max_queued`` bounds the queue."""

    def __init__(
        self, thresholds: Sequence[float], metrics: Metrics, *, max_queued: int = MAX_QUEUED
    ):
        self._thresholds = tuple(sorted(thresholds))
        self._metrics = metrics
        self.queue: asyncio.Queue[Alert] = asyncio.Queue(max_queued)
        self._seen: dict[str, _Seen] = {}
        self._dropping = False
        self._swept_at: datetime | None = None

    def check(self, line: Line, count: Count, now: datetime) -> None:
        """Queue an alert for each threshold ``count.spent`` has reached on ``line``'s
        counter and this process has not queued yet (``now``: when the spend was
        seen). Never blocks and never raises for a full queue: the alert is dropped."""
        budget = line.budget
        limit = budget.limit_nanos
        if limit <= 0 or not self._thresholds:
            return
        seen = self._seen.get(line.name)
        if seen is None:
            self._sweep(now)
            seen = self._seen[line.name] = _Seen(0, line.window.end)
        while seen.handled < len(self._thresholds):
            threshold = self._thresholds[seen.handled]
            if count.spent < round(threshold * limit):
                break
            seen.handled += 1
            self._put(Alert(budget, line.window, threshold, count.spent, now))

    def _put(self, alert: Alert) -> None:
        try:
            self.queue.put_nowait(alert)
        except asyncio.QueueFull:
            self._metrics.budget_alerts.labels("dropped").inc()
            if not self._dropping:
                self._dropping = True
                log.warning(
                    "budget alerts: %d are waiting to be sent; dropping new ones",
                    self.queue.qsize(),
                )
        else:
            self._dropping = False

    def _sweep(self, now: datetime) -> None:
        """Forget counters whose window ended a day ago or more (at most hourly)."""
        if self._swept_at is not None and now - self._swept_at < timedelta(hours=1):
            return
        self._swept_at = now
        ended = [
            name
            for name, seen in self._seen.items()
            if seen.end is not None and seen.end + timedelta(days=1) < now
        ]
        for name in ended:
            del self._seen[name]


class _Failed(Exception):
    """One attempt failed; ``retry`` says whether another may succeed."""

    def __init__(self, reason: str, *, retry: bool):
        super().__init__(reason)
        self.retry = retry


async def run_budget_alerts(
    ctx: Context,
    alerts: BudgetAlerts,
    stop: asyncio.Event,
    *,
    retry_delay: float = RETRY_DELAY,
    attempts: int = ATTEMPTS,
) -> None:
    """Claim, log and send ``alerts``' queued alerts one at a time until ``stop`` is
    set (``retry_delay``: seconds before the first retry, doubling; ``attempts`` in
    all). Never raises: failures are logged and counted. On stop, the alert being sent
    and those still queued are given up, logged and counted as ``dropped``."""
    webhook = ctx.settings.budget_alert_webhook_url
    stopping = asyncio.ensure_future(stop.wait())
    given_up = 0
    try:
        while not stop.is_set():
            taking = asyncio.ensure_future(alerts.queue.get())
            await asyncio.wait({taking, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not taking.done():
                taking.cancel()
                break
            alert = taking.result()
            handling = asyncio.ensure_future(
                _handle(ctx, alert, webhook, retry_delay=retry_delay, attempts=attempts)
            )
            await asyncio.wait({handling, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not handling.done():
                handling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await handling
                given_up = 1
                break
            if handling.exception() is not None:  # _handle catches everything; in case
                log.error("budget alerts: unexpected failure", exc_info=handling.exception())
    finally:
        stopping.cancel()
        left = given_up + alerts.queue.qsize()
        if left:
            ctx.metrics.budget_alerts.labels("dropped").inc(left)
            log.warning("budget alerts: stopping with %d unsent; giving them up", left)


async def _handle(
    ctx: Context, alert: Alert, webhook: str | None, *, retry_delay: float, attempts: int
) -> None:
    """Claim ``alert``, log it and send it to ``webhook`` (when set), retrying."""
    claimed: bool | None = None
    delay = retry_delay
    reason = ""
    for attempt in range(1, attempts + 1):
        try:
            if claimed is None:
                claimed = await claim(ctx, alert)
                if not claimed:
                    return  # another process (or this one before a restart) has it
                _log(alert)
            if webhook is None:
                return
            await _post(ctx.http, webhook, alert)
        except _Failed as exc:
            reason = str(exc)
            if not exc.retry:
                break
        except Exception as exc:  # the database failing the claim, or anything else
            reason = f"{type(exc).__name__}: {exc}"
        else:
            ctx.metrics.budget_alerts.labels("sent").inc()
            return
        if attempt < attempts:
            await asyncio.sleep(delay)
            delay *= 2
    ctx.metrics.budget_alerts.labels("failed").inc()
    where = _safe(webhook) if claimed else "the database"
    log.error(
        "budget alert for %s at %g of its budget could not be sent to %s: %s",
        alert.budget.label,
        alert.threshold,
        where,
        reason,
    )


async def claim(ctx: Context, alert: Alert) -> bool:
    """Record ``alert`` in ``budget_alerts``; True when this call took the row (no
    process had claimed the counter and threshold before). Raises what the database
    raises."""
    row = {"counter": alert.window.name, "threshold": alert.threshold, "created_at": utcnow()}
    # Imported on use, as SQLAlchemy loads a dialect: a server carries one dialect only.
    statement: Any
    if ctx.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        statement = postgresql.insert(BudgetAlert).on_conflict_do_nothing()
    else:
        from sqlalchemy.dialects import sqlite

        statement = sqlite.insert(BudgetAlert).on_conflict_do_nothing()
    async with ctx.engine.begin() as connection:
        result = await connection.execute(statement.values(row))
    return bool(result.rowcount == 1)


def _log(alert: Alert) -> None:
    budget = alert.budget
    log.warning(
        "budget alert: %s has spent %.6g of its %s budget of %g (threshold %g)",
        budget.label,
        from_nanos(alert.spent),
        budget.period,
        budget.limit,
        alert.threshold,
    )


async def _post(http: aiohttp.ClientSession, url: str, alert: Alert) -> None:
    """POST ``alert`` to ``url`` once; raises :class:`_Failed` unless it answers 2xx."""
    try:
        async with http.post(
            url,
            json=alert.body(),
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
        ) as response:
            if 200 <= response.status < 300:
                return
            head = await response.content.read(MAX_ERROR_BYTES)
            retry = response.status >= 500 or response.status in RETRIED_STATUSES
            text = head.decode("utf-8", "replace").strip()
            raise _Failed(f"HTTP {response.status} {text[:120]!r}", retry=retry)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _Failed(
            f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, retry=True
        ) from None


def _safe(url: str | None) -> str:
    """A webhook URL for log lines: scheme and host only (its path may hold a token)."""
    if url is None:
        return "nowhere"
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


# Retention.


async def prune_budget_rows(ctx: Context, now: datetime) -> tuple[int, int]:
    """Delete budget counters whose window ended more than :data:`KEEP_ENDED` before
    ``now`` (the budgets' clock), and alerts claimed more than :data:`KEEP_ALERTS` ago,
    :data:`PRUNE_BATCH` rows per transaction (writers are never held up for long);
    returns how many of each. Raises what the database raises."""
    counters = await _delete_in_batches(
        ctx, BudgetCounter, (BudgetCounter.name,), BudgetCounter.ends_at < now - KEEP_ENDED
    )
    alerts = await _delete_in_batches(
        ctx,
        BudgetAlert,
        (BudgetAlert.counter, BudgetAlert.threshold),
        BudgetAlert.created_at < utcnow() - KEEP_ALERTS,
    )
    return counters, alerts


async def _delete_in_batches(ctx: Context, table: Any, key: tuple[Any, ...], condition: Any) -> int:
    """Delete ``table``'s rows that meet ``condition``, by their ``key`` columns."""
    removed = 0
    while True:
        async with ctx.engine.begin() as connection:
            keys = (
                await connection.execute(select(*key).where(condition).limit(PRUNE_BATCH))
            ).all()
            if keys:
                await connection.execute(delete(table).where(tuple_(*key).in_(keys)))
        removed += len(keys)
        if len(keys) < PRUNE_BATCH:
            return removed
        await asyncio.sleep(0)


async def prune_budgets_once(ctx: Context) -> None:
    """One pass of :func:`prune_budget_rows`, logged; a failure is logged, never raised
    (the next pass retries)."""
    try:
        counters, alerts = await prune_budget_rows(ctx, ctx.budgets.now())
        if counters or alerts:
            log.info("deleted %d ended budget counters and %d old alerts", counters, alerts)
    except Exception:
        log.exception("could not delete old budget rows; will retry")


async def prune_budgets(ctx: Context, stop: asyncio.Event, every: float = 3600.0) -> None:
    """Run :func:`prune_budgets_once` every ``every`` seconds until ``stop`` (the server
    runs the first pass itself, before it is ready)."""
    while not stop.is_set():
        await pause(stop, every)
        if not stop.is_set():
            await prune_budgets_once(ctx)
