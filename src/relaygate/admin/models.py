"""``/admin/api/v1/models``: list (by endpoint and status) and set alias / enabled."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends

from relaygate.admin.deps import Id, get_ctx, require_admin
from relaygate.admin.schemas import ModelOut, ModelUpdate, RowId
from relaygate.context import Context
from relaygate.services import models as service

router = APIRouter(prefix="/models", tags=["models"], dependencies=[Depends(require_admin)])


@router.get("")
async def list_models(
    endpoint_id: RowId | None = None, status: str | None = None, ctx: Context = Depends(get_ctx)
) -> list[ModelOut]:
    found = await service.list_models(ctx, endpoint_id=endpoint_id, status=status)
    return [ModelOut(**asdict(model)) for model in found]


@router.patch("/{model_id}")
async def update_model(
    model_id: Id, body: ModelUpdate, ctx: Context = Depends(get_ctx)
) -> ModelOut:
    return ModelOut(**asdict(await service.update_model(ctx, model_id, **body.changes())))
