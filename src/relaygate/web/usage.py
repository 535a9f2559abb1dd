"""Console: usage — tokens per day by model as a stacked bar chart and everyone's
requests, tokens and cost by user (admins, ``/ui/usage``); :func:`usage_view` builds the
same for one user's own requests, which "My account" shows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import Response

from relaygate.context import Context
from relaygate.db.tables import utcnow
from relaygate.services.usage import DailyTokens, UsageRow, daily_tokens, total_of, usage_report
from relaygate.web.auth import Admin, context_of
from relaygate.web.charts import StackedBars, stacked_bars
from relaygate.web.render import page

router = APIRouter()
RANGES = (7, 30)
"""The ranges the usage page offers, in days."""


@dataclass(frozen=True, slots=True)
class Window:
    """The last ``days`` UTC calendar days, today included: from ``start`` (midnight)
    to ``end`` (tomorrow's midnight); ``names`` holds each day as ``YYYY-MM-DD``."""

    days: int
    start: datetime
    end: datetime
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UsageView:
    """What a usage section shows: the window, the chart of tokens per day by model, the
    rows of the table as (label, row) and their total."""

    window: Window
    chart: StackedBars
    rows: list[tuple[str, UsageRow]]
    total: UsageRow


def last_days(days: int, now: datetime | None = None) -> Window:
    """The window of the last ``days`` UTC days up to ``now`` (default: the current time)."""
    today = (now or utcnow()).astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, time(), UTC)
    names = tuple((first + timedelta(days=i)).isoformat() for i in range(days))
    return Window(days, start, start + timedelta(days=days), names)


def tokens_chart(points: Sequence[DailyTokens], window: Window) -> StackedBars:
    """Total tokens per day of ``window`` (days without records at 0), stacked by model."""
    index = {day: i for i, day in enumerate(window.names)}
    values: dict[str, list[int]] = {}
    for point in points:
        if point.day in index:
            per_day = values.setdefault(point.model, [0] * window.days)
            per_day[index[point.day]] += point.total_tokens
    days = [date.fromisoformat(name) for name in window.names]
    return stacked_bars(
        window.names,
        values,
        title=f"Tokens per day by model, last {window.days} days (UTC)",
        unit="tokens",
        labels=[f"{day.day} {day:%b}" for day in days],
    )


def _label(row: UsageRow, group_by: str) -> str:
    if group_by == "user" and row.name is None:
        return f"user #{row.group} (deleted)"
    return str(row.name if row.name is not None else row.group)


async def usage_view(
    ctx: Context, window: Window, *, group_by: str, user_id: int | None = None
) -> UsageView | None:
    """The chart and a table grouped by ``group_by`` (``user`` or ``model``) of the
    records in ``window``, only ``user_id``'s when given; None when there are none."""
    rows = await usage_report(
        ctx, start=window.start, end=window.end, group_by=group_by, user_id=user_id
    )
    if not rows:
        return None
    points = await daily_tokens(ctx, start=window.start, end=window.end, user_id=user_id)
    return UsageView(
        window=window,
        chart=tokens_chart(points, window),
        rows=[(_label(row, group_by), row) for row in rows],
        total=total_of(rows, "Total"),
    )


@router.get("/usage")
async def usage_page(request: Request, session: Admin, days: int = RANGES[0]) -> Response:
    """Everyone's usage over the last ``days`` (one of :data:`RANGES`; others fall back
    to the first)."""
    window = last_days(days if days in RANGES else RANGES[0])
    view = await usage_view(context_of(request), window, group_by="user")
    return page(request, "usage.html", session, window=window, ranges=RANGES, view=view)
