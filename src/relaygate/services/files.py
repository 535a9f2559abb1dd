"""Users' files as rows: each belongs to the user who uploaded it (or whose batch wrote
it) and is invisible to everyone else, who get 404 as for a file that does not exist.
Their contents are the file store's (:class:`relaygate.files.storage.FileStorage`).

Objects follow OpenAI's File object
(https://platform.openai.com/docs/api-reference/files/object).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, func, select

from relaygate.batches import ENDED, OPEN
from relaygate.context import Context
from relaygate.db.tables import Batch, StoredFile, utcnow
from relaygate.errors import Conflict, NotFound, PayloadTooLarge
from relaygate.pauses import pause

log = logging.getLogger(__name__)
FILE_ID_PREFIX = "file-"
PURPOSES = ("batch",)
"""Purposes a user may upload a file for (``batch_output`` files are written by batches)."""
MAX_LIST = 10_000


def new_file_id() -> str:
    """A fresh file id: ``file-`` and 24 random hex characters."""
    return FILE_ID_PREFIX + secrets.token_hex(12)


def is_file_id(value: str) -> bool:
    """Whether ``value`` has the shape of a file id (anything else is no file of anyone)."""
    rest = value[len(FILE_ID_PREFIX) :]
    return (
        value.startswith(FILE_ID_PREFIX)
        and len(rest) == 24
        and all(c in "0123456789abcdef" for c in rest)
    )


def _epoch(when: datetime | None) -> int | None:
    return int(when.timestamp()) if when is not None else None


def file_object(row: StoredFile) -> dict[str, Any]:
    """The OpenAI File object of ``row``."""
    return {
        "id": row.id,
        "object": "file",
        "bytes": row.bytes,
        "created_at": _epoch(row.created_at),
        "expires_at": _epoch(row.expires_at),
        "filename": row.filename,
        "purpose": row.purpose,
        "status": "processed",
        "status_details": None,
    }


@dataclass(frozen=True, slots=True)
class NewFile:
    """A file whose contents are stored, to record: its owner, name, purpose, size in
    bytes, checksum, and for a batch input file its requests and their route."""

    id: str
    user_id: int
    filename: str
    purpose: str
    size: int
    sha256: str
    lines: int | None = None
    url: str | None = None


def not_found(file_id: str) -> NotFound:
    return NotFound(f"no file {file_id!r}", param="file_id", code="file_not_found")


async def bytes_used(ctx: Context, user_id: int) -> int:
    """Bytes of the files ``user_id`` keeps now."""
    async with ctx.sessions() as session:
        used = await session.scalar(
            select(func.coalesce(func.sum(StoredFile.bytes), 0)).where(
                StoredFile.user_id == user_id
            )
        )
    return int(used or 0)


async def room_left(ctx: Context, user_id: int) -> int:
    """Bytes ``user_id`` may still store under ``file_quota_bytes``. Raises
    :class:`PayloadTooLarge` (code ``file_quota_exceeded``) when none is left."""
    left = ctx.settings.file_quota_bytes - await bytes_used(ctx, user_id)
    if left <= 0:
        raise quota_exceeded(ctx.settings.file_quota_bytes)
    return left


def quota_exceeded(quota: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"your files would take more than your quota of {quota} bytes: delete some "
        "(DELETE /v1/files/{file_id})",
        param="file",
        code="file_quota_exceeded",
    )


async def record_file(ctx: Context, new: NewFile, expires_in: float | None = None) -> StoredFile:
    """Store the row of ``new`` (its contents already stored), expiring after
    ``expires_in`` seconds or ``file_retention_days``, whichever comes first."""
    now = utcnow()
    retention = ctx.settings.file_retention_days * 86400
    expires = min(expires_in, retention) if expires_in is not None else retention
    row = StoredFile(
        id=new.id,
        user_id=new.user_id,
        filename=new.filename,
        purpose=new.purpose,
        bytes=new.size,
        sha256=new.sha256,
        lines=new.lines,
        url=new.url,
        created_at=now,
        expires_at=now + timedelta(seconds=expires),
    )
    async with ctx.sessions.begin() as session:
        session.add(row)
    return row


async def get_file(ctx: Context, user_id: int | None, file_id: str) -> StoredFile:
    """The file ``file_id`` of ``user_id`` (of anyone for None). Raises :class:`NotFound`
    when there is none, it is another user's, or it has expired."""
    if not is_file_id(file_id):
        raise not_found(file_id)
    async with ctx.sessions() as session:
        row = await session.get(StoredFile, file_id)
    if (
        row is None
        or (user_id is not None and row.user_id != user_id)
        or (row.expires_at is not None and row.expires_at <= utcnow())
    ):
        raise not_found(file_id)
    return row


