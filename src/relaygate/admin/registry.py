"""The registry routes, under ``/admin/api/v1/registry`` and (IIR-compatible) ``/v1/registry``."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends

from relaygate.admin.deps import get_ctx, require_admin
from relaygate.admin.endpoint_schemas import HostOut, RegistryRefreshOut, RegistryStatusOut
from relaygate.admin.endpoints import endpoint_out, sync_out
from relaygate.context import Context
from relaygate.db.tables import utcnow
from relaygate.services import registry as service

router = APIRouter(prefix="/registry", tags=["registry"], dependencies=[Depends(require_admin)])


@router.post("/refresh")
async def refresh(ctx: Context = Depends(get_ctx)) -> RegistryRefreshOut:
    """Sync every enabled endpoint now."""
    results = await service.refresh(ctx)
    return RegistryRefreshOut(refreshed_at=utcnow(), results=[sync_out(r) for r in results])


@router.get("/status")
async def status(ctx: Context = Depends(get_ctx)) -> RegistryStatusOut:
    """The last refresh, each endpoint's sync state, model counts and host info."""
    found = await service.status(ctx)
    return RegistryStatusOut(
        last_refresh_at=found.last_refresh_at,
        endpoints=[endpoint_out(e) for e in found.endpoints],
        models_online=found.models_online,
        models_offline=found.models_offline,
        host=HostOut(**asdict(found.host)),
    )
