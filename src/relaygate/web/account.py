"""Console: "My account" for every user — own usage over the last 7 days (chart and table
by model), own API keys (shown once at creation), own provider keys (hints only), own
batches, and the models they may use with ready-to-copy snippets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from relaygate.services import api_keys, budgets, provider_keys
from relaygate.services import batches as batch_service
from relaygate.services import endpoints as endpoint_service
from relaygate.services import users as user_service
from relaygate.web.auth import Checked, Session, context_of
from relaygate.web.params import Id
from relaygate.web.render import back, or_back, page
from relaygate.web.usage import last_days, usage_view

router = APIRouter()
PAGE = "/ui/account"
USAGE_DAYS = 7
BATCHES_SHOWN = 20


async def _account(request: Request, session: Session, new_key: str | None = None) -> Response:
    ctx = context_of(request)
    principal = session.principal
    base = str(request.base_url).rstrip("/")
    window = last_days(USAGE_DAYS)
    nameable = ctx.snapshots.current.nameable_endpoints(principal)
    # Only endpoints serving some model of the caller's: others' names are not theirs to see.
    endpoints = [
        e
        for e in await endpoint_service.list_endpoints(ctx)
        if e.enabled and (nameable is None or e.id in nameable)
    ]
    own = {k.endpoint_id: k for k in await provider_keys.list_own_keys(ctx, principal.user_id)}
    shown = {e.id for e in endpoints}
    batches, more_batches = await batch_service.list_batches(
        ctx, principal.user_id, limit=BATCHES_SHOWN
    )
    return page(
        request,
        "account.html",
        session,
        new_key=new_key,
        user=await user_service.get_user(ctx, principal.user_id),
        keys=await api_keys.list_keys(ctx, user_id=principal.user_id),
        provider_keys=own,
        endpoints=endpoints,
        # Keys the user set where they no longer have access: theirs to clear.
        other_provider_keys=[k for k in own.values() if k.endpoint_id not in shown],
        models=ctx.snapshots.current.model_names(principal),
        base_url=base,
        usage_window=window,
        usage=await usage_view(ctx, window, group_by="model", user_id=principal.user_id),
        budgets=await budgets.own_budgets(ctx, principal),
        batches=batches,
        more_batches=more_batches,
    )


@router.get("/account")
async def account_page(request: Request, session: Session) -> Response:
    return await _account(request, session)


@router.post("/account/keys")
async def create_key(
    request: Request, session: Checked, name: Annotated[str, Form()] = "key"
) -> Response:
    with or_back(PAGE):
        created = await api_keys.create_key_within(
            context_of(request),
            session.principal,
            user=session.principal.user_id,
            name=name,
            own=True,
        )
    # Rendered directly, never put in a URL: the key is shown this once.
    return await _account(request, session, new_key=created.key)


@router.post("/account/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: Id, session: Checked) -> Response:
    with or_back(PAGE):
        await api_keys.revoke_key(context_of(request), key_id, owner_id=session.principal.user_id)
    return back(PAGE, "key revoked")


@router.post("/account/provider-keys/{endpoint_id}")
async def set_provider_key(
    request: Request,
    endpoint_id: Id,
    session: Checked,
    api_key: Annotated[str, Form()] = "",
    clear: Annotated[str, Form()] = "",
) -> Response:
    ctx = context_of(request)
    user_id = session.principal.user_id
    nameable = ctx.snapshots.current.nameable_endpoints(session.principal)
    with or_back(PAGE):
        if clear:
            await provider_keys.clear_own_key(ctx, user_id, endpoint_id, nameable=nameable)
        else:
            await provider_keys.set_own_key(ctx, user_id, endpoint_id, api_key, nameable=nameable)
    return back(PAGE, "provider key cleared" if clear else "provider key saved")
