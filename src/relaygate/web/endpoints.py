"""Console: the endpoints page — add (after testing the connection), edit, enable or
disable, delete, and sync one or all without a reload."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, Response

from relaygate.endpoint_spec import API_MODES, EndpointUpdate
from relaygate.errors import RelaygateError
from relaygate.providers import PROVIDER_TYPES
from relaygate.services import endpoints as service
from relaygate.services import groups as group_service
from relaygate.services import models as model_service
from relaygate.services import registry
from relaygate.services.endpoint_fields import TIMEOUT_NAMES
from relaygate.services.endpoints import EndpointInfo
from relaygate.sync.service import SyncResult
from relaygate.web.auth import Admin, AdminChecked, context_of
from relaygate.web.endpoint_form import EndpointForm, changes_of, spec_of
from relaygate.web.params import Id
from relaygate.web.render import back, or_back, page
from relaygate.web.states import health_state, model_counts, sync_state
from relaygate.wording import plural

router = APIRouter()
PAGE = "/ui/endpoints"
NAMES_SHOWN = 8
"""Model names the message after adding an endpoint lists before "…"."""


async def found_message(request: Request, info: EndpointInfo) -> tuple[str, str]:
    """The message after adding ``info`` and its kind: what its first sync found
    (``synced: 3 models (a, b, c)``) or why it failed."""
    if info.sync.status == "error":
        return f"endpoint {info.name!r} added, but its sync failed: {info.sync.error}", "error"
    if info.sync.status != "ok":
        return f"endpoint {info.name!r} added (disabled: not synced)", "ok"
    found = await model_service.list_models(context_of(request), endpoint_id=info.id)
    names = [m.alias or m.upstream_id for m in found if m.status == "online"]
    if not names:
        return f"endpoint {info.name!r} synced: it lists no models", "error"
    shown = ", ".join(names[:NAMES_SHOWN]) + (", …" if len(names) > NAMES_SHOWN else "")
    return f"endpoint {info.name!r} synced: {plural(len(names), 'model')} ({shown})", "ok"


async def sync_summary(request: Request, result: SyncResult) -> dict[str, Any]:
    """What the page shows after a sync, as JSON for its script: the result and the
    endpoint's model counts now."""
    fields = asdict(result)
    fields["synced_at"] = result.synced_at.isoformat()
    info = await service.get_endpoint(context_of(request), result.endpoint_id)
    fields["models_online"], fields["models_offline"] = (
        info.sync.models_online,
        info.sync.models_offline,
    )
    fields["counts"] = model_counts(info.sync.models_online, info.sync.models_offline)
    fields["sync"] = asdict(sync_state(info.sync.status, info.sync.error))
    fields["health"] = asdict(health_state(info))
    return fields


@router.get("/endpoints")
async def endpoints_page(request: Request, session: Admin) -> Response:
    found = await service.list_endpoints(context_of(request))
    return page(
        request,
        "endpoints.html",
        session,
        endpoints=found,
        types=PROVIDER_TYPES,
        groups=await group_service.list_groups(context_of(request)),
        api_modes=API_MODES,
        timeout_names=TIMEOUT_NAMES,
        settings=context_of(request).settings,
    )


@router.post("/endpoints")
async def add_endpoint(
    request: Request, _: AdminChecked, form: Annotated[EndpointForm, Form()]
) -> Response:
    with or_back(PAGE):
        info = await service.create_endpoint(context_of(request), spec_of(form))
    return back(PAGE, *await found_message(request, info))


@router.post("/endpoints/test")
async def test_connection(
    request: Request,
    _: AdminChecked,
    url: Annotated[str, Form()],
    type: Annotated[str, Form()] = "openai",
    api_key: Annotated[str, Form()] = "",
) -> JSONResponse:
    """The validate call, for the add form's "Test connection" button."""
    try:
        result = await service.validate_endpoint(
            context_of(request), type=type, url=url, api_key=api_key or None
        )
    except RelaygateError as exc:
        return JSONResponse({"ok": False, "models": [], "error": exc.message})
    return JSONResponse(asdict(result))


@router.post("/endpoints/{endpoint_id}/edit")
async def edit_endpoint(
    request: Request, endpoint_id: Id, _: AdminChecked, form: Annotated[EndpointForm, Form()]
) -> Response:
    ctx = context_of(request)
    with or_back(PAGE):
        current = await service.get_endpoint(ctx, endpoint_id)
        info = await service.update_endpoint(ctx, endpoint_id, changes_of(form, current))
    return back(PAGE, f"endpoint {info.name!r} saved")


@router.post("/endpoints/{endpoint_id}/toggle")
async def toggle_endpoint(request: Request, endpoint_id: Id, _: AdminChecked) -> Response:
    ctx = context_of(request)
    with or_back(PAGE):
        current = await service.get_endpoint(ctx, endpoint_id)
        info = await service.update_endpoint(
            ctx, endpoint_id, EndpointUpdate(enabled=not current.enabled)
        )
    return back(PAGE, f"endpoint {info.name!r} {'enabled' if info.enabled else 'disabled'}")


@router.post("/endpoints/{endpoint_id}/delete")
async def delete_endpoint(request: Request, endpoint_id: Id, _: AdminChecked) -> Response:
    with or_back(PAGE):
        removed = await service.delete_endpoint(context_of(request), endpoint_id)
    return back(PAGE, f"endpoint deleted with its {plural(removed, 'model')}")


@router.post("/endpoints/{endpoint_id}/sync")
async def sync_one(request: Request, endpoint_id: Id, _: AdminChecked) -> JSONResponse:
    try:
        result = await service.sync_by_ident(context_of(request), endpoint_id)
    except RelaygateError as exc:
        return JSONResponse({"status": "error", "error": exc.message}, status_code=exc.status)
    return JSONResponse(await sync_summary(request, result))


@router.post("/sync-all")
async def sync_all(request: Request, _: AdminChecked) -> JSONResponse:
    results = await registry.refresh(context_of(request))
    return JSONResponse({"results": [await sync_summary(request, r) for r in results]})
