"""The loop that runs batches in one process: it steps batches (prepare, expire,
finalize), claims queued requests while there is room, and sends each through the
proxy (:meth:`relaygate.proxy.Proxy.serve_batch`), so a batch request is routed,
checked, failed over, rate limited, budgeted and accounted for as a live one.

Batch requests yield to live traffic: none is started while the live requests in
flight are at ``batch_yield_at`` of ``max_concurrent_requests``; they never take the
live path's slots, and each endpoint gets at most its ``batch_concurrency`` at once.
An answer of 429 or 5xx (or no answer) is retried with backoff, ``batch_max_attempts``
times in all; its endpoint's ``Retry-After`` is honoured up to ``max_cooldown_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import orjson

from relaygate.batches.finalize import finalize
from relaygate.batches.outcomes import OutcomeWriter
from relaygate.batches.output import response_text
from relaygate.batches.prepare import prepare
from relaygate.batches.steps import (
    Claimed,
    Outcome,
    batches_to_step,
    claim_batch,
    claim_requests,
    endpoint_limits,
    expire_due,
    key_hash_of,
    new_request_id,
    queued_count,
    renew,
    retry_later,
    withdrawn,
)
from relaygate.context import Context
from relaygate.db.tables import Batch
from relaygate.metrics import Metrics
from relaygate.pauses import pause, wait_any
from relaygate.proxy import Proxy
from relaygate.proxy.batched import Answer, EndpointSlots, Ticket
from relaygate.snapshot import Principal

log = logging.getLogger(__name__)
CLAIM_AT_ONCE = 64
"""Most requests claimed in one transaction."""
QUEUED_COUNT_SECONDS = 10.0
"""Seconds between counts of the queued requests (for the metric)."""


class _BatchInfo:
    __slots__ = ("endpoint", "input_file_id", "key_hash", "key_id")

    def __init__(self, endpoint: str, input_file_id: str, key_id: int) -> None:
        self.endpoint = endpoint
        self.input_file_id = input_file_id
        self.key_id = key_id
        self.key_hash: str | None = None


class BatchRunner:
    """Runs batch work for this process until :meth:`run`'s ``stop``; :meth:`wake`
    makes it look for work at once (a batch was created or cancelled here)."""

    def __init__(self, ctx: Context, proxy: Proxy, metrics: Metrics) -> None:
        self._ctx = ctx
        self._proxy = proxy
        self._metrics = metrics
        settings = ctx.settings
        self.slots = EndpointSlots(settings.batch_concurrency)
        self._yield_at = settings.max_concurrent_requests * settings.batch_yield_at
        self._running: dict[int, asyncio.Task[None]] = {}
        self._batches: dict[str, _BatchInfo] = {}
        self._wake = asyncio.Event()
        self._step_now = False
        self._counted = 0.0
        self._turn = 0
        self._writer = OutcomeWriter(ctx)
        metrics.track(metrics.batch_running, lambda: len(self._running))

    def wake(self) -> None:
        """Look for work now (and for batches cancelled here)."""
        self._wake.set()
        self._step_now = True

    async def run(self, stop: asyncio.Event) -> None:
        """Step batches and send their requests until ``stop``; then cancel what is in
        flight and give its requests back (queued, their attempt not counted)."""
        settings = self._ctx.settings
        stepped = 0.0
        renewer = asyncio.create_task(self._renew_claims(stop))
        writer = asyncio.create_task(self._writer.run(stop))
        try:
            while not stop.is_set():
                self._wake.clear()
                if self._step_now or time.monotonic() - stepped >= settings.batch_poll_interval:
                    self._step_now = False
                    await self._guarded(self._step_batches())
                    stepped = time.monotonic()
                claimed = await self._claim()
                if claimed:
                    continue
                await wait_any(stop, self._wake, settings.batch_poll_interval)
        finally:
            tasks = list(self._running.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            renewer.cancel()
            if not stop.is_set():  # cancelled: else the writer ends its write, then stops
                writer.cancel()
            await asyncio.gather(renewer, writer, return_exceptions=True)
            # The answers in hand of the requests just cancelled (a failure is logged).
            await self._writer.flush()

    async def _renew_claims(self, stop: asyncio.Event) -> None:
        """Renew the claims on the requests in flight every third of a lease, apart from
        the loop (a long prepare or finalize there never lets them lapse)."""
        every = self._ctx.settings.batch_lease_seconds / 3
        while not stop.is_set():
            await pause(stop, every)
            await self._guarded(renew(self._ctx, list(self._running)))

    @staticmethod
    async def _guarded(step: object) -> None:
        try:
            await step  # type: ignore[misc]
        except Exception:
            log.exception("a batch step failed; it is tried again shortly")

    async def _claim(self) -> int:
        """Claim and start requests while there is room; the number started."""
        most = self._ctx.settings.batch_max_in_flight
        room = most - len(self._running)
        # Claimed a few at a time, not one per request done: a claim is a transaction.
        if room < max(1, most // 4) and self._running:
            return 0
        if room <= 0 or self._proxy.in_flight >= self._yield_at:
            return 0
        try:
            self._turn += 1
            claimed = await claim_requests(
                self._ctx, min(room, CLAIM_AT_ONCE), busy=list(self._running), turn=self._turn
            )
        except Exception:
            log.exception("could not claim batch requests; trying again shortly")
            return 0
        for item in claimed:
            if item.id in self._running:  # never two sends of one request here
                continue
            task = asyncio.create_task(self._send(item))
            self._running[item.id] = task
            task.add_done_callback(self._done_callback(item.id))
        return len(claimed)

    def _done_callback(self, request_id: int) -> Callable[[asyncio.Task[None]], None]:
        def done(_: asyncio.Task[None]) -> None:
            self._running.pop(request_id, None)
            self._wake.set()

        return done

    async def _step_batches(self) -> None:
        ctx = self._ctx
        await self.slots.set_limits(await endpoint_limits(ctx))
        now = time.monotonic()
        if now - self._counted >= QUEUED_COUNT_SECONDS:
            self._counted = now
            self._metrics.batch_queued.set(await queued_count(ctx))
        # Never one this process still sends or writes, however late its renewal.
        await expire_due(ctx, busy=[*self._running, *self._writer.held()])
        stopped, ended = await withdrawn(ctx, list(self._batches))
        await self.slots.withdraw(stopped)
        for batch_id in ended:  # no request of it is left to send
            self._batches.pop(batch_id, None)
        validating, ready = await batches_to_step(ctx)
        for batch_id in validating:
            if await claim_batch(ctx, batch_id, "validating", "validating"):
                await prepare(ctx, batch_id)
                self._wake.set()
        for batch_id, status in ready:
            if await claim_batch(ctx, batch_id, status, "finalizing"):
                await finalize(ctx, batch_id)
                self._batches.pop(batch_id, None)

    async def _info(self, batch_id: str) -> _BatchInfo | None:
        info = self._batches.get(batch_id)
        if info is None:
            async with self._ctx.sessions() as session:
                row = await session.get(Batch, batch_id)
            if row is None:
                return None
            info = _BatchInfo(row.endpoint, row.input_file_id, row.key_id)
            info.key_hash = await key_hash_of(self._ctx, row.key_id)
            self._batches[batch_id] = info
        return info

    def _principal(self, info: _BatchInfo) -> Principal | None:
        """The principal of the batch's API key, None when it is revoked or expired."""
        if info.key_hash is None:
            return None
        principal = self._ctx.snapshots.current.keys.get(info.key_hash)
        if principal is None or (
            principal.expires_at is not None and principal.expires_at <= time.time()
        ):
            return None
        return principal

    async def _send(self, item: Claimed) -> None:
        ctx = self._ctx
        metrics = self._metrics
        answered = False
        try:
            info = await self._info(item.batch_id)
            if info is None:
                return
            principal = self._principal(info)
            if principal is None:
                await self._end(
                    item,
                    Outcome(
                        error_code="invalid_api_key",
                        error_message="the API key that created this batch was revoked "
                        "or has expired",
                    ),
                )
                return
            try:
                line = await ctx.files.read_range(info.input_file_id, item.offset, item.length)
                body = orjson.dumps(orjson.loads(line)["body"])
            except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
                await self._end(
                    item,
                    Outcome(error_code="file_not_found", error_message="the input file is gone"),
                )
                return
            answer = await self._proxy.serve_batch(
                principal,
                info.endpoint,
                body,
                new_request_id(),
                Ticket(self.slots, item.batch_id),
                ctx.settings.batch_max_response_bytes,
            )
            answered = answer.sent
            if answer.withdrawn:  # its batch ended while it waited: written as it ended
                await retry_later(ctx, item, 0, attempted=False)
                return
            if _held_back(answer):  # the caller's rate limits: wait, it costs no attempt
                metrics.batch_requests.labels("retried").inc()
                wait = self._backoff(1, answer.retry_after)
                await retry_later(ctx, item, wait, attempted=False)
                return
            if _retryable(answer) and item.attempt < ctx.settings.batch_max_attempts:
                metrics.batch_requests.labels("retried").inc()
                await retry_later(ctx, item, self._backoff(item.attempt, answer.retry_after))
                return
            await self._end(item, _outcome(answer))
        except asyncio.CancelledError:
            if not self._writer.holds(item.id):  # else its outcome is written at the stop
                with contextlib.suppress(Exception):
                    await asyncio.shield(retry_later(ctx, item, 0, attempted=False))
            raise
        except Exception:
            log.exception("batch request %d failed unexpectedly", item.id)
            if answered:  # left running: once its claim runs out it is sent again
                return
            with contextlib.suppress(Exception):
                if item.attempt < ctx.settings.batch_max_attempts:
                    await retry_later(ctx, item, self._backoff(item.attempt, None))
                else:
                    await self._end(
                        item,
                        Outcome(
                            error_code="internal_error",
                            error_message="relaygate could not send this request; see its log",
                        ),
                    )

    async def _end(self, item: Claimed, outcome: Outcome) -> None:
        """Write ``item``'s outcome (with others known at the same moment)."""
        if await self._writer.write(item, outcome):
            self._metrics.batch_requests.labels(
                "completed" if outcome.succeeded else "failed"
            ).inc()

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        settings = self._ctx.settings
        wait: float = settings.batch_retry_seconds * 2.0 ** (attempt - 1)
        if retry_after is not None:
            wait = max(wait, min(retry_after, settings.max_cooldown_seconds))
        return min(wait, settings.max_cooldown_seconds)


def _held_back(answer: Answer) -> bool:
    """Whether relaygate itself held the request back for the caller's rate limits or
    concurrency (not sent: retried without counting an attempt)."""
    return (
        not answer.sent
        and answer.status == 429
        and answer.code in ("rate_limit_exceeded", "concurrency_limit_exceeded")
    )


def _retryable(answer: Answer) -> bool:
    """Whether to send again: a 429 or 5xx, but for a spent budget (final at once)."""
    if not answer.sent and answer.code == "budget_exceeded":
        return False
    return answer.status == 429 or answer.status >= 500


def _outcome(answer: Answer) -> Outcome:
    if answer.too_large:
        return Outcome(
            error_code="response_too_large",
            error_message="the answer was larger than batch_max_response_bytes",
            prompt_tokens=answer.prompt_tokens or 0,
            completion_tokens=answer.completion_tokens or 0,
            cost=answer.cost or 0.0,
        )
    return Outcome(
        status_code=answer.status,
        request_id=answer.request_id,
        response=response_text(answer.body),
        prompt_tokens=answer.prompt_tokens or 0,
        completion_tokens=answer.completion_tokens or 0,
        cost=answer.cost or 0.0,
    )
