"""``/v1/batches``: a user's batches (OpenAI's Batch API,
https://platform.openai.com/docs/api-reference/batch), run by relaygate itself over any
endpoint (:mod:`relaygate.batches`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from relaygate.admin.deps import get_ctx, get_principal
from relaygate.app_state import state_of
from relaygate.batches import wake_runner
from relaygate.context import Context
from relaygate.resources.lists import list_object
from relaygate.services import batches as service
from relaygate.snapshot import Principal

router = APIRouter(prefix="/batches", tags=["batches"])


class OutputExpiresAfter(BaseModel):
    """How long the output and error files are kept, from their making (at most
    ``file_retention_days``)."""

    model_config = ConfigDict(extra="forbid")

    anchor: Literal["created_at"]
    seconds: int = Field(ge=3600, le=30 * 86400)


class BatchCreate(BaseModel):
    """The body of ``POST /v1/batches``."""

    model_config = ConfigDict(extra="forbid")

    input_file_id: str = Field(max_length=64)
    endpoint: str = Field(max_length=64)
    completion_window: str = Field(max_length=16)
    metadata: dict[str, Any] | None = None
    output_expires_after: OutputExpiresAfter | None = None


@router.post("")
async def create_batch(
    body: BatchCreate,
    request: Request,
    caller: Principal = Depends(get_principal),
    ctx: Context = Depends(get_ctx),
) -> dict[str, Any]:
    """Create a batch from the caller's input file; returns it ``validating``."""
    row = await service.create_batch(
        ctx,
        service.NewBatch(
            user_id=caller.user_id,
            key_id=caller.key_id,
            input_file_id=body.input_file_id,
            endpoint=body.endpoint,
            completion_window=body.completion_window,
            metadata=service.check_metadata(body.metadata),
            output_expires_seconds=(
                body.output_expires_after.seconds if body.output_expires_after else None
            ),
        ),
    )
    wake_runner(state_of(request))
    return service.batch_object(row)


@router.get("")
async def list_batches(
    caller: Principal = Depends(get_principal),
    ctx: Context = Depends(get_ctx),
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    """The caller's batches, newest first, as OpenAI's list object."""
    rows, more = await service.list_batches(ctx, caller.user_id, after=after, limit=limit)
    return list_object([service.batch_object(row) for row in rows], more)


@router.get("/{batch_id}")
async def get_batch(
    batch_id: str, caller: Principal = Depends(get_principal), ctx: Context = Depends(get_ctx)
) -> dict[str, Any]:
    """The caller's batch ``batch_id``; 404 for anyone else's."""
    return service.batch_object(await service.get_batch(ctx, caller.user_id, batch_id))


@router.post("/{batch_id}/cancel")
async def cancel_batch(
    batch_id: str,
    request: Request,
    caller: Principal = Depends(get_principal),
    ctx: Context = Depends(get_ctx),
) -> dict[str, Any]:
    """Cancel the caller's batch ``batch_id``; returns it ``cancelling`` (or as it is
    when already cancelled)."""
    row = await service.cancel_batch(ctx, caller.user_id, batch_id)
    wake_runner(state_of(request))
    return service.batch_object(row)
