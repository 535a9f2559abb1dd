"""``/admin/api/v1/models``: list (by endpoint and status) and set alias / enabled."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from relaygate.admin.deps import Id, get_ctx, require_admin
from relaygate.context import Context
from relaygate.inputs import RowId
from relaygate.model_spec import ModelUpdate
from relaygate.services import models as service
from relaygate.services.models import ModelInfo

router = APIRouter(prefix="/models", tags=["models"], dependencies=[Depends(require_admin)])


@router.get("")
async def list_models(
    endpoint_id: RowId | None = None, status: str | None = None, ctx: Context = Depends(get_ctx)
) -> list[ModelInfo]:
    return await service.list_models(ctx, endpoint_id=endpoint_id, status=status)


@router.patch("/{model_id}")
async def update_model(
    model_id: Id, body: ModelUpdate, ctx: Context = Depends(get_ctx)
) -> ModelInfo:
    return await service.update_model(ctx, model_id, body)
