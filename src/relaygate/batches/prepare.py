"""Preparing a batch: its input file read (checksum verified) into one queued row per
request, under this process's claim on the batch, which is renewed as rows are written;
a file gone or changed fails the batch."""

from __future__ import annotations

import contextlib
import hashlib
import time

from sqlalchemy import delete

from relaygate.batches.steps import INSERT_ROWS, insert_rows, release_batch, renew_batch
from relaygate.context import Context
from relaygate.db.tables import Batch, BatchRequest, StoredFile, utcnow
from relaygate.errors import ClaimLost
from relaygate.files.lines import LineSplitter, parse_line


async def _fail(ctx: Context, batch_id: str, code: str, message: str) -> None:
    """Fail a ``validating`` batch this process holds (and drop the rows it wrote);
    nothing when it no longer holds it."""
    now = utcnow()
    async with ctx.sessions.begin() as session:
        failed = {
            Batch.status: "failed",
            Batch.failed_at: now,
            Batch.errors: [{"code": code, "message": message, "param": None, "line": None}],
        }
        if await release_batch(ctx, session, batch_id, "validating", failed):
            await session.execute(delete(BatchRequest).where(BatchRequest.batch_id == batch_id))


async def prepare(ctx: Context, batch_id: str) -> None:
    """Prepare a ``validating`` batch this replica claimed: one queued row per request of
    its input file, then ``in_progress``. A file gone or changed since its upload
    (checksum) fails the batch with an error saying so."""
    async with ctx.sessions() as session:
        batch = await session.get(Batch, batch_id)
        file = await session.get(StoredFile, batch.input_file_id) if batch else None
    if batch is None:
        return
    if file is None or file.user_id != batch.user_id:
        await _fail(ctx, batch_id, "file_not_found", "the input file was deleted")
        return
    split = LineSplitter(ctx.settings.max_body_bytes)
    rows: list[dict[str, object]] = []
    count = 0
    digest = hashlib.sha256()
    renew_every = ctx.settings.batch_lease_seconds / 3
    try:
        async with ctx.sessions.begin() as session:  # what a replica that died here left
            await renew_batch(ctx, session, batch_id, "validating")
            await session.execute(delete(BatchRequest).where(BatchRequest.batch_id == batch_id))
        renewed = time.monotonic()
        async with contextlib.aclosing(ctx.files.chunks(file.id)) as chunks:
            async for chunk in chunks:
                digest.update(chunk)
                for number, offset, raw in split.feed(chunk):
                    count += _add_row(rows, batch_id, number, offset, raw)
                    # Written as they fill, not per chunk: a chunk holds thousands.
                    if len(rows) >= INSERT_ROWS:
                        await insert_rows(ctx, batch_id, rows)  # renews the claim too
                        renewed = time.monotonic()
                if time.monotonic() - renewed > renew_every:
                    await insert_rows(ctx, batch_id, rows)
                    renewed = time.monotonic()
        for number, offset, raw in split.finish():
            count += _add_row(rows, batch_id, number, offset, raw)
    except ClaimLost:
        return  # cancelled meanwhile (its rows are written as cancelled), or taken over
    except OSError:
        await _fail(ctx, batch_id, "file_not_found", "the input file's contents are gone")
        return
    except Exception as exc:  # checked at upload: only a changed file gets here
        await _fail(ctx, batch_id, "invalid_file", f"the input file cannot be read: {exc}")
        return
    if digest.hexdigest() != file.sha256:
        await _fail(ctx, batch_id, "file_corrupt", "the input file changed since its upload")
        return
    try:
        await insert_rows(ctx, batch_id, rows)
    except ClaimLost:
        return
    now = utcnow()
    async with ctx.sessions.begin() as session:
        started = {Batch.status: "in_progress", Batch.in_progress_at: now, Batch.total: count}
        await release_batch(ctx, session, batch_id, "validating", started)


def _add_row(
    rows: list[dict[str, object]], batch_id: str, number: int, offset: int, raw: bytes
) -> int:
    line = parse_line(number, offset, raw)
    if line is None:
        return 0
    rows.append(
        {
            "batch_id": batch_id,
            "line": number,
            "custom_id": line.custom_id,
            "offset": offset,
            "length": line.length,
            "state": "queued",
            "attempts": 0,
        }
    )
    return 1
