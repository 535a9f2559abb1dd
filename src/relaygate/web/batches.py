"""Console: every user's batches (admins, ``/ui/batches``) — owner, progress, tokens and
cost, and a cancel button for those still running. "My account" lists a user's own."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from relaygate.app_state import state_of
from relaygate.batches import wake_runner
from relaygate.services import batches as service
from relaygate.web.auth import Admin, AdminChecked, context_of
from relaygate.web.render import back, or_back, page

router = APIRouter()
PAGE = "/ui/batches"
PAGE_SIZE = 50


@router.get("/batches")
async def batches_page(
    request: Request, session: Admin, status: str = "", after: str = ""
) -> Response:
    ctx = context_of(request)
    chosen = status if status in service.STATUSES else None
    with or_back(PAGE):
        rows, more = await service.list_batches(
            ctx, None, after=after or None, limit=PAGE_SIZE, status=chosen
        )
    return page(
        request,
        "batches.html",
        session,
        batches=rows,
        names=await service.owner_names(ctx, rows),
        status=chosen,
        statuses=service.STATUSES,
        cancellable=service.CANCELLABLE,
        next_after=rows[-1].id if more else None,
    )


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(request: Request, batch_id: str, _: AdminChecked) -> Response:
    with or_back(PAGE):
        row = await service.cancel_batch(context_of(request), None, batch_id)
    wake_runner(state_of(request))
    return back(PAGE, f"batch {row.id} is {row.status}")
