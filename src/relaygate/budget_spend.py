"""A budget's spend as the usage records show it: what a counter is rebuilt from when a
store does not hold it (a new period, a restarted process, an emptied Redis)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from relaygate.access import EVERYONE
from relaygate.budget import to_nanos
from relaygate.budget_stores import Line
from relaygate.db.tables import GroupEndpoint, GroupMember, GroupModel, Model, UsageRecord


async def spend_since(engine: AsyncEngine, lines: Sequence[Line]) -> list[int]:
    """The spend (nano-units) of each line's window, from the usage records since its
    start: a key's and a user's by their ids, a group's by its members' (every user's
    for ``everyone``) on the models and endpoints it grants. One query per line."""
    out = []
    async with engine.connect() as connection:
        for line in lines:
            budget, start = line.budget, line.window.start
            query = select(func.coalesce(func.sum(UsageRecord.cost), 0.0)).where(
                UsageRecord.created_at >= start, UsageRecord.cost.is_not(None)
            )
            if budget.kind == "key":
                query = query.where(UsageRecord.key_id == budget.subject_id)
            elif budget.kind == "user":
                query = query.where(UsageRecord.user_id == budget.subject_id)
            else:
                query = query.where(_group_covers(budget.subject_id, budget.name == EVERYONE))
            total = await connection.scalar(query)
            out.append(to_nanos(float(total or 0.0)))
    return out


def _group_covers(group_id: int, everyone: bool) -> Any:
    """The usage records a group's budget counts: on a model or endpoint it grants, by
    a member (any user when ``everyone`` holds every user)."""
    on_endpoint = UsageRecord.endpoint_id.in_(
        select(GroupEndpoint.endpoint_id).where(GroupEndpoint.group_id == group_id)
    )
    on_model = exists(
        select(GroupModel.model_id)
        .join(Model, Model.id == GroupModel.model_id)
        .where(
            GroupModel.group_id == group_id,
            Model.endpoint_id == UsageRecord.endpoint_id,
            Model.upstream_id == UsageRecord.upstream_model,
        )
    )
    covered = or_(on_endpoint, on_model)
    if everyone:
        return covered
    return and_(
        covered,
        UsageRecord.user_id.in_(
            select(GroupMember.user_id).where(GroupMember.group_id == group_id)
        ),
    )
