"""``/admin/api/v1/keys``: create (the key is returned this once), list, change, revoke."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from relaygate.account_spec import KeyCreate, KeyUpdate
from relaygate.admin.deps import Id, get_ctx, require_admin
from relaygate.context import Context
from relaygate.inputs import RowId
from relaygate.services import api_keys as service
from relaygate.services import budgets
from relaygate.services.api_keys import KeyCreated, KeyInfo
from relaygate.snapshot import Principal

router = APIRouter(prefix="/keys", tags=["keys"])


@router.get("")
async def list_keys(
    user_id: RowId | None = None,
    _: Principal = Depends(require_admin),
    ctx: Context = Depends(get_ctx),
) -> list[KeyInfo]:
    return await service.list_keys(ctx, user_id=user_id)


@router.get("/{key_id}")
async def get_key(
    key_id: Id, _: Principal = Depends(require_admin), ctx: Context = Depends(get_ctx)
) -> KeyInfo:
    return await service.get_key(ctx, key_id)


@router.post("", status_code=201)
async def create_key(
    body: KeyCreate, caller: Principal = Depends(require_admin), ctx: Context = Depends(get_ctx)
) -> KeyCreated:
    """A new key for ``user_id`` (default: the caller). Whoever it is for, it never reaches
    more models, lives longer or has a higher (or no) rate limit than the calling key and
    its user; what is omitted takes the caller's limit."""
    created = await service.create_key_within(
        ctx,
        caller,
        user=body.user_id if body.user_id is not None else caller.user_id,
        name=body.name,
        own=False,  # an admin's: its budget is the admin's to give
        allowed_models=body.allowed_models,
        expires_at=body.expires_at,
        requests_per_minute=body.requests_per_minute,
        tokens_per_minute=body.tokens_per_minute,
        budget=body.budget,
        budget_period=body.budget_period,
    )
    return created


@router.patch("/{key_id}")
async def update_key(
    key_id: Id,
    body: KeyUpdate,
    caller: Principal = Depends(require_admin),
    ctx: Context = Depends(get_ctx),
) -> KeyInfo:
    """Change a key's name or rate limits; only the fields sent change (null clears a
    limit). A caller with a rate limit (its key's or its user's) can neither clear that
    limit on a key nor set it higher."""
    service.rate_limit_change_within_caller(caller, body.changes())
    return await service.update_key(ctx, key_id, body)


@router.delete("/{key_id}")
async def revoke_key(
    key_id: Id, _: Principal = Depends(require_admin), ctx: Context = Depends(get_ctx)
) -> KeyInfo:
    return await service.revoke_key(ctx, key_id)


@router.post("/{key_id}/budget/reset")
async def reset_budget(
    key_id: Id, _: Principal = Depends(require_admin), ctx: Context = Depends(get_ctx)
) -> KeyInfo:
    """Start a new counting window of the key's budget now: spend before it no longer
    counts against it."""
    await budgets.reset_budget(ctx, "key", key_id)
    return await service.get_key(ctx, key_id)
