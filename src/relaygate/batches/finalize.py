"""Finalizing a batch: its output and error files written from its rows (a few MB of
answers at a time), then its final status, under this process's claim on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

from sqlalchemy import delete, func, select

from relaygate.batches.output import output_line
from relaygate.batches.steps import INSERT_ROWS, release_batch, renew_batch
from relaygate.context import Context
from relaygate.db.tables import Batch, BatchRequest, StoredFile, utcnow
from relaygate.errors import ClaimLost
from relaygate.services.files import new_file_id


async def finalize(ctx: Context, batch_id: str) -> None:
    """Write the output and error files of a batch this replica claimed (``finalizing``),
    then give it its final status (``completed``, ``expired`` or ``cancelled``) and
    delete its rows. Files written under a claim that was lost meanwhile are deleted."""
    async with ctx.sessions() as session:
        batch = await session.get(Batch, batch_id)
    if batch is None:
        return
    unsent = "cancelled" if batch.cancelling_at is not None else "expired"
    final = unsent
    outputs = {True: ctx.files.writer(new_file_id()), False: ctx.files.writer(new_file_id())}
    ids = {good: writer.file_id for good, writer in outputs.items()}
    written = {True: 0, False: 0}
    failed = 0
    try:
        async for row in _rows_of(ctx, batch_id):
            good, line = output_line(row, unsent)
            await outputs[good].write(line)
            written[good] += 1
            failed += not good and row.state in ("done", "failed")
        if batch.cancelling_at is None and not await _any_unsent(ctx, batch_id):
            final = "completed"
        for good in (True, False):
            if written[good]:
                await outputs[good].commit()
            else:
                await outputs[good].abort()
    except BaseException as exc:
        for writer in outputs.values():
            await writer.abort()
        if isinstance(exc, ClaimLost):
            return
        raise
    now = utcnow()
    kept = {good: ids[good] for good in (True, False) if written[good]}
    retention = ctx.settings.file_retention_days * 86400
    if batch.output_expires_seconds is not None:
        retention = min(retention, batch.output_expires_seconds)
    async with ctx.sessions.begin() as session:
        ended = {
            Batch.status: final,
            # As written: an answer that came in after its row was read is not.
            Batch.completed: written[True],
            Batch.failed: failed,
            Batch.output_file_id: kept.get(True),
            Batch.error_file_id: kept.get(False),
            _final_time(final): now,
        }
        if await release_batch(ctx, session, batch_id, "finalizing", ended):
            for good, file_id in kept.items():
                writer = outputs[good]
                session.add(
                    StoredFile(
                        id=file_id,
                        user_id=batch.user_id,
                        filename=f"{batch_id}_{'output' if good else 'error'}.jsonl",
                        purpose="batch_output",
                        bytes=writer.size,
                        sha256=writer.sha256,
                        created_at=now,
                        expires_at=now + timedelta(seconds=retention),
                    )
                )
            await session.execute(delete(BatchRequest).where(BatchRequest.batch_id == batch_id))
            return
    for file_id in kept.values():  # another replica finalized it meanwhile
        await ctx.files.delete(file_id)


PAGE_BYTES = 16 * 1024 * 1024
"""Bytes of answers read at once when a batch is finalized (with one row past it)."""


async def _rows_of(ctx: Context, batch_id: str) -> AsyncIterator[BatchRequest]:
    """The rows of a batch being finalized, in input order, read a few at a time (at
    most :data:`PAGE_BYTES` of answers and one more), renewing this process's claim on
    it before each read. Raises :class:`ClaimLost` when the claim is gone."""
    size = func.coalesce(func.length(BatchRequest.response), 0)
    after = 0
    while True:
        async with ctx.sessions() as session:
            page = list(
                await session.execute(
                    select(BatchRequest.id, size)
                    .where(BatchRequest.batch_id == batch_id, BatchRequest.id > after)
                    .order_by(BatchRequest.id)
                    .limit(INSERT_ROWS)
                )
            )
        if not page:
            return
        after = page[-1][0]
        group: list[int] = []
        held = 0
        for index, (row_id, length) in enumerate(page):
            group.append(row_id)
            held += length
            if held < PAGE_BYTES and index < len(page) - 1:
                continue
            async with ctx.sessions.begin() as session:
                await renew_batch(ctx, session, batch_id, "finalizing")
                rows = list(
                    (
                        await session.scalars(
                            select(BatchRequest)
                            .where(BatchRequest.id.in_(group))
                            .order_by(BatchRequest.id)
                        )
                    ).all()
                )
            for row in rows:
                yield row
            group, held = [], 0


def _final_time(final: str) -> object:
    return {
        "completed": Batch.completed_at,
        "expired": Batch.expired_at,
        "cancelled": Batch.cancelled_at,
    }[final]


async def _any_unsent(ctx: Context, batch_id: str) -> bool:
    async with ctx.sessions() as session:
        left = await session.scalar(
            select(func.count())
            .select_from(BatchRequest)
            .where(
                BatchRequest.batch_id == batch_id,
                BatchRequest.state.notin_(("done", "failed")),
            )
        )
    return bool(left)
