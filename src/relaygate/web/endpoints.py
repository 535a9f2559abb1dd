"""Console: the endpoints page — add (after testing the connection), edit, enable or
disable, delete, and sync one or all without a reload."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, Response

from relaygate.errors import BadRequest, RelaygateError
from relaygate.providers import PROVIDER_TYPES
from relaygate.services import endpoints as service
from relaygate.services import registry
from relaygate.services.endpoints import EndpointChanges, EndpointSpec
from relaygate.sync.service import SyncResult
from relaygate.web.auth import Admin, AdminChecked, context_of
from relaygate.web.render import back, page

router = APIRouter()
PAGE = "/ui/endpoints"


def _filter(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def _concurrency(text: str) -> int | None:
    """The batch concurrency field: blank for the setting's; raises :class:`BadRequest`
    for anything but a whole number (its range is the service's to check)."""
    if not text.strip():
        return None
    try:
        return int(text)
    except ValueError:
        raise BadRequest(
            "batch concurrency must be a whole number, or blank for the setting's",
            param="batch_concurrency",
        ) from None


async def sync_summary(request: Request, result: SyncResult) -> dict[str, Any]:
    """What the page shows after a sync, as JSON for its script: the result and the
    endpoint's model counts now."""
    fields = asdict(result)
    fields["synced_at"] = result.synced_at.isoformat()
    info = await service.get_endpoint(context_of(request), result.endpoint_id)
    fields["models_online"], fields["models_offline"] = info.models_online, info.models_offline
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
        batch_default=context_of(request).settings.batch_concurrency,
    )


@router.post("/endpoints")
async def add_endpoint(
    request: Request,
    _: AdminChecked,
    name: Annotated[str, Form()],
    url: Annotated[str, Form()],
    type: Annotated[str, Form()] = "openai",
    api_key: Annotated[str, Form()] = "",
    model_filter: Annotated[str, Form()] = "",
) -> Response:
    try:
        info = await service.create_endpoint(
            context_of(request),
            EndpointSpec(
                name=name,
                url=url,
                type=type,
                api_key=api_key or None,
                model_filter=_filter(model_filter),
            ),
        )
    except RelaygateError as exc:
        return back(PAGE, exc.message, "error")
    state = (
        "synced" if info.sync_status == "ok" else f"added, but its sync failed: {info.sync_error}"
    )
    return back(
        PAGE, f"endpoint {info.name!r} {state}", "ok" if info.sync_status == "ok" else "error"
    )


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
    request: Request,
    endpoint_id: int,
    _: AdminChecked,
    name: Annotated[str, Form()],
    url: Annotated[str, Form()],
    api_key: Annotated[str, Form()] = "",
    clear_key: Annotated[str, Form()] = "",
    model_filter: Annotated[str, Form()] = "",
    batch_concurrency: Annotated[str, Form()] = "",
) -> Response:
    changes = EndpointChanges(name=name, url=url, model_filter=_filter(model_filter))
    if clear_key:
        changes.api_key = None
    elif api_key:  # the key field is write-only: blank keeps the stored key
        changes.api_key = api_key
    try:
        changes.batch_concurrency = _concurrency(batch_concurrency)
        info = await service.update_endpoint(context_of(request), endpoint_id, changes)
    except RelaygateError as exc:
        return back(PAGE, exc.message, "error")
    return back(PAGE, f"endpoint {info.name!r} saved")


@router.post("/endpoints/{endpoint_id}/toggle")
async def toggle_endpoint(request: Request, endpoint_id: int, _: AdminChecked) -> Response:
    ctx = context_of(request)
    try:
        current = await service.get_endpoint(ctx, endpoint_id)
        info = await service.update_endpoint(
            ctx, endpoint_id, EndpointChanges(enabled=not current.enabled)
        )
    except RelaygateError as exc:
        return back(PAGE, exc.message, "error")
    return back(PAGE, f"endpoint {info.name!r} {'enabled' if info.enabled else 'disabled'}")


@router.post("/endpoints/{endpoint_id}/delete")
async def delete_endpoint(request: Request, endpoint_id: int, _: AdminChecked) -> Response:
    try:
        removed = await service.delete_endpoint(context_of(request), endpoint_id)
    except RelaygateError as exc:
        return back(PAGE, exc.message, "error")
    return back(PAGE, f"endpoint deleted with its {removed} models")


@router.post("/endpoints/{endpoint_id}/sync")
async def sync_one(request: Request, endpoint_id: int, _: AdminChecked) -> JSONResponse:
    try:
        result = await service.sync_by_ident(context_of(request), endpoint_id)
    except RelaygateError as exc:
        return JSONResponse({"status": "error", "error": exc.message}, status_code=exc.status)
    return JSONResponse(await sync_summary(request, result))


@router.post("/sync-all")
async def sync_all(request: Request, _: AdminChecked) -> JSONResponse:
    results = await registry.refresh(context_of(request))
    return JSONResponse({"results": [await sync_summary(request, r) for r in results]})
