"""Console: the models page — filter, alias inline, enable/disable, prices per million
tokens (for the cost of usage records), who may use each."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from relaygate.errors import BadRequest
from relaygate.inputs import given
from relaygate.model_spec import ModelUpdate
from relaygate.services import endpoints as endpoint_service
from relaygate.services import groups as group_service
from relaygate.services import models as service
from relaygate.web.auth import Admin, AdminChecked, context_of
from relaygate.web.params import Id, id_in
from relaygate.web.render import back, or_back, page

router = APIRouter()
PAGE = "/ui/models"


@router.get("/models")
async def models_page(
    request: Request,
    session: Admin,
    endpoint_id: str = "",
    status: str | None = None,
    q: str = "",
) -> Response:
    ctx = context_of(request)
    endpoint = id_in(endpoint_id, "endpoint_id")  # blank: every endpoint
    found = await service.list_models(ctx, endpoint_id=endpoint, status=status or None)
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
        filters={"endpoint_id": endpoint, "status": status or "", "q": q},
    )


def price(value: str | None, which: str) -> dict[str, Any]:
    """A price as the form sent it, as a change's field (``{which}_cost_per_million_tokens``):
    left out when the form has no such field, None (cleared) when it is empty, else the
    number.

    Raises :class:`BadRequest` when it is not a number.
    """
    field = f"{which}_cost_per_million_tokens"
    if value is None:
        return {}
    if not value.strip():
        return {field: None}
    try:
        return {field: float(value)}
    except ValueError:
        raise BadRequest(
            f"the {which} price must be a number (per million tokens)", param=field
        ) from None


@router.post("/models/{model_id}")
async def update_model(request: Request, model_id: Id, _: AdminChecked) -> Response:
    """Save what the posting form holds — the alias, enabled, or both prices — leaving the
    rest as it is; an empty alias or price clears it."""
    # Read from the form itself: FastAPI's Form() takes an empty field for a missing
    # one, and an empty field here means "clear".
    form = await request.form()

    def sent(name: str) -> str | None:
        value = form.get(name)
        return value if isinstance(value, str) else None

    back_to = sent("back_to") or PAGE
    target = back_to if back_to.startswith(PAGE) else PAGE
    alias, enabled = sent("alias"), sent("enabled")
    with or_back(target):
        changes = ModelUpdate.unchecked(
            **given(alias=alias, enabled=None if enabled is None else enabled == "true"),
            **price(sent("input_cost_per_million_tokens"), "input"),
            **price(sent("output_cost_per_million_tokens"), "output"),
        )
        info = await service.update_model(context_of(request), model_id, changes)
    return back(target, f"model {info.upstream_id!r} saved")
