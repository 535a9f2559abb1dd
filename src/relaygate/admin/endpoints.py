"""``/admin/api/v1/endpoints``: create, list, show, update, delete, validate, sync."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends

from relaygate.admin.deps import Id, get_ctx, require_admin
from relaygate.admin.endpoint_schemas import (
    EndpointCreate,
    EndpointDeleted,
    EndpointOut,
    EndpointUpdate,
    EndpointValidate,
    HealthOut,
    SyncOut,
    SyncRunOut,
    SyncState,
    ValidationOut,
)
from relaygate.context import Context
from relaygate.services import endpoints as service
from relaygate.services.endpoints import EndpointChanges, EndpointInfo, EndpointSpec
from relaygate.sync.service import SyncResult, sync_history

router = APIRouter(prefix="/endpoints", tags=["endpoints"], dependencies=[Depends(require_admin)])


def endpoint_out(info: EndpointInfo) -> EndpointOut:
    return EndpointOut(
        id=info.id,
        name=info.name,
        type=info.type,
        url=info.url,
        enabled=info.enabled,
        has_api_key=info.has_api_key,
        api_key_source=info.api_key_source,
        api_key_env=info.api_key_env,
        api_key_hint=info.api_key_hint,
        auth_header=info.auth_header,
        auth_prefix=info.auth_prefix,
        requires_user_key=info.requires_user_key,
        model_filter=info.model_filter,
        sync_interval=info.sync_interval,
        timeouts=info.timeouts,
        pool=info.pool,
        extra_routes=info.extra_routes,
        messages_api=info.apis.messages_api,
        responses_api=info.apis.responses_api,
        chat_api=info.apis.chat_api,
        api_found=info.apis.found,
        batch_concurrency=info.batch_concurrency,
        created_at=info.created_at,
        updated_at=info.updated_at,
        sync=SyncState(
            status=info.sync_status,
            last_synced_at=info.last_synced_at,
            error=info.sync_error,
            models_online=info.models_online,
            models_offline=info.models_offline,
        ),
        health=HealthOut(**asdict(info.health)),
    )


def sync_out(result: SyncResult) -> SyncOut:
    fields = asdict(result)
    fields["endpoint"] = fields.pop("endpoint_name")
    fields.pop("changed")
    return SyncOut(**fields)


@router.get("")
async def list_endpoints(ctx: Context = Depends(get_ctx)) -> list[EndpointOut]:
    return [endpoint_out(info) for info in await service.list_endpoints(ctx)]


@router.post("", status_code=201)
async def create_endpoint(body: EndpointCreate, ctx: Context = Depends(get_ctx)) -> EndpointOut:
    fields = body.model_dump(exclude={"sync", "timeouts"})
    fields["timeouts"] = body.timeouts.chosen() if body.timeouts else None
    info = await service.create_endpoint(ctx, EndpointSpec(**fields), sync=body.sync)
    return endpoint_out(info)


@router.post("/validate")
async def validate_endpoint(
    body: EndpointValidate, ctx: Context = Depends(get_ctx)
) -> ValidationOut:
    result = await service.validate_endpoint(ctx, **body.model_dump())
    return ValidationOut(ok=result.ok, models=result.models, error=result.error)


@router.get("/{endpoint_id}")
async def get_endpoint(endpoint_id: Id, ctx: Context = Depends(get_ctx)) -> EndpointOut:
    return endpoint_out(await service.get_endpoint(ctx, endpoint_id))


@router.patch("/{endpoint_id}")
async def update_endpoint(
    endpoint_id: Id, body: EndpointUpdate, ctx: Context = Depends(get_ctx)
) -> EndpointOut:
    sent = body.changes()
    if "timeouts" in sent:
        sent["timeouts"] = body.timeouts.chosen() if body.timeouts else None
    info = await service.update_endpoint(ctx, endpoint_id, EndpointChanges(**sent))
    return endpoint_out(info)


@router.delete("/{endpoint_id}")
async def delete_endpoint(endpoint_id: Id, ctx: Context = Depends(get_ctx)) -> EndpointDeleted:
    removed = await service.delete_endpoint(ctx, endpoint_id)
    return EndpointDeleted(id=endpoint_id, models_deleted=removed)


@router.post("/{endpoint_id}/sync")
async def sync_endpoint(endpoint_id: Id, ctx: Context = Depends(get_ctx)) -> SyncOut:
    return sync_out(await service.sync_by_ident(ctx, endpoint_id))


@router.get("/{endpoint_id}/syncs")
async def list_syncs(
    endpoint_id: Id, limit: int = 50, ctx: Context = Depends(get_ctx)
) -> list[SyncRunOut]:
    """The endpoint's sync history, newest first."""
    await service.get_endpoint(ctx, endpoint_id)
    runs = await sync_history(ctx, endpoint_id, max(1, min(limit, 1000)))
    return [SyncRunOut(**asdict(run)) for run in runs]
