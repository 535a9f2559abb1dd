"""The admin API's budget input fields, on keys, users and groups (the answers' budget
fields are :class:`relaygate.services.budgets.BudgetFields`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

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
