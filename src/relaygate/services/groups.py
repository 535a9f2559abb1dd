"""Groups: membership, and grants of models or whole endpoints.

The built-in ``everyone`` group holds every user implicitly; it cannot be renamed,
deleted or given members, but models and endpoints are granted to it like to any group.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from relaygate.access import EVERYONE
from relaygate.account_spec import GroupUpdate
from relaygate.budget import check_budget
from relaygate.changes import unit
from relaygate.context import Context
from relaygate.db.lookup import find_by_id_or_name
from relaygate.db.tables import Endpoint, Group, GroupEndpoint, GroupMember, GroupModel, Model
from relaygate.errors import BadRequest, Conflict, NotFound
from relaygate.services.budgets import BudgetFields, apply_budget, with_spend
from relaygate.services.users import find_user


@dataclass(frozen=True, slots=True)
class GroupInfo(BudgetFields):
    """A group with its members (user ids) and grants (model and endpoint ids)."""

    id: int
    name: str
    description: str | None
    builtin: bool
    created_at: datetime
    users: list[int]
    models: list[int]
    endpoints: list[int]


async def find_group(session: AsyncSession, ident: int | str) -> Group:
    """The group with id ``ident`` (or that name); raises :class:`NotFound`."""
    return await find_by_id_or_name(session, Group, ident, "group")


async def _info(session: AsyncSession, group: Group) -> GroupInfo:
    users = await session.scalars(
        select(GroupMember.user_id).where(GroupMember.group_id == group.id).order_by("user_id")
    )
    models = await session.scalars(
        select(GroupModel.model_id).where(GroupModel.group_id == group.id).order_by("model_id")
    )
    endpoints = await session.scalars(
        select(GroupEndpoint.endpoint_id)
        .where(GroupEndpoint.group_id == group.id)
        .order_by("endpoint_id")
    )
    return GroupInfo(
        group.id,
        group.name,
        group.description,
        group.builtin,
        group.created_at,
        list(users),
        list(models),
        list(endpoints),
        budget=group.budget,
        budget_period=group.budget_period,
        budget_reset_at=group.budget_reset_at,
    )


async def list_groups(ctx: Context) -> list[GroupInfo]:
    """Every group, with their budgets' spend."""
    async with ctx.sessions() as session:
        groups = (await session.scalars(select(Group).order_by(Group.id))).all()
        infos = [await _info(session, group) for group in groups]
    return await with_spend(ctx, "group", infos)


async def get_group(ctx: Context, ident: int | str) -> GroupInfo:
    """The group with id or name ``ident``, with its budget's spend; raises NotFound."""
    async with ctx.sessions() as session:
        info = await _info(session, await find_group(session, ident))
    return (await with_spend(ctx, "group", [info]))[0]


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise BadRequest("name must be 1 to 200 characters", param="name")
    return name


async def create_group(
    ctx: Context,
    *,
    name: str,
    description: str | None = None,
    budget: float | None = None,
    budget_period: str | None = None,
) -> GroupInfo:
    """Create a group, with an optional budget shared by its members per
    ``budget_period``; raises :class:`Conflict` when the name is taken, BadRequest for a
    bad budget."""
    budget, budget_period = check_budget(budget, budget_period)
    group = Group(
        name=_check_name(name),
        description=description,
        builtin=False,
        budget=budget,
        budget_period=budget_period,
    )
    try:
        async with unit(ctx) as session:
            session.add(group)
    except IntegrityError:
        raise Conflict(f"a group named {group.name!r} already exists", param="name") from None
    return await get_group(ctx, group.id)


async def update_group(
    ctx: Context,
    ident: int | str,
    changes: GroupUpdate,
) -> GroupInfo:
    """Apply the fields ``changes`` sent: rename or describe a group, or set its budget
    (None clears it); the built-in group keeps its name (Conflict)."""
    sent = changes.changes()
    try:
        async with unit(ctx) as session:
            group = await find_group(session, ident)
            if "name" in sent and sent["name"] != group.name:
                if group.builtin:
                    raise Conflict(f"the built-in group {group.name!r} cannot be renamed")
                group.name = _check_name(sent["name"])
            if "description" in sent:
                group.description = sent["description"]
            apply_budget(group, sent)
            group_id = group.id
    except IntegrityError:
        raise Conflict(f"a group named {sent.get('name')!r} already exists", param="name") from None
    return await get_group(ctx, group_id)


async def delete_group(ctx: Context, ident: int | str) -> None:
    """Delete a group with its memberships and grants; not the built-in one (Conflict)."""
    async with unit(ctx) as session:
        group = await find_group(session, ident)
        if group.builtin:
            raise Conflict(f"the built-in group {group.name!r} cannot be deleted")
        await session.delete(group)


async def set_member(ctx: Context, group: int | str, user: int | str, member: bool) -> GroupInfo:
    """Add (``member``) or remove a user; idempotent. Changes reach the proxy at once."""
    async with unit(ctx) as session:
        found = await find_group(session, group)
        if found.name == EVERYONE and found.builtin:
            raise Conflict(f"every user is in {EVERYONE!r}; its members cannot be changed")
        user_id = (await find_user(session, user)).id
        present = await session.get(GroupMember, (found.id, user_id))
        if member and present is None:
            session.add(GroupMember(group_id=found.id, user_id=user_id))
        elif not member and present is not None:
            await session.delete(present)
        group_id = found.id
    return await get_group(ctx, group_id)


async def _set_grant(
    ctx: Context,
    group: int | str,
    grant: type[GroupModel] | type[GroupEndpoint],
    subject: type[Model] | type[Endpoint],
    subject_id: int,
    granted: bool,
) -> GroupInfo:
    """Add (``granted``) or remove one grant row; idempotent. Changes reach the proxy at once."""
    async with unit(ctx) as session:
        found = await find_group(session, group)
        if await session.get(subject, subject_id) is None:
            raise NotFound(f"no {subject.__tablename__[:-1]} with id {subject_id}")
        present = await session.get(grant, (found.id, subject_id))
        if granted and present is None:
            session.add(grant(group_id=found.id, **{_column(grant): subject_id}))
        elif not granted and present is not None:
            await session.delete(present)
        group_id = found.id
    return await get_group(ctx, group_id)


def _column(grant: type[GroupModel] | type[GroupEndpoint]) -> str:
    return "model_id" if grant is GroupModel else "endpoint_id"


async def set_model_grant(
    ctx: Context, group: int | str, model_id: int, granted: bool
) -> GroupInfo:
    """Grant a model to a group, or take the grant back; idempotent."""
    return await _set_grant(ctx, group, GroupModel, Model, model_id, granted)


async def set_endpoint_grant(
    ctx: Context, group: int | str, endpoint_id: int, granted: bool
) -> GroupInfo:
    """Grant every model of an endpoint (present and future) to a group, or take it back."""
    return await _set_grant(ctx, group, GroupEndpoint, Endpoint, endpoint_id, granted)


async def groups_of(ctx: Context, user_id: int) -> list[str]:
    """Names of the groups a user is in, ``everyone`` included."""
    async with ctx.sessions() as session:
        names = await session.scalars(
            select(Group.name).join(GroupMember).where(GroupMember.user_id == user_id)
        )
        return [EVERYONE, *sorted(set(names) - {EVERYONE})]
