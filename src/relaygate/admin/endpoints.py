"""``/admin/api/v1/endpoints``: create, list, show, update, delete, validate, sync."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from relaygate.admin.deps import Id, get_ctx, require_admin
from relaygate.admin.endpoint_schemas import (
    EndpointCreate,
    EndpointDeleted,
    EndpointUpdate,
    EndpointValidate,
    ValidationOut,
)
from relaygate.context import Context
from relaygate.services import endpoints as service
from relaygate.services.endpoints import EndpointInfo
from relaygate.sync.service import SyncResult, SyncRunInfo, sync_history

router = APIRouter(prefix="/endpoints", tags=["endpoints"], dependencies=[Depends(require_admin)])


@router.get("")
async def list_endpoints(ctx: Context = Depends(get_ctx)) -> list[EndpointInfo]:
    return await service.list_endpoints(ctx)


@router.post("", status_code=201)
async def create_endpoint(body: EndpointCreate, ctx: Context = Depends(get_ctx)) -> EndpointInfo:
    info = await service.create_endpoint(ctx, body, sync=body.sync)
    return info


@router.post("/validate")
async def validate_endpoint(
    body: EndpointValidate, ctx: Context = Depends(get_ctx)
) -> ValidationOut:
    result = await service.validate_endpoint(ctx, **body.model_dump())
    return ValidationOut(ok=result.ok, models=result.models, error=result.error)


@router.get("/{endpoint_id}")
async def get_endpoint(endpoint_id: Id, ctx: Context = Depends(get_ctx)) -> EndpointInfo:
    return await service.get_endpoint(ctx, endpoint_id)


@router.patch("/{endpoint_id}")
async def update_endpoint(
    endpoint_id: Id, body: EndpointUpdate, ctx: Context = Depends(get_ctx)
) -> EndpointInfo:
    info = await service.update_endpoint(ctx, endpoint_id, body)
    return info


@router.delete("/{endpoint_id}")
async def delete_endpoint(endpoint_id: Id, ctx: Context = Depends(get_ctx)) -> EndpointDeleted:
    removed = await service.delete_endpoint(ctx, endpoint_id)
    return EndpointDeleted(id=endpoint_id, models_deleted=removed)


@router.post("/{endpoint_id}/sync")
async def sync_endpoint(endpoint_id: Id, ctx: Context = Depends(get_ctx)) -> SyncResult:
    return await service.sync_by_ident(ctx, endpoint_id)


@router.get("/{endpoint_id}/syncs")
async def list_syncs(
    endpoint_id: Id, limit: int = 50, ctx: Context = Depends(get_ctx)
) -> list[SyncRunInfo]:
    """The endpoint's sync history, newest first."""
    await service.get_endpoint(ctx, endpoint_id)
    return await sync_history(ctx, endpoint_id, max(1, min(limit, 1000)))
