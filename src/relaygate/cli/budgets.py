"""The budget options shared by ``users``, ``keys`` and ``groups`` commands."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from relaygate.budget import PERIODS
from relaygate.inputs import given

BudgetOption = Annotated[
    float | None,
    typer.Option("--budget", min=0, help="Most spend per --budget-period, in the prices' currency"),
]
PeriodOption = Annotated[
    str | None,
    typer.Option("--budget-period", help=f"One of {', '.join(PERIODS)} (default monthly)"),
]
ClearBudget = Annotated[bool, typer.Option("--clear-budget", help="Remove the budget")]


def budget_change(budget: float | None, period: str | None, clear: bool) -> dict[str, Any]:
    """The budget options as a change's fields (those not given left out):
    ``--clear-budget`` clears it."""
    if clear:
        return {"budget": None}
    return given(budget=budget, budget_period=period)


def budget_text(info: Any) -> str:
    """``budget 5 per monthly period, 0.25 spent, resets 2031-02-01T00:00:00Z`` or
    ``no budget``, for an info object with budget fields."""
    if info.budget is None:
        return "no budget"
    text = f"budget {info.budget:g} per {info.budget_period} period"
    if info.budget_spent is not None:
        text += f", {info.budget_spent:.6g} spent"
    if info.budget_resets_at is not None:
        text += f", resets {info.budget_resets_at.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    return text


BUDGET_COLUMNS = ["budget", "budget_period", "budget_spent", "budget_resets_at"]