async def list_files(
    ctx: Context,
    user_id: int,
    *,
    purpose: str | None = None,
    after: str | None = None,
    limit: int = MAX_LIST,
    order: str = "desc",
) -> tuple[list[StoredFile], bool]:
    """``user_id``'s files, newest first (``order`` ``desc``) or oldest first, after the
    file ``after`` when given, at most ``limit``; returns them and whether more follow."""
    query = select(StoredFile).where(
        StoredFile.user_id == user_id,
        (StoredFile.expires_at.is_(None)) | (StoredFile.expires_at > utcnow()),
    )
    if purpose is not None:
        query = query.where(StoredFile.purpose == purpose)
    newest_first = order != "asc"
    async with ctx.sessions() as session:
        if after is not None:
            anchor = await session.get(StoredFile, after) if is_file_id(after) else None
            if anchor is None or anchor.user_id != user_id:
                raise not_found(after)
            key = (anchor.created_at, anchor.id)
            column = (StoredFile.created_at, StoredFile.id)
            if newest_first:
                query = query.where(
                    (column[0] < key[0]) | ((column[0] == key[0]) & (column[1] < key[1]))
                )
            else:
                query = query.where(
                    (column[0] > key[0]) | ((column[0] == key[0]) & (column[1] > key[1]))
                )
        if newest_first:
            query = query.order_by(StoredFile.created_at.desc(), StoredFile.id.desc())
        else:
            query = query.order_by(StoredFile.created_at, StoredFile.id)
        rows = list((await session.scalars(query.limit(limit + 1))).all())
    return rows[:limit], len(rows) > limit


def _in_use() -> Select[Any]:
    """The input files of batches that have not ended (kept while they run)."""
    return select(Batch.input_file_id).where(Batch.status.in_(OPEN))


async def delete_file(ctx: Context, user_id: int | None, file_id: str) -> None:
    """Delete ``user_id``'s file ``file_id``, row and contents. Raises
    :class:`NotFound` as :func:`get_file` does, and :class:`Conflict` for the input
    file of a batch that has not ended."""
    row = await get_file(ctx, user_id, file_id)
    async with ctx.sessions.begin() as session:
        if await session.scalar(_in_use().where(Batch.input_file_id == row.id).limit(1)):
            raise Conflict(
                f"file {file_id!r} is the input of a batch that has not ended: cancel it or "
                "wait for it to end",
                param="file_id",
                code="file_in_use",
            )
        await session.execute(delete(StoredFile).where(StoredFile.id == row.id))
    await ctx.files.delete(row.id)


ORPHAN_GRACE_SECONDS = 3600.0
"""Contents older than this with no row (their user was deleted) are swept; younger ones
may be an upload or a batch output whose row is being written."""


async def _orphans(ctx: Context) -> list[str]:
    """Ids of contents in the file store that no row names, older than the grace."""
    stored = await ctx.files.ids_older_than(ORPHAN_GRACE_SECONDS)
    if not stored:
        return []
    known: set[str] = set()
    async with ctx.sessions() as session:
        for start in range(0, len(stored), 500):
            chunk = stored[start : start + 500]
            found = await session.scalars(select(StoredFile.id).where(StoredFile.id.in_(chunk)))
            known.update(found)
    return [file_id for file_id in stored if file_id not in known]


async def prune_once(ctx: Context) -> tuple[int, int]:
    """Delete expired files (rows and contents) and contents no row names any more (a
    deleted user's, older than :data:`ORPHAN_GRACE_SECONDS`); returns how many of each."""
    now = utcnow()
    async with ctx.sessions.begin() as session:
        gone = list(
            (
                await session.scalars(
                    delete(StoredFile)
                    .where(StoredFile.expires_at <= now, ~StoredFile.id.in_(_in_use()))
                    .returning(StoredFile.id)
                )
            ).all()
        )
    for file_id in gone:
        await ctx.files.delete(file_id)
    orphans = await _orphans(ctx)
    for file_id in orphans:
        await ctx.files.delete(file_id)
    await ctx.files.drop_parts_older_than(ctx.settings.file_upload_timeout + ORPHAN_GRACE_SECONDS)
    async with ctx.sessions.begin() as session:  # ended batches, as long as their files
        await session.execute(
            delete(Batch).where(
                Batch.status.in_(ENDED),
                Batch.created_at <= now - timedelta(days=ctx.settings.file_retention_days),
            )
        )
    return len(gone), len(orphans)


async def prune_files(ctx: Context, stop: asyncio.Event, every: float = 600.0) -> None:
    """:func:`prune_once` at start and then every ``every`` seconds until ``stop``;
    failures are logged and retried next time."""
    while not stop.is_set():
        try:
            expired, orphans = await prune_once(ctx)
            if expired or orphans:
                log.info(
                    "deleted %d expired files and the contents of %d no longer recorded",
                    expired,
                    orphans,
                )
        except Exception:
            log.exception("could not delete expired files; will retry")
        await pause(stop, every)
