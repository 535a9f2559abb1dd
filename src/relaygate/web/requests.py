"""Console: recent requests (``/ui/requests``, administrators) — the usage records,
newest first, filtered by user, model, endpoint, outcome and time range, a page at a
time."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from relaygate.errors import BadRequest
from relaygate.services.recent_requests import (
    MAX_PAGE,
    Outcome,
    RequestFilter,
    filter_choices,
    recent_requests,
)
from relaygate.web.auth import Admin, context_of
from relaygate.web.params import id_in
from relaygate.web.render import page

router = APIRouter()
PAGE_SIZE = 50
"""Records per page unless ``limit`` asks for another number (up to :data:`MAX_PAGE`)."""
FILTERS = ("user", "model", "endpoint", "status", "from", "to", "limit")
"""The query parameters a page link carries on to the next page."""


def _number(value: str | None, name: str) -> int | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise BadRequest(f"{name} must be a whole number", param=name)
    return int(text)


def _time(value: str | None, name: str) -> datetime | None:
    """A time from the filter form (``YYYY-MM-DDTHH:MM[:SS]`` or a date, UTC)."""
    if value is None or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip()[:40])
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # overflow: a zone moving it past year 1 or 9999
        raise BadRequest(
            f"{name} must be a date and time such as 2026-01-31T14:00 (UTC)", param=name
        ) from None


def _outcome(value: str | None) -> Outcome | None:
    if value in (None, ""):
        return None
    if value == "ok":
        return "ok"
    if value == "error":
        return "error"
    raise BadRequest("status must be 'ok' or 'error'", param="status")


@router.get("/requests")
async def requests_page(request: Request, session: Admin) -> Response:
    """A page of recent requests; the query holds the filters (``user``, ``model``,
    ``endpoint``, ``status``, ``from``, ``to``), ``before`` (the page cursor) and
    ``limit`` (1 to :data:`MAX_PAGE`, default :data:`PAGE_SIZE`). A bad value is a 400
    page naming it."""
    query = request.query_params
    model = (query.get("model") or "").strip()
    if len(model) > 500:
        raise BadRequest("model must be at most 500 characters", param="model")
    wanted = RequestFilter(
        user_id=id_in(query.get("user"), "user"),
        model=model or None,
        endpoint_id=id_in(query.get("endpoint"), "endpoint"),
        outcome=_outcome(query.get("status")),
        start=_time(query.get("from"), "from"),
        end=_time(query.get("to"), "to"),
        before=_number(query.get("before"), "before"),
    )
    limit = _number(query.get("limit"), "limit") or PAGE_SIZE
    ctx = context_of(request)
    found = await recent_requests(ctx, wanted, limit)
    users, endpoints = await filter_choices(ctx)
    kept = {name: query[name] for name in FILTERS if query.get(name)}
    older = None
    if found.older is not None:
        older = "/ui/requests?" + urlencode({**kept, "before": found.older})
    return page(
        request,
        "requests.html",
        session,
        active="requests",
        rows=found.rows,
        older=older,
        newest="/ui/requests?" + urlencode(kept) if wanted.before is not None else None,
        users=users,
        endpoints=endpoints,
        chosen=kept,
        max_page=MAX_PAGE,
    )
