"""The admin API (``/admin/api/v1``): admin keys, and any key for the ``/me`` routes."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from relaygate.admin import (
    audit,
    batches,
    endpoints,
    groups,
    keys,
    me,
    models,
    registry,
    usage,
    users,
)
from relaygate.admin.deps import attributed

PREFIX = "/admin/api/v1"


def admin_router() -> APIRouter:
    """Every admin route under :data:`PREFIX`."""
    router = APIRouter(prefix=PREFIX, dependencies=[Depends(attributed)])
    for module in (endpoints, models, users, groups, keys, me, registry, usage, batches, audit):
        router.include_router(module.router)
    router.include_router(usage.me_router)
    return router


def registry_router() -> APIRouter:
    """The registry routes again under ``/v1`` (the IIR-compatible paths)."""
    router = APIRouter(prefix="/v1")
    router.include_router(registry.router)
    return router
