"""Reading the audit log (:mod:`relaygate.audit` writes it): entries newest first,
filtered by time, actor and action, a page at a time."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, select

from relaygate import audit
from relaygate.context import Context
from relaygate.db.pruning import delete_older, keep_pruning
from relaygate.db.tables import AuditEntry
from relaygate.errors import BadRequest

ACTION = re.compile(r"[a-z_]+(\.[a-z_]+)*\.?")
"""An action filter: a dotted name (``endpoint.update``), or a prefix ending in a dot
(``endpoint.``) for every action under it."""
MAX_ACTION = 64
MAX_ACTOR = 200
MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What to list: entries from ``start`` (inclusive) to ``end`` (exclusive), by the
    actor named (a user's name or id, or ``cli``, ``config``, ``system``), of an action
    (exact, or a prefix ending in ``.``), older than the entry ``before`` (paging)."""

    start: datetime | None = None
    end: datetime | None = None
    actor: str | None = None
    action: str | None = None
    before: int | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One entry as listed (the admin API serves it as it is): who (``actor_type``
    ``user``, ``cli``, ``config`` or ``system``; ``actor_id`` and ``actor_name``), when,
    from which ``address``, the ``action``, its target, and ``details``: ``fields``
    changed and their non-secret new ``values``."""

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


def check_filter(query: AuditFilter) -> None:
    """Raise :class:`BadRequest` (naming the parameter) for a filter out of bounds."""
    if query.action is not None and (
        len(query.action) > MAX_ACTION or not ACTION.fullmatch(query.action)
    ):
        raise BadRequest(
            "action must be a dotted name such as endpoint.update, or a prefix such as "
            f"endpoint. (at most {MAX_ACTION} characters)",
            param="action",
        )
    if query.actor is not None and not 0 < len(query.actor) <= MAX_ACTOR:
        raise BadRequest(f"actor must be 1 to {MAX_ACTOR} characters", param="actor")
    if not 1 <= query.limit <= MAX_PAGE:
        raise BadRequest(f"limit must be from 1 to {MAX_PAGE}", param="limit")
    if query.start and query.end and query.start > query.end:
        raise BadRequest("from must not be after to", param="from")


def _conditions(query: AuditFilter) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if query.start is not None:
        found.append(AuditEntry.created_at >= query.start)
    if query.end is not None:
        found.append(AuditEntry.created_at < query.end)
    if query.actor is not None:
        by_name = AuditEntry.actor_name == query.actor
        if query.actor.isdigit() and int(query.actor) < 2**31:
            found.append(or_(by_name, AuditEntry.actor_id == int(query.actor)))
        else:
            found.append(by_name)
    if query.action is not None:
        if query.action.endswith("."):
            # The pattern allows no % or _ wildcard other than _ itself: escape it.
            prefix = query.action.replace("_", r"\_")
            found.append(AuditEntry.action.like(prefix + "%", escape="\\"))
        else:
            found.append(AuditEntry.action == query.action)
    if query.before is not None:
        found.append(AuditEntry.id < query.before)
    return found


async def list_entries(ctx: Context, query: AuditFilter) -> tuple[list[AuditRecord], bool]:
    """Up to ``query.limit`` entries matching ``query``, newest first, and whether more
    follow. Raises :class:`BadRequest` for a filter out of bounds."""
    check_filter(query)
    async with ctx.sessions() as session:
        rows = (
            await session.scalars(
                select(AuditEntry)
                .where(*_conditions(query))
                .order_by(AuditEntry.id.desc())
                .limit(query.limit + 1)
            )
        ).all()
    return [_record(row) for row in rows[: query.limit]], len(rows) > query.limit


def _record(row: AuditEntry) -> AuditRecord:
    return AuditRecord(
        id=row.id,
        created_at=row.created_at,
        actor_type=row.actor_type,
        actor_id=row.actor_id,
        actor_name=row.actor_name,
        address=row.address,
        action=row.action,
        target_type=row.target_type,
        target_id=row.target_id,
        target_name=row.target_name,
        details=dict(row.details or {}),
    )


async def prune_audit_once(ctx: Context, older_than: datetime) -> int:
    """Delete audit entries created before ``older_than``, in small batches
    (:func:`relaygate.db.pruning.delete_older`), and record that it did (an
    ``audit.prune`` entry by ``system``: the log never loses entries without a trace);
    returns how many."""
    removed = await delete_older(ctx.sessions, AuditEntry.id, AuditEntry.created_at, older_than)
    if removed:
        await audit.record(
            ctx,
            "audit.prune",
            target_type="audit_log",
            values={"deleted": removed, "older_than": older_than.isoformat()},
            actor=audit.SYSTEM,
        )
    return removed


async def prune_audit(ctx: Context, stop: asyncio.Event) -> None:
    """With ``audit_retention_days`` set, delete older audit entries at start and then
    hourly until ``stop``; failures are logged and retried next time."""
    days = ctx.settings.audit_retention_days
    await keep_pruning(stop, days, lambda older: prune_audit_once(ctx, older), "audit entries")
