"""``/admin/api/v1/audit``: the audit log, newest first, filtered and paged (admin keys)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from relaygate.admin.deps import get_ctx, require_admin
from relaygate.context import Context
from relaygate.inputs import ID_MAX
from relaygate.services.audit import MAX_ACTION, MAX_ACTOR, MAX_PAGE, AuditFilter, list_entries

router = APIRouter(prefix="/audit", tags=["audit"], dependencies=[Depends(require_admin)])


class AuditEntryOut(BaseModel):
    """One administrative change: who (``actor_type`` ``user``, ``cli``, ``config`` or
    ``system``; ``actor_id`` and ``actor_name``), when, from which ``address``, the
    ``action``, its target, and ``details``: ``fields`` changed and their non-secret
    new ``values``."""

    id: int
    created_at: datetime
    actor_type: str
    actor_id: int | None
    actor_name: str
    address: str | None
    action: str
    target_type: str
    target_id: str | None
    target_name: str | None
    details: dict[str, Any]


class AuditList(BaseModel):
    """A page of entries, newest first; pass ``last_id`` as ``after`` for the next."""

    object: Literal["list"] = "list"
    data: list[AuditEntryOut]
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
    data = [AuditEntryOut(**asdict(row)) for row in rows]
    return AuditList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=more,
    )
