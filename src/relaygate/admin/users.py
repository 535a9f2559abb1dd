"""``/admin/api/v1/users``: create, list, show, update, delete."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from relaygate.account_spec import UserCreate, UserUpdate
from relaygate.admin.deps import Id, get_ctx, require_admin
from relaygate.context import Context
from relaygate.services import api_keys, budgets
from relaygate.services import users as service
from relaygate.services.users import UserInfo
from relaygate.snapshot import Principal

router = APIRouter(prefix="/users", tags=["users"], dependencies=[Depends(require_admin)])


@router.get("")
async def list_users(ctx: Context = Depends(get_ctx)) -> list[UserInfo]:
    return await service.list_users(ctx)


@router.post("", status_code=201)
async def create_user(
    body: UserCreate, caller: Principal = Depends(require_admin), ctx: Context = Depends(get_ctx)
) -> UserInfo:
    """Create a user; a caller with rate limits gives the new user no higher ones (an
    omitted limit takes the caller's)."""
    rpm, tpm = api_keys.rate_limits_within_caller(
        caller, body.requests_per_minute, body.tokens_per_minute
    )
    user = await service.create_user(
        ctx,
        name=body.name,
        email=body.email,
        role=body.role,
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
        budget=body.budget,
        budget_period=body.budget_period,
    )
    return user


@router.get("/{user_id}")
async def get_user(user_id: Id, ctx: Context = Depends(get_ctx)) -> UserInfo:
    return await service.get_user(ctx, user_id)


@router.patch("/{user_id}")
async def update_user(
    user_id: Id,
    body: UserUpdate,
    caller: Principal = Depends(require_admin),
    ctx: Context = Depends(get_ctx),
) -> UserInfo:
    """Change a user; a caller with rate limits can neither clear a user's limit nor raise
    it above its own (its own user's included)."""
    api_keys.rate_limit_change_within_caller(caller, body.changes())
    return await service.update_user(ctx, user_id, body)


@router.delete("/{user_id}", status_code=204)
async def delete_user(user_id: Id, ctx: Context = Depends(get_ctx)) -> Response:
    await service.delete_user(ctx, user_id)
    return Response(status_code=204)


@router.post("/{user_id}/budget/reset")
async def reset_budget(
    user_id: Id, _: Principal = Depends(require_admin), ctx: Context = Depends(get_ctx)
) -> UserInfo:
    """Start a new counting window of the user's budget now: spend before it no longer
    counts against it."""
    await budgets.reset_budget(ctx, "user", user_id)
    return await service.get_user(ctx, user_id)
