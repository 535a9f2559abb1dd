"""Console: registry status — last refresh, each endpoint's health, model counts, host."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from relaygate.services import registry
from relaygate.web.auth import Admin, context_of
from relaygate.web.render import page

router = APIRouter()


@router.get("/status")
async def status_page(request: Request, session: Admin) -> Response:
    found = await registry.status(context_of(request))
    return page(request, "status.html", session, status=found)
