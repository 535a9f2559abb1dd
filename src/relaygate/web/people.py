"""Console: users and groups — create, edit, remove; membership; model grants."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from relaygate.account_spec import UserUpdate
from relaygate.budget import PERIODS
from relaygate.inputs import RowId
from relaygate.services import api_keys
from relaygate.services import endpoints as endpoint_service
from relaygate.services import groups as group_service
from relaygate.services import models as model_service
from relaygate.services import users as user_service
from relaygate.web.auth import Admin, AdminChecked, context_of
from relaygate.web.params import FormId, Id
from relaygate.web.render import back, or_back, page

router = APIRouter()
PAGE = "/ui/people"


@router.get("/people")
async def people_page(request: Request, session: Admin) -> Response:
    ctx = context_of(request)
    models = await model_service.list_models(ctx)
    return page(
        request,
        "people.html",
        session,
        users=await user_service.list_users(ctx),
        groups=await group_service.list_groups(ctx),
        models=models,
        endpoints=await endpoint_service.list_endpoints(ctx),
        budgeted_keys=await api_keys.list_keys(ctx, with_budget=True),
        unpriced=[
            m
            for m in models
            if not m.input_cost_per_million_tokens and not m.output_cost_per_million_tokens
        ],
        periods=PERIODS,
    )


async def _do(action: Awaitable[object], message: str) -> Response:
    with or_back(PAGE):
        await action
    return back(PAGE, message)


@router.post("/users")
async def add_user(
    request: Request,
    _: AdminChecked,
    name: Annotated[str, Form()],
    email: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "user",
) -> Response:
    return await _do(
        user_service.create_user(context_of(request), name=name, email=email or None, role=role),
        f"user {name!r} created",
    )


@router.post("/users/{user_id}/edit")
async def edit_user(
    request: Request,
    user_id: Id,
    _: AdminChecked,
    name: Annotated[str, Form()],
    email: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "user",
) -> Response:
    changes = UserUpdate.unchecked(name=name, email=email or None, role=role)
    return await _do(
        user_service.update_user(context_of(request), user_id, changes),
        f"user {name!r} saved",
    )


@router.post("/users/{user_id}/delete")
async def delete_user(request: Request, user_id: Id, _: AdminChecked) -> Response:
    return await _do(
        user_service.delete_user(context_of(request), user_id), "user deleted with their keys"
    )


@router.post("/groups")
async def add_group(
    request: Request,
    _: AdminChecked,
    name: Annotated[str, Form()],
    description: Annotated[str, Form()] = "",
) -> Response:
    return await _do(
        group_service.create_group(context_of(request), name=name, description=description or None),
        f"group {name!r} created",
    )


@router.post("/groups/{group_id}/delete")
async def delete_group(request: Request, group_id: Id, _: AdminChecked) -> Response:
    return await _do(group_service.delete_group(context_of(request), group_id), "group deleted")


@router.post("/groups/{group_id}/members")
async def member(
    request: Request,
    group_id: Id,
    _: AdminChecked,
    user_id: FormId,
    remove: Annotated[str, Form()] = "",
) -> Response:
    return await _do(
        group_service.set_member(context_of(request), group_id, user_id, not remove),
        "membership removed" if remove else "member added",
    )


@router.post("/groups/{group_id}/grants")
async def grant(
    request: Request,
    group_id: Id,
    _: AdminChecked,
    model_id: Annotated[RowId | None, Form()] = None,
    endpoint_id: Annotated[RowId | None, Form()] = None,
    remove: Annotated[str, Form()] = "",
) -> Response:
    ctx = context_of(request)
    if model_id is not None:
        action = group_service.set_model_grant(ctx, group_id, model_id, not remove)
    elif endpoint_id is not None:
        action = group_service.set_endpoint_grant(ctx, group_id, endpoint_id, not remove)
    else:
        return back(PAGE, "choose a model or an endpoint", "error")
    return await _do(action, "grant removed" if remove else "granted")
