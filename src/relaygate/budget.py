"""A budget: the most an API key, a user or a group may spend in a period.

Amounts are in the currency the models' prices are set in (prices per million tokens,
see :func:`relaygate.usage_records.cost_of`); counters hold them in whole nano-units
(:data:`NANOS`), so that Redis and the database add them exactly.

Periods are calendar periods in UTC: ``daily`` (from midnight), ``weekly`` (from
Monday's midnight, ISO weeks), ``monthly`` (from the first of the month) and ``total``
(never resets by itself). An admin's reset starts a new window at once: spend before
``reset_at`` no longer counts. A budget's spend in a window is kept under the counter
named by :meth:`Budget.window`, so a new period or a reset starts a counter of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from relaygate.errors import BadRequest

PERIODS = ("daily", "weekly", "monthly", "total")
NANOS = 1_000_000_000
"""Nano-units per unit of currency: counters hold whole nano-units."""
MAX_BUDGET = 1_000_000_000.0
"""The largest budget that can be set (its nano-units fit a 64-bit counter)."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Window:
    """One budget's current counting window: its counter's ``name``, when it started
    and when it ends (None: a ``total`` budget, which does not reset by itself)."""

    name: str
    start: datetime
    end: datetime | None


BudgetKind = Literal["key", "user", "group"]
"""Whose budget: an API key's, a user's or a group's."""


@dataclass(frozen=True, slots=True)
class Budget:
    """A budget as the request path holds it: whose (``kind`` ``key``, ``user`` or
    ``group``, its ``subject_id`` and ``name``), the ``limit`` (currency) per ``period``
    and the time of the last reset (a Unix time in seconds, or None)."""

    kind: BudgetKind
    subject_id: int
    name: str
    limit: float
    period: str
    reset_at: float | None = None

    @property
    def limit_nanos(self) -> int:
        return to_nanos(self.limit)

    @property
    def label(self) -> str:
        """How a message names it: ``API key 'ci'``, ``user 'ana'``, ``group 'team'``."""
        what = {"key": "API key", "user": "user", "group": "group"}[self.kind]
        return f"{what} {self.name!r}"

    def window(self, now: datetime) -> Window:
        """The window ``now`` falls in: its period's start (or the last reset, when
        later) to the period's end."""
        start, end = period_bounds(self.period, now)
        if self.reset_at is not None:
            reset = datetime.fromtimestamp(self.reset_at, UTC)
            if reset > start:
                start = reset
        stamp = f"{start.timestamp():.6f}".rstrip("0").rstrip(".")
        return Window(f"{self.kind}:{self.subject_id}:{stamp}", start, end)


def budget_of(kind: BudgetKind, row: Any) -> Budget | None:
    """The :class:`Budget` of a key's, user's or group's row (``kind``) or info object
    (with ``id``, ``name``, ``budget``, ``budget_period``, ``budget_reset_at``), or None
    when it has no budget."""
    if row.budget is None:
        return None
    reset = row.budget_reset_at.timestamp() if row.budget_reset_at is not None else None
    return Budget(kind, row.id, row.name, row.budget, row.budget_period or "monthly", reset)


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime | None]:
    """The calendar period (UTC) ``now`` falls in, as (start, end); ``total`` is
    (the Unix epoch, None). Raises ValueError for an unknown period."""
    now = now.astimezone(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return midnight, midnight + timedelta(days=1)
    if period == "weekly":
        start = midnight - timedelta(days=midnight.weekday())
        return start, start + timedelta(days=7)
    if period == "monthly":
        start = midnight.replace(day=1)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else (start.replace(month=start.month + 1))
        )
        return start, end
    if period == "total":
        return EPOCH, None
    raise ValueError(f"unknown budget period {period!r}")


def to_nanos(amount: float) -> int:
    """``amount`` of currency in whole nano-units, rounded up (a reservation never
    falls short of what it stands for)."""
    return math.ceil(round(amount * NANOS, 3))


def from_nanos(nanos: int) -> float:
    return nanos / NANOS


def check_budget(budget: float | None, period: str | None) -> tuple[float | None, str | None]:
    """A budget and its period as stored: (None, None) for no budget, else a number
    from 0 to :data:`MAX_BUDGET` and one of :data:`PERIODS` (``monthly`` when not
    given). Raises :class:`BadRequest` naming the field that is wrong."""
    if period is not None and period not in PERIODS:
        raise BadRequest(
            f"budget_period must be one of {', '.join(PERIODS)}", param="budget_period"
        )
    if budget is None:
        return None, None
    if (
        isinstance(budget, bool)
        or not isinstance(budget, int | float)
        or not math.isfinite(budget)
        or not 0 <= budget <= MAX_BUDGET
    ):
        raise BadRequest(
            f"budget must be a number from 0 to {MAX_BUDGET:.0f}, or null for none",
            param="budget",
        )
    return float(budget), period or "monthly"
