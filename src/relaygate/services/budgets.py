"""Budgets as the admin API, the CLI and the console set, show and reset them (see
:mod:`relaygate.budget` for what a budget is and :mod:`relaygate.budgets` for how
requests are held to it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Protocol, TypeVar

from pydantic import ConfigDict, Field

from relaygate.budget import BudgetKind, budget_of, check_budget
from relaygate.changes import unit
from relaygate.context import Context
from relaygate.db.lookup import find_by_id_or_name
from relaygate.db.tables import ApiKey, Group, User
from relaygate.errors import BadRequest, NotFound, PermissionDenied
from relaygate.snapshot import Principal

TABLES: dict[str, Any] = {"key": ApiKey, "user": User, "group": Group}
WHAT = {"key": "API key", "user": "user", "group": "group"}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BudgetFields:
    """A key's, user's or group's budget fields, in its record (and so in the admin API's
    answers, which serve records as they are: README, "Budgets"). Records subclass it;
    their attribute docstrings become the API's field descriptions."""

    __pydantic_config__ = ConfigDict(use_attribute_docstrings=True)

    budget: Annotated[
        float | None,
        Field(description="Most spend per budget_period, in the prices' currency; null: none"),
    ] = None
    budget_period: Annotated[
        str | None, Field(description="daily, weekly, monthly or total; null: no budget")
    ] = None
    budget_reset_at: Annotated[
        datetime | None, Field(description="When an admin last reset the budget")
    ] = None
    budget_spent: Annotated[
        float | None, Field(description="Spend in the current period (null: no budget)")
    ] = None
    budget_resets_at: Annotated[
        datetime | None,
        Field(description="When the current period ends (null: no budget, or a total one)"),
    ] = None


class Budgeted(Protocol):
    """An info object (a key's, user's or group's) with budget fields."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def budget(self) -> float | None: ...
    @property
    def budget_period(self) -> str | None: ...
    @property
    def budget_reset_at(self) -> datetime | None: ...


T = TypeVar("T", bound=Budgeted)


def apply_budget(row: Any, sent: Mapping[str, Any]) -> None:
    """Set ``row``'s ``budget`` and ``budget_period`` from a change's fields ``sent``
    (either left out: kept; a budget of None clears both). Raises :class:`BadRequest`
    naming the field that is wrong."""
    if "budget" not in sent and "budget_period" not in sent:
        return
    if "budget" in sent and sent["budget"] is None:
        row.budget, row.budget_period = None, None
        return
    amount = sent.get("budget", row.budget)
    if amount is None:
        raise BadRequest("budget_period needs a budget: set budget as well", param="budget_period")
    period = sent.get("budget_period", row.budget_period)
    row.budget, row.budget_period = check_budget(amount, period)


async def with_spend(ctx: Context, kind: BudgetKind, infos: list[T]) -> list[T]:
    """``infos`` (dataclasses) with ``budget_spent`` and ``budget_resets_at`` filled in
    for those with a budget, read in one call of the budgets' store."""
    budgets = [(i, b) for i, info in enumerate(infos) if (b := budget_of(kind, info)) is not None]
    if not budgets:
        return infos
    standings = await ctx.budgets.standing([b for _, b in budgets])
    out = list(infos)
    for (index, _), standing in zip(budgets, standings, strict=True):
        out[index] = dataclasses.replace(  # type: ignore[type-var]
            out[index],
            budget_spent=round(standing.spent, 9),
            budget_resets_at=standing.resets_at,
        )
    return out


async def reset_budget(ctx: Context, kind: str, ident: int | str) -> int:
    """Start a new counting window for a key's, user's or group's budget now: spend
    before it no longer counts. Returns the row's id; raises :class:`NotFound`."""
    async with unit(ctx) as session:
        if kind == "key":
            row = await session.get(ApiKey, ident) if isinstance(ident, int) else None
            if row is None:
                raise NotFound(f"no API key with id {ident}")
        else:
            row = await find_by_id_or_name(session, TABLES[kind], ident, kind)
        row.budget_reset_at = ctx.budgets.now()
        return int(row.id)


def budget_within_caller(
    caller: Principal, budget: float | None, period: str | None
) -> tuple[float | None, str | None]:
    """The budget of a key ``caller`` makes for itself (``/me/keys``). A key with a
    budget of its own makes none: each new key would get a budget of its own, so keys
    could be minted past it (only an admin gives keys budgets then). Raises
    :class:`PermissionDenied` for such a caller, :class:`BadRequest` for a bad budget."""
    if caller.budget is not None:
        raise PermissionDenied(
            "this API key has a budget of its own, so it cannot create further keys (they "
            "would not share its budget); ask an admin for another key",
            code="budgeted_key",
        )
    return check_budget(budget, period)


@dataclasses.dataclass(frozen=True, slots=True)
class OwnBudget:
    """One budget that applies to a caller, for ``/me``: whose, the limit, spend, what
    is left and when it resets (None: a total budget)."""

    __pydantic_config__ = ConfigDict(use_attribute_docstrings=True)

    kind: BudgetKind
    id: int
    name: str
    budget: float
    budget_period: str
    budget_spent: float
    budget_left: float
    budget_resets_at: datetime | None


async def own_budgets(ctx: Context, caller: Principal) -> list[OwnBudget]:
    """The budgets that apply to ``caller``'s requests: its key's, its user's and its
    groups' (``everyone`` included), with what is left of each."""
    snapshot = ctx.snapshots.current
    found = [caller.budget, caller.user.budget]
    groups = caller.user.groups | ({snapshot.everyone} if snapshot.everyone else set())
    found += [snapshot.group_budgets.get(g) for g in sorted(groups)]
    budgets = [b for b in found if b is not None]
    return [
        OwnBudget(
            s.budget.kind,
            s.budget.subject_id,
            s.budget.name,
            s.budget.limit,
            s.budget.period,
            round(s.spent, 9),
            round(s.left, 9),
            s.resets_at,
        )
        for s in await ctx.budgets.standing(budgets)
    ]
