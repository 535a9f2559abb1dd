"""Claims and outcome writes of batch requests, driven step by step on the gateway's
own database (its runner never started): which rows a claim takes, in what order, and
what an outcome written together with others does to its batch."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from relaygate.batches.outcomes import OutcomeWriter
from relaygate.batches.prepare import prepare
from relaygate.batches.steps import (
    Claimed,
    Outcome,
    claim_batch,
    claim_requests,
    expire_due,
    retry_later,
)
from relaygate.db.tables import Batch, BatchRequest
from tests.batches.conftest import BatchUpstream, chat_lines, end_window, upload
from tests.support.gateway import Gateway


def started_batch(gateway: Gateway, lines: int) -> str:
    """A batch of ``lines`` chat requests, prepared (``in_progress``) by the test itself;
    the gateway's runner never looks at it."""
    gateway.app.state.batch_runner = None
    client = gateway.openai()
    batch = client.batches.create(
        input_file_id=upload(client, chat_lines(lines)),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )

    async def run_prepare() -> None:
        assert await claim_batch(gateway.ctx, batch.id, "validating", "validating")
        await prepare(gateway.ctx, batch.id)

    gateway.on_loop(run_prepare)
    assert client.batches.retrieve(batch.id).status == "in_progress"
    return batch.id


def set_rows(gateway: Gateway, ids: list[int], **values: Any) -> None:
    async def write() -> None:
        async with gateway.ctx.sessions.begin() as session:
            await session.execute(
                update(BatchRequest).where(BatchRequest.id.in_(ids)).values(**values)
            )

    gateway.on_loop(write)


def request_states(gateway: Gateway) -> dict[int, str]:
    """Every batch request's state, by id."""

    async def read() -> dict[int, str]:
        async with gateway.ctx.sessions() as session:
            rows = await session.execute(select(BatchRequest.id, BatchRequest.state))
            return dict(rows.all())  # type: ignore[arg-type]

    return gateway.on_loop(read)


def test_a_claim_takes_lapsed_claims_first_then_the_oldest_due_queued_rows(
    tmp_path: Any, upstream: BatchUpstream
) -> None:
    """Rows running under a claim that ran out are claimed before queued ones; queued
    rows come oldest first, a row whose retry is not yet due is passed over, and rows
    this process is sending (``busy``) are never taken, however late their claim."""
    gateway = Gateway(tmp_path, batch_poll_interval=3600).start()
    gateway.add_endpoint("local", upstream.url)
    try:
        started_batch(gateway, 30)
        ctx = gateway.ctx
        first = gateway.on_loop(lambda: claim_requests(ctx, 5))
        ids = [c.id for c in first]
        assert ids == sorted(ids) and len(ids) == 5
        assert all(c.attempt == 1 for c in first)
        later = datetime.now(UTC) + timedelta(hours=1)
        lapsed = datetime.now(UTC) - timedelta(seconds=1)
        # The first two ran out of their claim; the next queued one waits for a retry.
        set_rows(gateway, ids[:2], claimed_until=lapsed)
        set_rows(gateway, [ids[4] + 1], next_at=later)
        second = gateway.on_loop(lambda: claim_requests(ctx, 4, busy=[ids[0]]))
        assert [c.id for c in second] == [ids[1], ids[4] + 2, ids[4] + 3, ids[4] + 4]
        assert second[0].attempt == 2  # sent a second time: its first send was lost

        state = request_states(gateway)
        assert state[ids[4] + 1] == "queued"
        assert sum(1 for s in state.values() if s == "running") == 8
    finally:
        gateway.stop()


def test_outcomes_written_together_count_only_the_rows_still_held(
    tmp_path: Any, upstream: BatchUpstream
) -> None:
    """Outcomes handed to the writer at once are written in one go: each row gets its
    own outcome, the batch's counts and tokens add up those written, and a row another
    replica took over meanwhile keeps that replica's claim (its write reports False)."""
    gateway = Gateway(tmp_path, batch_poll_interval=3600).start()
    gateway.add_endpoint("local", upstream.url)
    try:
        batch_id = started_batch(gateway, 6)
        ctx = gateway.ctx
        claimed: list[Claimed] = gateway.on_loop(lambda: claim_requests(ctx, 6))
        assert len(claimed) == 6
        set_rows(gateway, [claimed[5].id], claimed_by="another-replica")
        answer = Outcome(
            status_code=200,
            request_id="r",
            response='{"ok": true}',
            prompt_tokens=7,
            completion_tokens=3,
            cost=0.5,
        )
        failure = Outcome(error_code="upstream_error", error_message="no", prompt_tokens=1)

        async def write_all() -> list[bool]:
            writer = OutcomeWriter(ctx)
            stop = asyncio.Event()
            running = asyncio.create_task(writer.run(stop))
            outcomes = [answer, answer, answer, failure, failure, answer]
            written = await asyncio.gather(
                *(writer.write(c, o) for c, o in zip(claimed, outcomes, strict=True))
            )
            stop.set()
            await running
            return written

        assert gateway.on_loop(write_all) == [True, True, True, True, True, False]

        async def read() -> tuple[Batch, dict[int, tuple[str, str | None]]]:
            async with ctx.sessions() as session:
                batch = await session.get(Batch, batch_id)
                rows = await session.execute(
                    select(BatchRequest.id, BatchRequest.state, BatchRequest.claimed_by)
                )
                return batch, {i: (s, by) for i, s, by in rows}  # type: ignore[return-value]

        batch, rows = gateway.on_loop(read)
        assert (batch.completed, batch.failed) == (3, 2)
        assert (batch.prompt_tokens, batch.completion_tokens) == (3 * 7 + 2, 3 * 3)
        assert batch.cost == 1.5
        assert [rows[c.id][0] for c in claimed] == ["done"] * 3 + ["failed"] * 2 + ["running"]
        assert rows[claimed[5].id][1] == "another-replica"
    finally:
        gateway.stop()


def test_a_batch_past_its_window_is_never_claimed_and_its_idle_requests_expire(
    tmp_path: Any, upstream: BatchUpstream
) -> None:
    """Past its window no request of a batch is claimed again, not even one a withdrawn
    send gave back: each step used to find them claimed again and withdrawn again, so
    the batch could stay in progress for good. What is queued, or running under a claim
    that ran out, ends ``expired``; a request still being sent keeps its claim, even
    one this process sends (``busy``) whose renewal is late."""
    gateway = Gateway(tmp_path, batch_poll_interval=3600).start()
    gateway.add_endpoint("local", upstream.url)
    try:
        batch_id = started_batch(gateway, 6)
        ctx = gateway.ctx
        claimed: list[Claimed] = gateway.on_loop(lambda: claim_requests(ctx, 4))
        ids = [c.id for c in claimed]
        lapsed = datetime.now(UTC) - timedelta(seconds=1)
        set_rows(gateway, [ids[0], ids[3]], claimed_until=lapsed)

        end_window(gateway, batch_id)
        # The send of the second one is withdrawn: it is given back, queued.
        gateway.on_loop(lambda: retry_later(ctx, claimed[1], 0, attempted=False))
        assert gateway.on_loop(lambda: claim_requests(ctx, 10)) == []
        gateway.on_loop(lambda: expire_due(ctx, busy=[ids[3]]))

        state = request_states(gateway)
        assert [state[i] for i in ids] == ["expired", "expired", "running", "running"]
        assert sorted(s for i, s in state.items() if i not in ids) == ["expired", "expired"]
    finally:
        gateway.stop()
