"""``/admin/api/v1/usage`` (admin keys: everyone's) and ``/admin/api/v1/me/usage`` (any
key: the caller's own): requests, tokens and cost over a time range, grouped."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from relaygate.admin.deps import get_ctx, get_principal, require_admin
from relaygate.admin.schemas import UsageOut
from relaygate.context import Context
from relaygate.db.tables import utcnow
from relaygate.services.usage import total_of, usage_report
from relaygate.snapshot import Principal

router = APIRouter(prefix="/usage", tags=["usage"], dependencies=[Depends(require_admin)])
me_router = APIRouter(prefix="/me", tags=["me"])

GroupBy = Literal["user", "key", "model", "endpoint", "day"]
From = Annotated[
    datetime | None,
    Query(alias="from", description="Start (ISO 8601, inclusive); default: 7 days before 'to'"),
]
To = Annotated[datetime | None, Query(alias="to", description="End (exclusive); default: now")]


async def _report(
    ctx: Context, start: datetime | None, end: datetime | None, group_by: str, user: int | None
) -> UsageOut:
    end = end or utcnow()
    rows = await usage_report(ctx, start=start, end=end, group_by=group_by, user_id=user)
    return UsageOut(
        group_by=group_by,
        to=end,
        rows=rows,
        total=total_of(rows),
    )


@router.get("")
async def usage(
    start: From = None,
    end: To = None,
    group_by: GroupBy = "model",
    user_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    ctx: Context = Depends(get_ctx),
) -> UsageOut:
    """Everyone's usage (or one user's) from ``from`` to ``to``, grouped by ``group_by``."""
    return await _report(ctx, start, end, group_by, user_id)


@me_router.get("/usage")
async def own_usage(
    start: From = None,
    end: To = None,
    group_by: GroupBy = "model",
    caller: Principal = Depends(get_principal),
    ctx: Context = Depends(get_ctx),
) -> UsageOut:
    """The caller's own usage (all their keys), grouped by ``group_by``."""
    return await _report(ctx, start, end, group_by, caller.user_id)
