"""``/admin/api/v1/batches``: every user's batches, listed, read and cancelled by an
admin. Users see their own under ``/v1/batches``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from relaygate.admin.batch_schemas import AdminBatchList, AdminBatchOut, BatchStatus
from relaygate.admin.deps import get_ctx, require_admin
from relaygate.app_state import state_of
from relaygate.batches import wake_runner
from relaygate.context import Context
from relaygate.db.tables import Batch
from relaygate.inputs import RowId
from relaygate.services import batches as service

router = APIRouter(prefix="/batches", tags=["batches"], dependencies=[Depends(require_admin)])


async def _one(ctx: Context, row: Batch) -> AdminBatchOut:
    return AdminBatchOut.model_validate((await service.admin_objects(ctx, [row]))[0])


@router.get("")
async def list_batches(
    ctx: Context = Depends(get_ctx),
    user_id: Annotated[RowId | None, Query(description="Only this user's batches")] = None,
    status: BatchStatus | None = None,
    after: Annotated[
        str | None, Query(max_length=64, description="The last id of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> AdminBatchList:
    """Every user's batches (or one user's), newest first, each with ``user_id``,
    ``user_name`` and ``cost``."""
    rows, more = await service.list_batches(ctx, user_id, after=after, limit=limit, status=status)
    data = [AdminBatchOut.model_validate(item) for item in await service.admin_objects(ctx, rows)]
    return AdminBatchList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=more,
    )


@router.get("/{batch_id}")
async def get_batch(batch_id: str, ctx: Context = Depends(get_ctx)) -> AdminBatchOut:
    """Any user's batch ``batch_id``."""
    return await _one(ctx, await service.get_batch(ctx, None, batch_id))


@router.post("/{batch_id}/cancel")
async def cancel_batch(
    batch_id: str, request: Request, ctx: Context = Depends(get_ctx)
) -> AdminBatchOut:
    """Cancel any user's batch: ``cancelling`` until the requests in flight finish,
    then ``cancelled`` with what was done (409 for one that has ended otherwise)."""
    row = await service.cancel_batch(ctx, None, batch_id)
    wake_runner(state_of(request))
    return await _one(ctx, row)
