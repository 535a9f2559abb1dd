"""Console: the models page — filter, alias inline, enable/disable, who may use each."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from relaygate.errors import RelaygateError
from relaygate.services import endpoints as endpoint_service
from relaygate.services import groups as group_service
from relaygate.services import models as service
from relaygate.services.patch import UNSET
from relaygate.web.auth import Admin, AdminChecked, context_of
from relaygate.web.render import back, page

router = APIRouter()
PAGE = "/ui/models"


@router.get("/models")
async def models_page(
    request: Request,
    session: Admin,
    endpoint_id: int | None = None,
    status: str | None = None,
    q: str = "",
) -> Response:
    ctx = context_of(request)
    found = await service.list_models(ctx, endpoint_id=endpoint_id, status=status or None)
    if q:
        needle = q.lower()
        found = [
            m
            for m in found
            if needle in m.upstream_id.lower()
            or needle in (m.alias or "").lower()
            or needle in (m.display_name or "").lower()
        ]
    endpoints = await endpoint_service.list_endpoints(ctx)
    groups = await group_service.list_groups(ctx)
    allowed: dict[int, list[str]] = {}
    for model in found:
        allowed[model.id] = [
            g.name for g in groups if model.id in g.models or model.endpoint_id in g.endpoints
        ]
    names = {e.id: e.name for e in endpoints}
    return page(
        request,
        "models.html",
        session,
        models=found,
        endpoints=endpoints,
        endpoint_names=names,
        allowed=allowed,
        filters={"endpoint_id": endpoint_id, "status": status or "", "q": q},
    )


@router.post("/models/{model_id}")
async def update_model(
    request: Request,
    model_id: int,
    _: AdminChecked,
    alias: Annotated[str | None, Form()] = None,
    enabled: Annotated[str | None, Form()] = None,
    back_to: Annotated[str, Form()] = PAGE,
) -> Response:
    target = back_to if back_to.startswith(PAGE) else PAGE
    try:
        info = await service.update_model(
            context_of(request),
            model_id,
            alias=UNSET if alias is None else alias,
            enabled=UNSET if enabled is None else enabled == "true",
        )
    except RelaygateError as exc:
        return back(target, exc.message, "error")
    return back(target, f"model {info.upstream_id!r} saved")
