"""``/admin/api/v1/me``: self-service for any valid key, admin or not — the caller's own
API keys and own provider keys. Nothing here reaches another user's data."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from relaygate.account_spec import OwnKeyCreate
from relaygate.admin.deps import Id, get_ctx, get_principal
from relaygate.admin.schemas import MeOut, ProviderKeySet
from relaygate.context import Context
from relaygate.services import api_keys, budgets, groups, provider_keys, users
from relaygate.services.api_keys import KeyCreated, KeyInfo
from relaygate.services.provider_keys import ProviderKeyInfo
from relaygate.snapshot import Principal

router = APIRouter(prefix="/me", tags=["me"])


@router.get("")
async def me(caller: Principal = Depends(get_principal), ctx: Context = Depends(get_ctx)) -> MeOut:
    """Who the caller is, their groups, the models this key may use, their own keys and
    the budgets that apply to this key, with what is left of each."""
    user = await users.get_user(ctx, caller.user_id)
    return MeOut(
        user=user,
        groups=await groups.groups_of(ctx, caller.user_id),
        key_id=caller.key_id,
        models=ctx.snapshots.current.model_names(caller),
        provider_keys=await provider_keys.list_own_keys(ctx, user.id),
        budgets=await budgets.own_budgets(ctx, caller),
    )


@router.get("/keys")
async def list_own_keys(
    caller: Principal = Depends(get_principal), ctx: Context = Depends(get_ctx)
) -> list[KeyInfo]:
    return await api_keys.list_keys(ctx, user_id=caller.user_id)


@router.post("/keys", status_code=201)
async def create_own_key(
    body: OwnKeyCreate,
    caller: Principal = Depends(get_principal),
    ctx: Context = Depends(get_ctx),
) -> KeyCreated:
    """A new key for the caller; it can be limited to models and rates but never reaches
    more than the caller's own access, nor a higher rate than the calling key or its
    user has, nor a larger budget than the calling key's (omitted: the calling key's)."""
    created = await api_keys.create_key_within(
        ctx,
        caller,
        user=caller.user_id,
        name=body.name,
        own=True,
        allowed_models=body.allowed_models,
        expires_at=body.expires_at,
        requests_per_minute=body.requests_per_minute,
        tokens_per_minute=body.tokens_per_minute,
        budget=body.budget,
        budget_period=body.budget_period,
    )
    return created


@router.delete("/keys/{key_id}")
async def revoke_own_key(
    key_id: Id, caller: Principal = Depends(get_principal), ctx: Context = Depends(get_ctx)
) -> KeyInfo:
    return await api_keys.revoke_key(ctx, key_id, owner_id=caller.user_id)


@router.get("/provider-keys")
async def list_provider_keys(
    caller: Principal = Depends(get_principal), ctx: Context = Depends(get_ctx)
) -> list[ProviderKeyInfo]:
    return [k for k in await provider_keys.list_own_keys(ctx, caller.user_id)]


@router.put("/provider-keys/{endpoint_id}")
async def set_provider_key(
    endpoint_id: Id,
    body: ProviderKeySet,
    caller: Principal = Depends(get_principal),
    ctx: Context = Depends(get_ctx),
) -> ProviderKeyInfo:
    """Set the caller's own key for an endpoint; their requests there use it. An endpoint
    serving none of the caller's models is answered as nonexistent (admins: any)."""
    info = await provider_keys.set_own_key(
        ctx,
        caller.user_id,
        endpoint_id,
        body.api_key,
        nameable=ctx.snapshots.current.nameable_endpoints(caller),
    )
    return info


@router.delete("/provider-keys/{endpoint_id}", status_code=204)
async def clear_provider_key(
    endpoint_id: Id, caller: Principal = Depends(get_principal), ctx: Context = Depends(get_ctx)
) -> Response:
    await provider_keys.clear_own_key(
        ctx, caller.user_id, endpoint_id, nameable=ctx.snapshots.current.nameable_endpoints(caller)
    )
    return Response(status_code=204)
