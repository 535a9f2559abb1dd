"""Console: one user as administrators see it (``/ui/users/{id}``) — their groups, rate
limits (editable), budget, API keys (create one for them, shown once; revoke; each key's
rate limits editable) and usage over the last 7 days.

An administrator whose own key or user is rate limited can neither create a key nor set
a limit above those limits here, as in the admin API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from relaygate.account_spec import KeyUpdate, UserUpdate
from relaygate.budget import PERIODS
from relaygate.errors import BadRequest, NotFound
from relaygate.services import api_keys
from relaygate.services import groups as group_service
from relaygate.services import users as user_service
from relaygate.services.web_sessions import ConsoleSession
from relaygate.web.auth import Admin, AdminChecked, context_of
from relaygate.web.params import Id
from relaygate.web.render import back, or_back, page
from relaygate.web.usage import last_days, usage_view

router = APIRouter()
USAGE_DAYS = 7
Limit = Annotated[str, Form(max_length=20)]


def user_page(user_id: int) -> str:
    return f"/ui/users/{user_id}"


def limit_of(text: str, param: str) -> int | None:
    """A rate-limit field as typed: blank is no limit, else a whole number (the service
    checks it is positive); raises :class:`BadRequest` otherwise."""
    text = text.strip().replace(",", "")
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise BadRequest(
            f"{param.replace('_', ' ')} must be a whole number, or blank for no limit",
            param=param,
        ) from None


async def _user(
    request: Request, session: ConsoleSession, user_id: int, new_key: str | None = None
) -> Response:
    ctx = context_of(request)
    user = await user_service.get_user(ctx, user_id)
    window = last_days(USAGE_DAYS)
    return page(
        request,
        "user.html",
        session,
        user=user,
        groups=[g for g in await group_service.list_groups(ctx) if g.builtin or user.id in g.users],
        keys=await api_keys.list_keys(ctx, user_id=user.id),
        new_key=new_key,
        usage_window=window,
        usage=await usage_view(ctx, window, group_by="model", user_id=user.id),
        periods=PERIODS,
    )


@router.get("/users/{user_id}")
async def user_detail(request: Request, user_id: Id, session: Admin) -> Response:
    """The user's page; a user that does not exist is the 404 page."""
    return await _user(request, session, user_id)


@router.post("/users/{user_id}/limits")
async def set_user_limits(
    request: Request,
    user_id: Id,
    session: AdminChecked,
    requests_per_minute: Limit = "",
    tokens_per_minute: Limit = "",
) -> Response:
    """Set or clear (blank) the user's limits, for all their keys together."""
    with or_back(user_page(user_id)):
        limits = _limits(session, requests_per_minute, tokens_per_minute)
        user = await user_service.update_user(
            context_of(request), user_id, UserUpdate.unchecked(**limits)
        )
    return back(user_page(user_id), f"rate limits of {user.name!r} saved")


@router.post("/users/{user_id}/disabled")
async def set_disabled(
    request: Request,
    user_id: Id,
    _: AdminChecked,
    disabled: Annotated[str, Form()] = "",
) -> Response:
    """Disable the user (``disabled=1``: their keys revoked, sessions ended, sign-ins
    refused) or enable them again (anything else)."""
    with or_back(user_page(user_id)):
        user = await user_service.update_user(
            context_of(request), user_id, UserUpdate(disabled=disabled == "1")
        )
    state = "disabled: their API keys are revoked" if user.disabled else "enabled"
    return back(user_page(user_id), f"{user.name!r} {state}")


@router.post("/users/{user_id}/keys")
async def create_key(
    request: Request,
    user_id: Id,
    session: AdminChecked,
    name: Annotated[str, Form(max_length=200)] = "key",
    requests_per_minute: Limit = "",
    tokens_per_minute: Limit = "",
) -> Response:
    """Create a key for the user and show it on their page, this once."""
    with or_back(user_page(user_id)):
        created = await api_keys.create_key_within(
            context_of(request),
            session.principal,
            user=user_id,
            name=name,
            own=False,
            requests_per_minute=limit_of(requests_per_minute, "requests_per_minute"),
            tokens_per_minute=limit_of(tokens_per_minute, "tokens_per_minute"),
        )
    # Rendered directly, never put in a URL: the key is shown this once.
    return await _user(request, session, user_id, new_key=created.key)


def _limits(session: ConsoleSession, requests: str, tokens: str) -> dict[str, Any]:
    """The requests and tokens per minute typed (blank: no limit) as a change's fields,
    within the caller's own limits
    (:func:`relaygate.services.api_keys.rate_limit_change_within_caller`)."""
    limits = {
        "requests_per_minute": limit_of(requests, "requests_per_minute"),
        "tokens_per_minute": limit_of(tokens, "tokens_per_minute"),
    }
    api_keys.rate_limit_change_within_caller(session.principal, limits)
    return limits


async def _own_key(request: Request, user_id: int, key_id: int) -> None:
    """Raise :class:`NotFound` unless key ``key_id`` belongs to user ``user_id``."""
    key = await api_keys.get_key(context_of(request), key_id)
    if key.user_id != user_id:
        raise NotFound(f"no API key with id {key_id}")


@router.post("/users/{user_id}/keys/{key_id}/limits")
async def set_key_limits(
    request: Request,
    user_id: Id,
    key_id: Id,
    session: AdminChecked,
    requests_per_minute: Limit = "",
    tokens_per_minute: Limit = "",
) -> Response:
    """Set or clear (blank) one of the user's keys' own limits."""
    with or_back(user_page(user_id)):
        await _own_key(request, user_id, key_id)
        limits = _limits(session, requests_per_minute, tokens_per_minute)
        key = await api_keys.update_key(context_of(request), key_id, KeyUpdate.unchecked(**limits))
    return back(user_page(user_id), f"rate limits of key {key.name!r} saved")


@router.post("/users/{user_id}/keys/{key_id}/revoke")
async def revoke_key(request: Request, user_id: Id, key_id: Id, _: AdminChecked) -> Response:
    """Revoke one of the user's keys: requests with it are refused from now on."""
    with or_back(user_page(user_id)):
        key = await api_keys.revoke_key(context_of(request), key_id, owner_id=user_id)
    return back(user_page(user_id), f"key {key.name!r} revoked")
