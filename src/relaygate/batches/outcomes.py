"""Batch outcomes written together: each request's outcome is handed to one
:class:`OutcomeWriter`, which writes every outcome waiting at that moment, with the
counts, tokens and cost of their batches, in one transaction. One transaction per
request made a batch request cost about seven live ones in CPU, and its many writers
queued behind SQLite's single write lock ("database is locked")."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, update

from relaygate.batches.steps import Claimed, Outcome
from relaygate.context import Context
from relaygate.db.tables import Batch, BatchRequest
from relaygate.pauses import wait_any

log = logging.getLogger(__name__)
WRITE_AT_ONCE = 256
"""Most outcomes written in one transaction."""


class OutcomeWriter:
    """Writes the outcomes handed to :meth:`write` while :meth:`run` runs, all those
    waiting in one transaction; a transaction that fails is tried again with backoff
    for up to half a lease (``batch_lease_seconds``), so an answer in hand is not sent
    again for a write that failed once."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._waiting: list[tuple[Claimed, Outcome, asyncio.Future[bool]]] = []
        self._ready = asyncio.Event()
        self._held: set[int] = set()
        # Built once: a statement built per request was much of a batch request's CPU.
        self._finish = (
            update(BatchRequest)
            .where(
                BatchRequest.id == bindparam("p_id"),
                BatchRequest.claimed_by == bindparam("p_claimant"),
                BatchRequest.state == "running",
            )
            .values(
                state=bindparam("p_state"),
                status_code=bindparam("p_status_code"),
                request_id=bindparam("p_request_id"),
                response=bindparam("p_response"),
                error_code=bindparam("p_error_code"),
                error_message=bindparam("p_error_message"),
                claimed_until=None,
            )
            .execution_options(synchronize_session=False)
        )
        self._count = (
            update(Batch)
            .where(Batch.id == bindparam("p_batch"))
            .values(
                {
                    Batch.completed: Batch.completed + bindparam("p_completed"),
                    Batch.failed: Batch.failed + bindparam("p_failed"),
                    Batch.prompt_tokens: Batch.prompt_tokens + bindparam("p_prompt"),
                    Batch.completion_tokens: Batch.completion_tokens + bindparam("p_completion"),
                    Batch.cost: Batch.cost + bindparam("p_cost"),
                }
            )
            .execution_options(synchronize_session=False)
        )

    async def write(self, claimed: Claimed, outcome: Outcome) -> bool:
        """Write ``claimed``'s outcome; False when this replica no longer held it
        (another took it over: its outcome wins). Raises what the last try of the
        transaction raised. Cancelling the caller does not withdraw the outcome."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((claimed, outcome, done))
        self._held.add(claimed.id)
        self._ready.set()
        return await asyncio.shield(done)

    def held(self) -> frozenset[int]:
        """The batch requests whose outcome is waiting to be written or being written."""
        return frozenset(self._held)

    def holds(self, request_id: int) -> bool:
        """Whether the outcome of batch request ``request_id`` is waiting to be written
        or being written."""
        return request_id in self._held

    async def run(self, stop: asyncio.Event) -> None:
        """Write outcomes as they come until ``stop``, then those still waiting."""
        while not stop.is_set():
            await wait_any(stop, self._ready, None)
            await self.flush()

    async def flush(self) -> None:
        """Write every outcome waiting now, :data:`WRITE_AT_ONCE` per transaction."""
        while self._waiting:
            self._ready.clear()
            taken, self._waiting = self._waiting[:WRITE_AT_ONCE], self._waiting[WRITE_AT_ONCE:]
            try:
                written = await self._write_retrying([(c, o) for c, o, _ in taken])
            except asyncio.CancelledError:
                self._waiting[:0] = taken  # for the last flush at the stop
                raise
            except Exception as exc:
                log.error(
                    "could not write %d batch outcomes (%s); their requests are sent again "
                    "once their claims run out",
                    len(taken),
                    exc,
                )
                for claimed, _, done in taken:
                    self._held.discard(claimed.id)
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (claimed, _, done), result in zip(taken, written, strict=True):
                self._held.discard(claimed.id)
                if not done.done():
                    done.set_result(result)

    async def _write_retrying(self, items: list[tuple[Claimed, Outcome]]) -> list[bool]:
        wait = 0.05
        deadline = time.monotonic() + self._ctx.settings.batch_lease_seconds / 2
        while True:
            try:
                return await self._write(items)
            except Exception as exc:
                if time.monotonic() + wait > deadline:
                    raise
                log.warning("could not write %d batch outcomes (%s); trying again", len(items), exc)
                await asyncio.sleep(wait)
                wait = min(wait * 2, 2.0)

    async def _write(self, items: Sequence[tuple[Claimed, Outcome]]) -> list[bool]:
        """Write ``items`` and count them in their batches in one transaction; whether
        each was still this replica's."""
        written: list[bool] = []
        counts: dict[str, dict[str, Any]] = {}
        async with self._ctx.sessions.begin() as session:
            for claimed, outcome in items:
                result = await session.execute(
                    self._finish,
                    {
                        "p_id": claimed.id,
                        "p_claimant": self._ctx.claimant,
                        "p_state": "done" if outcome.succeeded else "failed",
                        "p_status_code": outcome.status_code,
                        "p_request_id": outcome.request_id,
                        "p_response": outcome.response,
                        "p_error_code": outcome.error_code,
                        "p_error_message": outcome.error_message,
                    },
                )
                mine = getattr(result, "rowcount", 0) == 1
                written.append(mine)
                if not mine:
                    continue
                count = counts.setdefault(
                    claimed.batch_id,
                    {
                        "p_batch": claimed.batch_id,
                        "p_completed": 0,
                        "p_failed": 0,
                        "p_prompt": 0,
                        "p_completion": 0,
                        "p_cost": 0.0,
                    },
                )
                count["p_completed" if outcome.succeeded else "p_failed"] += 1
                count["p_prompt"] += outcome.prompt_tokens
                count["p_completion"] += outcome.completion_tokens
                count["p_cost"] += outcome.cost
            # In one order in every process: two writers counting into the same two
            # batches in opposite orders would deadlock on PostgreSQL.
            for batch_id in sorted(counts):
                await session.execute(self._count, counts[batch_id])
        return written
