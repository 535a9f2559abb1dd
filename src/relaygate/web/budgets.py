"""Console: budgets of users, groups and API keys — set, change, clear and reset (admins);
shown on the users & groups page."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from relaygate.account_spec import GroupUpdate, KeyUpdate, UserUpdate
from relaygate.context import Context
from relaygate.errors import BadRequest, NotFound
from relaygate.services import api_keys as key_service
from relaygate.services import budgets as budget_service
from relaygate.services import groups as group_service
from relaygate.services import users as user_service
from relaygate.web.auth import AdminChecked, context_of
from relaygate.web.params import Id
from relaygate.web.render import back, or_back

router = APIRouter()
PAGE = "/ui/people#budgets"
KINDS = ("user", "group", "key")
RETURN_TO = re.compile(r"/ui/users/[0-9]{1,18}")
"""The pages besides :data:`PAGE` a budget form may return to (never another site)."""


def _return_to(text: str) -> str:
    return text if RETURN_TO.fullmatch(text) else PAGE


def _amount(text: str) -> float | None:
    """The budget field as typed: empty clears, else a number (BadRequest otherwise)."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise BadRequest("budget must be a number, or empty for none", param="budget") from None


async def _update(ctx: Context, kind: str, subject_id: int, **changes: Any) -> object:
    if kind == "user":
        return await user_service.update_user(ctx, subject_id, UserUpdate.unchecked(**changes))
    if kind == "group":
        return await group_service.update_group(ctx, subject_id, GroupUpdate.unchecked(**changes))
    return await key_service.update_key(ctx, subject_id, KeyUpdate.unchecked(**changes))


@router.post("/budgets/{kind}/{subject_id}")
async def set_budget(
    request: Request,
    kind: str,
    subject_id: Id,
    _: AdminChecked,
    budget: Annotated[str, Form()] = "",
    budget_period: Annotated[str, Form()] = "monthly",
    return_to: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Set (or, with an empty amount, clear) the budget of a user, group or key; back to
    the users page, or to the user's own page when ``return_to`` names it."""
    to = _return_to(return_to)
    if kind not in KINDS:
        return back(to, f"no budgets on {kind!r}", "error")
    with or_back(to):
        amount = _amount(budget)
        await _update(
            context_of(request),
            kind,
            subject_id,
            budget=amount,
            budget_period=budget_period if amount is not None else None,
        )
    return back(
        to, f"{budget_service.WHAT[kind]} budget {'saved' if amount is not None else 'cleared'}"
    )


@router.post("/budgets/{kind}/{subject_id}/reset")
async def reset_budget(request: Request, kind: str, subject_id: Id, _: AdminChecked) -> Response:
    """Start a new window of the budget now: spend before it no longer counts."""
    if kind not in KINDS:
        return back(PAGE, f"no budgets on {kind!r}", "error")
    try:
        await budget_service.reset_budget(context_of(request), kind, subject_id)
    except (NotFound, BadRequest) as exc:
        return back(PAGE, exc.message, "error")
    return back(PAGE, f"{budget_service.WHAT[kind]} budget reset: a new window starts now")
