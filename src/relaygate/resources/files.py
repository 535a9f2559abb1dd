"""``/v1/files``: a user's files (OpenAI's Files API,
https://platform.openai.com/docs/api-reference/files). Uploads are read as they arrive
(never whole in memory), bounded by ``max_file_bytes`` and the user's
``file_quota_bytes``, and a ``batch`` file is checked line by line as it comes, the
first bad line refused by number."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from relaygate.admin.deps import get_ctx, get_principal
from relaygate.app_state import state_of
from relaygate.context import Context
from relaygate.errors import BadRequest, ClientDisconnected, PayloadTooLarge
from relaygate.files.lines import BatchLines
from relaygate.files.upload import UploadSlots, read_upload
from relaygate.resources.lists import list_object
from relaygate.services import files as service
from relaygate.snapshot import Principal, Snapshot

router = APIRouter(prefix="/files", tags=["files"])
MAX_EXPIRES_SECONDS = 30 * 86400
MIN_EXPIRES_SECONDS = 3600


def _model_error(snapshot: Snapshot, principal: Principal) -> Any:
    def error(model: str) -> str | None:
        if snapshot.route_for(principal, model) is not None:
            return None
        if model in snapshot.models:
            return f"you do not have access to the model {model!r}"
        return f"the model {model!r} does not exist"

    return error


def _expires_in(fields: dict[str, str]) -> float | None:
    """``expires_after[seconds]`` (anchored at ``created_at``), checked; None if absent."""
    seconds = fields.get("expires_after[seconds]")
    anchor = fields.get("expires_after[anchor]")
    if seconds is None and anchor is None:
        return None
    if anchor != "created_at" or seconds is None or not seconds.isdigit():
        raise BadRequest(
            "'expires_after' must be {anchor: 'created_at', seconds: N}", param="expires_after"
        )
    value = int(seconds)
    if not MIN_EXPIRES_SECONDS <= value <= MAX_EXPIRES_SECONDS:
        raise BadRequest(
            f"'expires_after.seconds' must be {MIN_EXPIRES_SECONDS} to {MAX_EXPIRES_SECONDS}",
            param="expires_after",
        )
    return float(value)


def _check_purpose(fields: dict[str, str]) -> None:
    purpose = fields.get("purpose")
    if purpose is None:
        raise BadRequest("the form has no 'purpose': send purpose=batch", param="purpose")
    if purpose not in service.PURPOSES:
        raise BadRequest(
            f"purpose {purpose!r} is not supported: relaygate keeps files for batches "
            "(purpose=batch)",
            param="purpose",
        )


def _check_sent_purpose(fields: dict[str, str]) -> None:
    if "purpose" in fields:
        _check_purpose(fields)


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect:
        raise ClientDisconnected("the client left before its upload was whole") from None


@router.post("")
async def upload_file(
    request: Request,
    caller: Principal = Depends(get_principal),
    ctx: Context = Depends(get_ctx),
) -> dict[str, Any]:
    """Upload a file (multipart: ``purpose`` ``batch`` and ``file``, optionally
    ``expires_after[anchor]``/``expires_after[seconds]``); returns its File object.
    Raises :class:`BadRequest` for a malformed form or a bad line (named by number,
    code ``invalid_batch_line``), :class:`PayloadTooLarge` over ``max_file_bytes``
    (``request_too_large``) or the quota (``file_quota_exceeded``), and
    :class:`ConcurrencyLimited` (429) past two uploads of one user at once."""
    slots: UploadSlots = state_of(request).uploads
    slots.take(caller.user_id)  # raises ConcurrencyLimited (429)
    try:
        return await _upload(request, caller, ctx)
    finally:
        slots.release(caller.user_id)


async def _upload(request: Request, caller: Principal, ctx: Context) -> dict[str, Any]:
    settings = ctx.settings
    room = await service.room_left(ctx, caller.user_id)
    limit = min(settings.max_file_bytes, room)
    lines = BatchLines(
        settings.max_body_bytes,
        settings.batch_max_requests,
        _model_error(ctx.snapshots.current, caller),
    )
    writer = ctx.files.writer(service.new_file_id())
    try:
        upload = await read_upload(
            _body(request),
            request.headers.get("content-type", ""),
            writer,
            lines.feed,
            limit,
            before_file=_check_sent_purpose,
        )
        _check_purpose(upload.fields)
        expires_in = _expires_in(upload.fields)
        lines.finish()
        if writer.size + await service.bytes_used(ctx, caller.user_id) > settings.file_quota_bytes:
            raise service.quota_exceeded(settings.file_quota_bytes)
        await writer.commit()
    except PayloadTooLarge as exc:
        await writer.abort()
        if limit < settings.max_file_bytes and exc.code == "request_too_large":
            raise service.quota_exceeded(settings.file_quota_bytes) from None
        raise
    except BaseException:
        await writer.abort()
        raise
    row = await service.record_file(
        ctx,
        service.NewFile(
            id=writer.file_id,
            user_id=caller.user_id,
            filename=upload.filename or "upload.jsonl",
            purpose=upload.fields["purpose"],
            size=writer.size,
            sha256=writer.sha256,
            lines=lines.count,
            url=lines.url,
        ),
        expires_in,
    )
    return service.file_object(row)


@router.get("")
async def list_files(
    caller: Principal = Depends(get_principal),
    ctx: Context = Depends(get_ctx),
    purpose: Annotated[str | None, Query(max_length=32)] = None,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIST)] = service.MAX_LIST,
    order: Literal["asc", "desc"] = "desc",
) -> dict[str, Any]:
    """The caller's files, as OpenAI's list object (``data``, ``first_id``, ``last_id``,
    ``has_more``)."""
    rows, more = await service.list_files(
        ctx, caller.user_id, purpose=purpose, after=after, limit=limit, order=order
    )
    return list_object([service.file_object(row) for row in rows], more)


@router.get("/{file_id}")
async def get_file(
    file_id: str, caller: Principal = Depends(get_principal), ctx: Context = Depends(get_ctx)
) -> dict[str, Any]:
    """The caller's file ``file_id``; 404 for anyone else's."""
    return service.file_object(await service.get_file(ctx, caller.user_id, file_id))


@router.get("/{file_id}/content")
async def file_content(
    file_id: str, caller: Principal = Depends(get_principal), ctx: Context = Depends(get_ctx)
) -> StreamingResponse:
    """The contents of the caller's file ``file_id``, streamed; 404 for anyone else's."""
    row = await service.get_file(ctx, caller.user_id, file_id)
    if not await ctx.files.exists(row.id):
        raise service.not_found(file_id)
    return StreamingResponse(
        ctx.files.chunks(row.id),
        media_type="application/octet-stream",
        headers={"content-length": str(row.bytes)},
    )


@router.delete("/{file_id}")
async def delete_file(
    file_id: str, caller: Principal = Depends(get_principal), ctx: Context = Depends(get_ctx)
) -> dict[str, Any]:
    """Delete the caller's file ``file_id``; 404 for anyone else's."""
    await service.delete_file(ctx, caller.user_id, file_id)
    return {"id": file_id, "object": "file", "deleted": True}
