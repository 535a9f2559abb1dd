"""Helpers of the budget tests: priced models, budgets set, counters and records read."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select

from relaygate.budgets import Standing
from relaygate.changes import unit
from relaygate.db.tables import ApiKey, Group, UsageRecord, User
from tests.support.gateway import Gateway

PRICE = 1000.0
"""Per million tokens, in and out: a token costs 0.001."""
HELLO: list[Any] = [{"role": "user", "content": "hi"}]
TABLES: dict[str, Any] = {"key": ApiKey, "user": User, "group": Group}


def price_models(gateway: Gateway, price: float | None = PRICE) -> None:
    """Give every model the same input and output price (None: free)."""
    for model in gateway.admin.get("/admin/api/v1/models").json():
        response = gateway.admin.patch(
            f"/admin/api/v1/models/{model['id']}",
            json={"input_cost_per_million_tokens": price, "output_cost_per_million_tokens": price},
        )
        assert response.status_code == 200, response.text


def set_budget(
    gateway: Gateway, kind: str, subject_id: int, amount: float | None, period: str = "daily"
) -> None:
    """Set a budget in the database, through the one change path (the snapshot follows)."""

    async def write() -> None:
        async with unit(gateway.ctx) as session:
            row = await session.get(TABLES[kind], subject_id)
            assert row is not None
            row.budget = amount
            row.budget_period = period if amount is not None else None

    gateway.on_loop(write)


def standing(gateway: Gateway, kind: str, subject_id: int) -> Standing:
    """Where a budget stands, as relaygate's own budgets see it."""
    snapshot = gateway.ctx.snapshots.current
    if kind == "key":
        budget = next(p.budget for p in snapshot.keys.values() if p.key_id == subject_id)
    elif kind == "user":
        budget = snapshot.users[subject_id].budget
    else:
        budget = snapshot.group_budgets[subject_id]
    assert budget is not None
    [found] = gateway.on_loop(lambda: gateway.ctx.budgets.standing([budget]))
    return found


def recorded_cost(gateway: Gateway, count: int, timeout: float = 10.0) -> float:
    """The summed cost of the usage records, once the records of at least ``count``
    answered requests (status 2xx) are written: refused requests are recorded too, and
    counting theirs would read the sum before every answered one is in."""

    async def read() -> tuple[int, float]:
        answered = func.count().filter(UsageRecord.status.between(200, 299))
        async with gateway.ctx.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(answered, func.coalesce(func.sum(UsageRecord.cost), 0.0))
                )
            ).one()
            return int(row[0]), float(row[1])

    deadline = time.monotonic() + timeout
    while True:
        written, cost = gateway.on_loop(read)
        if written >= count or time.monotonic() > deadline:
            return cost
        time.sleep(0.05)


def settled(gateway: Gateway, kind: str, subject_id: int, timeout: float = 5.0) -> Standing:
    """The budget's standing once no reservation is left on it."""
    deadline = time.monotonic() + timeout
    while True:
        found = standing(gateway, kind, subject_id)
        if found.reserved == 0 or time.monotonic() > deadline:
            return found
        time.sleep(0.02)
