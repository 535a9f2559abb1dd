"""Console: the audit log (admins, ``/ui/audit``), newest first, filtered by time,
actor and action, a page at a time."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from relaygate.errors import BadRequest
from relaygate.services.audit import MAX_ACTION, MAX_ACTOR, AuditFilter, list_entries
from relaygate.web.auth import Admin, context_of
from relaygate.web.render import or_back, page

router = APIRouter()
PAGE = "/ui/audit"
PAGE_SIZE = 50
MAX_FIELD = 64


def _when(value: str, name: str) -> datetime | None:
    """A date or date and time from a filter field (UTC when it names no zone)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value[:MAX_FIELD])
    except ValueError:
        raise BadRequest(f"{name} must be a date such as 2026-11-01 or 2026-11-01T12:00") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@router.get("/audit")
async def audit_page(
    request: Request,
    session: Admin,
    start: str = "",
    end: str = "",
    actor: str = "",
    action: str = "",
    before: int | None = None,
) -> Response:
    with or_back(PAGE):
        query = AuditFilter(
            start=_when(start, "from"),
            end=_when(end, "to"),
            actor=actor[: MAX_ACTOR + 1] or None,
            action=action[: MAX_ACTION + 1] or None,
            before=before if before and 0 < before < 2**63 else None,
            limit=PAGE_SIZE,
        )
        rows, more = await list_entries(context_of(request), query)
    return page(
        request,
        "audit.html",
        session,
        entries=rows,
        start=start[:MAX_FIELD],
        end=end[:MAX_FIELD],
        actor=actor[:MAX_ACTOR],
        action=action[:MAX_ACTION],
        next_before=rows[-1].id if more else None,
    )
