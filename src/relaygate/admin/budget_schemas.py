"""The admin API's budget fields: on keys, users and groups, and ``/me``'s budgets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from relaygate.budget import MAX_BUDGET

Amount = Annotated[float, Field(strict=True)] | Annotated[int, Field(strict=True)]
"""A number (a JSON boolean or string is refused)."""


def budget_field(of: str) -> Any:
    return Field(
        default=None,
        ge=0,
        le=MAX_BUDGET,
        allow_inf_nan=False,
        description=f"Most spend per budget_period {of}, in the prices' currency; null: none",
    )


Period = Literal["daily", "weekly", "monthly", "total"]
PERIOD_FIELD = Field(
    default=None,
    description="daily, weekly (from Monday), monthly (calendar, UTC) or total; default monthly",
)


class BudgetOut(BaseModel):
    """A key's, user's or group's budget fields, in their objects."""

    budget: float | None = None
    budget_period: str | None = None
    budget_reset_at: datetime | None = Field(
        default=None, description="When an admin last reset the budget"
    )
    budget_spent: float | None = Field(
        default=None, description="Spend in the current period (null: no budget)"
    )
    budget_resets_at: datetime | None = Field(
        default=None, description="When the current period ends (null: none, or total)"
    )


class OwnBudgetOut(BaseModel):
    """A budget that applies to the caller's requests, and what is left of it."""

    kind: Literal["key", "user", "group"]
    id: int
    name: str
    budget: float
    budget_period: str
    budget_spent: float
    budget_left: float
    budget_resets_at: datetime | None
