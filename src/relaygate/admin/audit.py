"""``/admin/api/v1/audit``: the audit log, newest first, filtered and paged (admin keys)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from relaygate.admin.deps import get_ctx, require_admin
from relaygate.context import Context
from relaygate.inputs import ID_MAX
from relaygate.services.audit import (
    MAX_ACTION,
    MAX_ACTOR,
    MAX_PAGE,
    AuditFilter,
    AuditRecord,
    list_entries,
)

router = APIRouter(prefix="/audit", tags=["audit"], dependencies=[Depends(require_admin)])


class AuditList(BaseModel):
    """A page of entries, newest first; pass ``last_id`` as ``after`` for the next."""

    object: Literal["list"] = "list"
    data: list[AuditRecord]
    first_id: int | None
    last_id: int | None
    has_more: bool


@router.get("")
async def list_audit(
    ctx: Context = Depends(get_ctx),
    start: Annotated[
        datetime | None, Query(alias="from", description="Start (ISO 8601, inclusive)")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="End (exclusive)")] = None,
    actor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_ACTOR,
            description="A user's name or id; cli, config or system",
        ),
    ] = None,
    action: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_ACTION,
            description="An action (endpoint.update) or a prefix ending in . (endpoint.)",
        ),
    ] = None,
    after: Annotated[
        int | None, Query(ge=1, le=ID_MAX, description="The last id of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> AuditList:
    """Administrative changes, newest first, from ``from`` to ``to``, by ``actor``, of
    ``action``."""
    query = AuditFilter(start=start, end=end, actor=actor, action=action, before=after, limit=limit)
    rows, more = await list_entries(ctx, query)
    data = rows
    return AuditList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=more,
    )
