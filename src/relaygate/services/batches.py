"""Batches as rows: created from a user's batch input file, listed, read and cancelled
by their owner (another user gets 404), listed for admins across users. The work of
running them is :mod:`relaygate.batches`'.

Objects follow OpenAI's Batch object
(https://platform.openai.com/docs/api-reference/batch/object); statuses go
``validating`` → ``in_progress`` → ``finalizing`` → ``completed``, or to ``failed``
(the input could not be read), ``expired`` (past the completion window, with what was
done) or, through ``cancelling``, ``cancelled``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from relaygate import audit
from relaygate.batches import ENDED, OPEN
from relaygate.context import Context
from relaygate.db.tables import Batch, BatchRequest, User, utcnow
from relaygate.errors import BadRequest, Conflict, NotFound
from relaygate.files.lines import BATCH_URLS
from relaygate.services.files import get_file

BATCH_ID_PREFIX = "batch_"
COMPLETION_WINDOWS = {"24h": timedelta(hours=24)}
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
MAX_OPEN_BATCHES = 100
"""Batches one user may have that are not finished yet."""
STATUSES = OPEN + ENDED
CANCELLABLE = ("validating", "in_progress")
"""Statuses :func:`cancel_batch` moves to ``cancelling``."""


def new_batch_id() -> str:
    return BATCH_ID_PREFIX + secrets.token_hex(12)


def is_batch_id(value: str) -> bool:
    rest = value[len(BATCH_ID_PREFIX) :]
    return (
        value.startswith(BATCH_ID_PREFIX)
        and len(rest) == 24
        and all(c in "0123456789abcdef" for c in rest)
    )


def _epoch(when: datetime | None) -> int | None:
    return int(when.timestamp()) if when is not None else None


def batch_object(row: Batch, *, admin: bool = False) -> dict[str, Any]:
    """The OpenAI Batch object of ``row``, with ``usage`` (tokens of its answers); for an
    admin also ``user_id`` and ``cost`` (in the currency of the models' prices)."""
    body: dict[str, Any] = {
        "id": row.id,
        "object": "batch",
        "endpoint": row.endpoint,
        "errors": {"object": "list", "data": row.errors} if row.errors else None,
        "input_file_id": row.input_file_id,
        "completion_window": row.completion_window,
        "status": row.status,
        "output_file_id": row.output_file_id,
        "error_file_id": row.error_file_id,
        "created_at": _epoch(row.created_at),
        "in_progress_at": _epoch(row.in_progress_at),
        "expires_at": _epoch(row.expires_at),
        "finalizing_at": _epoch(row.finalizing_at),
        "completed_at": _epoch(row.completed_at),
        "failed_at": _epoch(row.failed_at),
        "expired_at": _epoch(row.expired_at),
        "cancelling_at": _epoch(row.cancelling_at),
        "cancelled_at": _epoch(row.cancelled_at),
        "request_counts": {
            "total": row.total,
            "completed": row.completed,
            "failed": row.failed,
        },
        "metadata": row.metadata_,
        "usage": {
            "input_tokens": row.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": row.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": row.prompt_tokens + row.completion_tokens,
        },
    }
    if admin:
        body["user_id"] = row.user_id
        body["cost"] = row.cost
    return body


def not_found(batch_id: str) -> NotFound:
    return NotFound(f"no batch {batch_id!r}", param="batch_id", code="batch_not_found")


def check_metadata(metadata: Any) -> dict[str, str] | None:
    """``metadata`` checked: at most 16 string pairs, keys up to 64 characters and
    values up to 512 (OpenAI's limits). Raises :class:`BadRequest`."""
    if metadata is None:
        return None
    if (
        not isinstance(metadata, dict)
        or len(metadata) > MAX_METADATA_PAIRS
        or not all(
            isinstance(k, str)
            and isinstance(v, str)
            and len(k) <= MAX_METADATA_KEY
            and len(v) <= MAX_METADATA_VALUE
            for k, v in metadata.items()
        )
    ):
        raise BadRequest(
            f"'metadata' must be an object of at most {MAX_METADATA_PAIRS} string pairs, "
            f"keys up to {MAX_METADATA_KEY} characters and values up to "
            f"{MAX_METADATA_VALUE}",
            param="metadata",
        )
    return metadata


@dataclass(frozen=True, slots=True)
class NewBatch:
    """A batch to create: its owner and the key that asked, and OpenAI's create fields."""

    user_id: int
    key_id: int
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None
    output_expires_seconds: int | None = None


async def create_batch(ctx: Context, new: NewBatch) -> Batch:
    """Create a batch in ``validating``, to be prepared by a runner. Raises
    :class:`NotFound` for an input file that is not the user's, :class:`BadRequest` for
    a file that is not a batch input file, an ``endpoint`` other than its lines' ``url``
    or not one of :data:`BATCH_URLS`, another ``completion_window`` than ``24h``, and
    :class:`Conflict` when the user has :data:`MAX_OPEN_BATCHES` batches unfinished."""
    if new.endpoint not in BATCH_URLS:
        raise BadRequest(f"'endpoint' must be one of {', '.join(BATCH_URLS)}", param="endpoint")
    window = COMPLETION_WINDOWS.get(new.completion_window)
    if window is None:
        raise BadRequest("'completion_window' must be '24h'", param="completion_window")
    file = await get_file(ctx, new.user_id, new.input_file_id)
    if file.purpose != "batch" or file.lines is None:
        raise BadRequest(
            f"file {file.id!r} was not uploaded with purpose 'batch'", param="input_file_id"
        )
    if file.url != new.endpoint:
        raise BadRequest(
            f"the requests of file {file.id!r} go to {file.url}, not {new.endpoint}: a "
            "batch's endpoint is its requests' url",
            param="endpoint",
        )
    now = utcnow()
    async with ctx.sessions.begin() as session:
        open_batches = await session.scalar(
            select(func.count())
            .select_from(Batch)
            .where(Batch.user_id == new.user_id, Batch.status.in_(OPEN))
        )
        if (open_batches or 0) >= MAX_OPEN_BATCHES:
            raise Conflict(
                f"you have {MAX_OPEN_BATCHES} batches that are not finished; wait for some "
                "or cancel them",
                code="too_many_batches",
            )
        row = Batch(
            id=new_batch_id(),
            user_id=new.user_id,
            key_id=new.key_id,
            input_file_id=file.id,
            endpoint=new.endpoint,
            completion_window=new.completion_window,
            metadata_=new.metadata,
            output_expires_seconds=new.output_expires_seconds,
            status="validating",
            total=file.lines,
            completed=0,
            failed=0,
            prompt_tokens=0,
            completion_tokens=0,
            cost=0.0,
            created_at=now,
            expires_at=now + window,
        )
        session.add(row)
    return row


async def get_batch(ctx: Context, user_id: int | None, batch_id: str) -> Batch:
    """The batch ``batch_id`` of ``user_id`` (anyone's for None). Raises
    :class:`NotFound` when there is none or it is another user's."""
    if not is_batch_id(batch_id):
        raise not_found(batch_id)
    async with ctx.sessions() as session:
        row = await session.get(Batch, batch_id)
    if row is None or (user_id is not None and row.user_id != user_id):
        raise not_found(batch_id)
    return row


async def list_batches(
    ctx: Context,
    user_id: int | None,
    *,
    after: str | None = None,
    limit: int = 20,
    status: str | None = None,
) -> tuple[list[Batch], bool]:
    """Batches of ``user_id`` (every user's for None), newest first, after the batch
    ``after`` when given, at most ``limit``; returns them and whether more follow."""
    query = select(Batch)
    if user_id is not None:
        query = query.where(Batch.user_id == user_id)
    if status is not None:
        query = query.where(Batch.status == status)
    async with ctx.sessions() as session:
        if after is not None:
            anchor = await session.get(Batch, after) if is_batch_id(after) else None
            if anchor is None or (user_id is not None and anchor.user_id != user_id):
                raise not_found(after)
            query = query.where(
                (Batch.created_at < anchor.created_at)
                | ((Batch.created_at == anchor.created_at) & (Batch.id < anchor.id))
            )
        query = query.order_by(Batch.created_at.desc(), Batch.id.desc()).limit(limit + 1)
        rows = list((await session.scalars(query)).all())
    return rows[:limit], len(rows) > limit


async def owner_names(ctx: Context, rows: list[Batch]) -> dict[int, str]:
    """The names of the users owning ``rows``, by user id."""
    ids = {row.user_id for row in rows}
    if not ids:
        return {}
    async with ctx.sessions() as session:
        found = await session.execute(select(User.id, User.name).where(User.id.in_(ids)))
        return {user_id: name for user_id, name in found}


async def admin_objects(ctx: Context, rows: list[Batch]) -> list[dict[str, Any]]:
    """The admin Batch objects of ``rows`` (:func:`batch_object` with ``admin``), each
    with its owner's ``user_name``."""
    names = await owner_names(ctx, rows)
    return [{**batch_object(row, admin=True), "user_name": names.get(row.user_id)} for row in rows]


async def cancel_batch(ctx: Context, user_id: int | None, batch_id: str) -> Batch:
    """Cancel the batch: no request of it is sent from now on, those in flight finish,
    then it is finalized as ``cancelled`` with what was done. Cancelling a batch being
    cancelled or cancelled returns it as it is. Raises :class:`NotFound` as
    :func:`get_batch`, :class:`Conflict` for a batch that has ended otherwise or is
    being finalized."""
    row = await get_batch(ctx, user_id, batch_id)
    if row.status in ("cancelling", "cancelled"):
        return row
    now = utcnow()
    async with ctx.sessions.begin() as session:
        result = await session.execute(
            update(Batch)
            .where(Batch.id == row.id, Batch.status.in_(CANCELLABLE))
            .values(status="cancelling", cancelling_at=now, claimed_until=None)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != 1:
            current = await session.get(Batch, row.id)
            state = current.status if current is not None else "deleted"
            if state in ("cancelling", "cancelled") and current is not None:
                return current
            raise Conflict(f"batch {row.id!r} is {state} and can no longer be cancelled")
        await session.execute(
            update(BatchRequest)
            .where(BatchRequest.batch_id == row.id, BatchRequest.state == "queued")
            .values(state="cancelled")
            .execution_options(synchronize_session=False)
        )
        if ctx.audit.current() is not None:  # an administrator's or a console user's
            values = {"user_id": row.user_id}
            await audit.record(
                ctx,
                "batch.cancel",
                target_type="batch",
                target_id=row.id,
                values=values,
                session=session,
            )
    return await get_batch(ctx, user_id, batch_id)
