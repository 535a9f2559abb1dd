"""``/admin/api/v1/groups``: groups, their members, and model / endpoint grants."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from relaygate.account_spec import GroupCreate, GroupUpdate
from relaygate.admin.deps import Id, get_ctx, require_admin
from relaygate.context import Context
from relaygate.services import budgets
from relaygate.services import groups as service
from relaygate.services.groups import GroupInfo

router = APIRouter(prefix="/groups", tags=["groups"], dependencies=[Depends(require_admin)])


@router.get("")
async def list_groups(ctx: Context = Depends(get_ctx)) -> list[GroupInfo]:
    return await service.list_groups(ctx)


@router.post("", status_code=201)
async def create_group(body: GroupCreate, ctx: Context = Depends(get_ctx)) -> GroupInfo:
    group = await service.create_group(
        ctx,
        name=body.name,
        description=body.description,
        budget=body.budget,
        budget_period=body.budget_period,
    )
    return group


@router.get("/{group_id}")
async def get_group(group_id: Id, ctx: Context = Depends(get_ctx)) -> GroupInfo:
    return await service.get_group(ctx, group_id)


@router.patch("/{group_id}")
async def update_group(
    group_id: Id, body: GroupUpdate, ctx: Context = Depends(get_ctx)
) -> GroupInfo:
    return await service.update_group(ctx, group_id, body)


@router.delete("/{group_id}", status_code=204)
async def delete_group(group_id: Id, ctx: Context = Depends(get_ctx)) -> Response:
    await service.delete_group(ctx, group_id)
    return Response(status_code=204)


@router.put("/{group_id}/users/{user_id}")
async def add_member(group_id: Id, user_id: Id, ctx: Context = Depends(get_ctx)) -> GroupInfo:
    return await service.set_member(ctx, group_id, user_id, True)


@router.delete("/{group_id}/users/{user_id}")
async def remove_member(group_id: Id, user_id: Id, ctx: Context = Depends(get_ctx)) -> GroupInfo:
    return await service.set_member(ctx, group_id, user_id, False)


@router.put("/{group_id}/models/{model_id}")
async def grant_model(group_id: Id, model_id: Id, ctx: Context = Depends(get_ctx)) -> GroupInfo:
    return await service.set_model_grant(ctx, group_id, model_id, True)


@router.delete("/{group_id}/models/{model_id}")
async def revoke_model(group_id: Id, model_id: Id, ctx: Context = Depends(get_ctx)) -> GroupInfo:
    return await service.set_model_grant(ctx, group_id, model_id, False)


@router.put("/{group_id}/endpoints/{endpoint_id}")
async def grant_endpoint(
    group_id: Id, endpoint_id: Id, ctx: Context = Depends(get_ctx)
) -> GroupInfo:
    return await service.set_endpoint_grant(ctx, group_id, endpoint_id, True)


@router.delete("/{group_id}/endpoints/{endpoint_id}")
async def revoke_endpoint(
    group_id: Id, endpoint_id: Id, ctx: Context = Depends(get_ctx)
) -> GroupInfo:
    return await service.set_endpoint_grant(ctx, group_id, endpoint_id, False)


@router.post("/{group_id}/budget/reset")
async def reset_budget(group_id: Id, ctx: Context = Depends(get_ctx)) -> GroupInfo:
    """Start a new counting window of the group's budget now: spend before it no longer
    counts against it."""
    await budgets.reset_budget(ctx, "group", group_id)
    return await service.get_group(ctx, group_id)
