"""The registry routes, under ``/admin/api/v1/registry`` and (IIR-compatible) ``/v1/registry``."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from relaygate.admin.deps import get_ctx, require_admin
from relaygate.admin.endpoint_schemas import RegistryRefreshOut
from relaygate.context import Context
from relaygate.db.tables import utcnow
from relaygate.services import registry as service

router = APIRouter(prefix="/registry", tags=["registry"], dependencies=[Depends(require_admin)])


@router.post("/refresh")
async def refresh(ctx: Context = Depends(get_ctx)) -> RegistryRefreshOut:
    """Sync every enabled endpoint now."""
    results = await service.refresh(ctx)
    return RegistryRefreshOut(refreshed_at=utcnow(), results=results)


@router.get("/status")
async def status(ctx: Context = Depends(get_ctx)) -> service.RegistryStatus:
    """The last refresh, each endpoint's sync state, model counts and host info."""
    return await service.status(ctx)
