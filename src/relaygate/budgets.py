"""Budgets on the request path: reserve a request's most cost before forwarding it,
settle it to the actual cost once its usage is known.

**Which budgets apply.** The request's API key's, its user's, and each of its user's
groups' (``everyone`` included) that grants a copy of the model the request may be
sent to. A group's budget is shared by its members.

**Reservation.** Before forwarding, relaygate reserves the most the request can cost
on every budget that applies, all or nothing (:mod:`relaygate.budget_stores`):
prompt tokens estimated as the body's bytes over the ``budget_bytes_per_token``
setting, plus the completion tokens it may generate — its ``max_completion_tokens``,
``max_tokens`` or ``max_output_tokens``, times ``n`` (or ``best_of``) choices; when it
states none, its model's ``default_output_tokens`` or ``max_output_tokens``, else the
``budget_output_tokens`` setting — at the dearest prices of the models it may be sent
to (failover included). A request that does not fit any one budget is refused with
:class:`BudgetExceeded`. When the answer is out, the reservation is released and the
actual cost (the usage record's) is added. A request that failed or was cancelled before
its answer began adds nothing; one whose answer began but ended without usage (a stream
cancelled or cut midway) is charged its whole reservation, as the provider bills what it
generated and no count of it arrived.
Models without a price never take part: they cost nothing.

**Where counters live.** In Redis when ``redis_url`` is set (shared by the replicas);
else in the database on PostgreSQL (shared by the replicas); else (SQLite, one
process) in this process (``serve --workers`` on SQLite keeps them in the database).
When Redis fails, the ``budget_store_failure`` setting decides: ``closed`` refuses
budgeted requests (503 ``budget_store_unavailable``), ``open`` counts them in this
process until Redis is back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from relaygate.budget import MAX_BUDGET, Budget, Window, from_nanos, to_nanos
from relaygate.budget_spend import spend_since
from relaygate.budget_stores import Count, DatabaseStore, Line, MemoryStore, RedisStore, Store
from relaygate.errors import BudgetExceeded, Overloaded
from relaygate.metrics import Metrics
from relaygate.snapshot import Principal, Snapshot
from relaygate.targets import Target

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from relaygate.settings import Settings

log = logging.getLogger(__name__)

OUTPUT_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
"""Request fields stating the most completion tokens (OpenAI chat, legacy and Anthropic
messages, OpenAI responses)."""
NO_OUTPUT_PATHS = ("/embeddings", "/moderations")
"""Paths whose answers have no completion tokens."""
RETRY_STORE_SECONDS = 2.0
SETTLE_ATTEMPTS = 3
MAX_AMOUNT = to_nanos(MAX_BUDGET) + 1
"""The most a reservation holds: more than any budget."""


@dataclass(slots=True)
class Reservation:
    """What one request holds: ``amount`` nano-units on each of ``lines``, in
    ``store``."""

    lines: list[Line]
    amount: int
    store: Store


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a budget stands: its window, spend and reservations (currency), what is
    left of it and when it resets (None: never by itself)."""

    budget: Budget
    window: Window
    spent: float
    reserved: float

    @property
    def left(self) -> float:
        return max(0.0, self.budget.limit - self.spent - self.reserved)

    @property
    def resets_at(self) -> datetime | None:
        return self.window.end


OnSpent = Callable[[Line, Count, datetime], None]
"""Told each budget's counts after a settlement (alerts)."""


def output_tokens(path: str, payload: dict[str, Any], default: int) -> int:
    """The most completion tokens the request ``payload`` on ``path`` may generate: its
    stated cap (or ``default``) times its choices; 0 for embeddings and moderations."""
    if path.endswith(NO_OUTPUT_PATHS):
        return 0
    stated = [c for name in OUTPUT_FIELDS if (c := _count(payload.get(name))) is not None]
    # The largest stated cap: upstreams differ in which field they obey. A negative cap
    # (llama.cpp's -1: no limit) or one not a number falls back to the default.
    cap = max(stated) if stated and min(stated) >= 0 else default
    choices = max(
        [1, *(c for name in ("n", "best_of") if (c := _count(payload.get(name))) is not None)]
    )
    return cap * choices


def _count(value: Any) -> int | None:
    """A token or choice count as an upstream may read it: an integer, a whole float or
    a numeric string (rounded up); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, float) and math.isfinite(value):
        return math.ceil(value)
    return None


def _priced(target: Target) -> bool:
    return bool(target.input_price) or bool(target.output_price)


class Budgets:
    """Reserves and settles requests against their budgets (see the module's docstring).

    The counters are in Redis with ``redis``, else in the database on PostgreSQL or
    when ``shared`` (other processes use this SQLite database), else in this process;
    ``clock`` gives the current time (UTC), injected by tests to cross periods without
    sleeping.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        metrics: Metrics,
        *,
        redis: Any = None,
        clock: Callable[[], datetime] | None = None,
        shared: bool = False,
    ):
        self._engine = engine
        self._metrics = metrics
        self._bytes_per_token = settings.budget_bytes_per_token
        self._default_output = settings.budget_output_tokens
        self._fail_open = settings.budget_store_failure == "open"
        self._clock = clock or _utcnow
        self._memory = MemoryStore(self.rebuild)
        self._store: Store
        self._store_errors: tuple[type[Exception], ...] = (OSError,)
        self._redis: RedisStore | None = None
        if redis is not None:
            from redis.exceptions import RedisError

            self._store_errors = (RedisError, OSError)
            self._redis = RedisStore(redis, settings.redis_prefix, self.rebuild)
            self._store = self._redis
        elif engine.dialect.name == "postgresql" or shared:
            self._store = DatabaseStore(engine, self.rebuild)
        else:
            self._store = self._memory
        self._store_down = False
        self._retry_at = 0.0
        self._swept_at = 0.0
        self._lines: dict[int, tuple[Budget, Line, float, float]] = {}
        self._gauges: dict[tuple[str, int, str], tuple[Any, Any]] = {}
        self.on_spent: OnSpent | None = None

    def now(self) -> datetime:
        return self._clock()

    # The request path.

    def lines(
        self, snapshot: Snapshot, principal: Principal, targets: Iterable[Target], now: datetime
    ) -> list[Line]:
        """The budgets that apply to a request of ``principal`` that may be sent to
        ``targets``, each in its window at ``now``."""
        lines = []
        if principal.budget is not None:
            lines.append(self._line(principal.budget, now))
        user = principal.user
        if user.budget is not None:
            lines.append(self._line(user.budget, now))
        if snapshot.group_budgets:
            groups = user.groups
            if snapshot.everyone is not None:
                groups = groups | {snapshot.everyone}
            targets = list(targets)
            for group_id in sorted(groups):
                budget = snapshot.group_budgets.get(group_id)
                grants = snapshot.grants.get(group_id)
                if budget is None or grants is None:
                    continue
                models, endpoints = grants
                if any(t.model_id in models or t.endpoint_id in endpoints for t in targets):
                    lines.append(self._line(budget, now, grants))
        return lines

    _CACHED_LINES = 100_000

    def _line(
        self,
        budget: Budget,
        now: datetime,
        grants: tuple[frozenset[int], frozenset[int]] | None = None,
    ) -> Line:
        """``budget``'s line at ``now``, made once per budget and window: a window's
        bounds cost more to work out than the rest of a reservation in memory."""
        key = id(budget)
        cached = self._lines.get(key)
        stamp = now.timestamp()
        if cached is not None:
            held, line, start, end = cached
            # The budget object is kept, so its id is not reused while cached.
            if held is budget and start <= stamp < end and line.grants is grants:
                return line
        if len(self._lines) >= self._CACHED_LINES:
            self._lines.clear()
        window = budget.window(now)
        line = Line(budget, window, grants)
        end = window.end.timestamp() if window.end is not None else math.inf
        self._lines[key] = (budget, line, window.start.timestamp(), end)
        return line

    def has_budget(self, snapshot: Snapshot, principal: Principal) -> bool:
        """Whether some budget may apply to ``principal`` (cheap: no windows made)."""
        return (
            principal.budget is not None
            or principal.user.budget is not None
            or bool(snapshot.group_budgets)
        )

    def most_cost(
        self, targets: Sequence[Target], path: str, payload: dict[str, Any], body_bytes: int
    ) -> int:
        """The most a request can cost on any of ``targets``, in nano-units (0: none of
        them has a price)."""
        prompt = math.ceil(body_bytes / self._bytes_per_token)
        most = 0.0
        for target in targets:
            if not _priced(target):
                continue
            output = output_tokens(path, payload, target.output_cap or self._default_output)
            cost = prompt * (target.input_price or 0.0) + output * (target.output_price or 0.0)
            most = max(most, cost / 1e6)
        # Past the largest budget, an amount cannot fit any: capped so that counters'
        # 64-bit integers never overflow (a huge max_tokens is refused, not an error).
        return min(to_nanos(most), MAX_AMOUNT) if most else 0

    async def reserve(
        self,
        snapshot: Snapshot,
        principal: Principal,
        targets: Sequence[Target],
        path: str,
        payload: dict[str, Any],
        body_bytes: int,
    ) -> Reservation | None:
        """Reserve the most cost of a request of ``principal`` (``payload``, a body of
        ``body_bytes`` on ``path``) that may be sent to ``targets``, on every budget
        that applies; None when none applies or the models are free.

        Raises :class:`BudgetExceeded` (429) naming the first budget it does not fit,
        and :class:`Overloaded` (503 ``budget_store_unavailable``) when Redis fails and
        budgets fail closed.
        """
        now = self._clock()
        lines = self.lines(snapshot, principal, targets, now)
        if not lines:
            return None
        amount = self.most_cost(targets, path, payload, body_bytes)
        if amount == 0:
            return None
        self._sweep(now)
        store = self._live_store()
        try:
            fits, counts = await store.reserve(lines, amount)
        except self._store_errors as exc:
            store = self._store_failed(exc)
            fits, counts = await store.reserve(lines, amount)
        else:
            self._store_ok(store)
        if not fits:
            raise self._refusal(lines, counts, amount, now)
        return Reservation(lines, amount, store)

    async def settle(
        self,
        reservation: Reservation,
        target: Target | None,
        cost: float | None,
        *,
        whole: bool = False,
    ) -> None:
        """Release ``reservation`` and add ``cost`` (the answer's, currency; None:
        nothing) — or, with ``whole``, at least the whole reservation — to each of its budgets
        that covers ``target`` (the copy that answered). Never raises: a failure is
        logged."""
        spent = to_nanos(cost) if cost and target is not None else 0
        if whole and target is not None and _priced(target):
            spent = max(spent, reservation.amount)
        charged = [
            line
            for line in reservation.lines
            if spent and (line.grants is None or _covers(line.grants, target))
        ]
        released = [line for line in reservation.lines if line not in charged]
        for group, amount in ((charged, spent), (released, 0)):
            if group:
                await self._settle_lines(reservation, group, amount)

    async def _settle_lines(self, reservation: Reservation, lines: list[Line], spent: int) -> None:
        """Settle ``lines`` of ``reservation``, trying again a few times (a reservation
        left behind would hold its amount until the period ends); logs what fails."""
        names = [line.name for line in lines]
        for attempt in range(SETTLE_ATTEMPTS):
            try:
                counts = await reservation.store.settle(names, reservation.amount, spent)
            except Exception as exc:
                if isinstance(exc, self._store_errors) and reservation.store is self._redis:
                    self._store_failed(exc, raising=False)
                if attempt == SETTLE_ATTEMPTS - 1:
                    log.exception("could not settle a budget reservation; it is held")
                    return
                await asyncio.sleep(0.05 * 4**attempt)
            else:
                self._observe(lines, counts)
                return

    def _observe(self, lines: Sequence[Line], counts: Sequence[Count | None]) -> None:
        now = self._clock()
        for line, count in zip(lines, counts, strict=True):
            if count is None:
                continue
            budget = line.budget
            gauges = self._gauges.get((budget.kind, budget.subject_id, budget.name))
            if gauges is None:
                # Bound once per budget: labels() costs more than setting the value.
                if len(self._gauges) >= self._CACHED_LINES:
                    self._gauges.clear()
                labels = (budget.kind, str(budget.subject_id), budget.name)
                gauges = self._gauges[(budget.kind, budget.subject_id, budget.name)] = (
                    self._metrics.budget_spent.labels(*labels),
                    self._metrics.budget_limit.labels(*labels),
                )
            gauges[0].set(from_nanos(count.spent))
            gauges[1].set(budget.limit)
            if self.on_spent is not None:
                try:
                    self.on_spent(line, count, now)
                except Exception:
                    log.exception("could not check budget alerts")

    def _refusal(
        self, lines: Sequence[Line], counts: Sequence[Count], amount: int, now: datetime
    ) -> BudgetExceeded:
        """The 429 naming the budget the request did not fit: the first over, else (the
        counts were read after a concurrent release) the one with the least left."""
        self._metrics.budget_refused.inc()

        def left(pair: tuple[Line, Count]) -> int:
            line, count = pair
            return line.budget.limit_nanos - count.spent - count.reserved

        pairs = list(zip(lines, counts, strict=True))
        over = [pair for pair in pairs if left(pair) < amount]
        line, count = over[0] if over else min(pairs, key=left)
        budget, end = line.budget, line.window.end
        when = (
            f"it resets at {end.strftime('%Y-%m-%dT%H:%M:%SZ')}"
            if end is not None
            else "it does not reset by itself (a total budget)"
        )
        return BudgetExceeded(
            f"budget exceeded for {budget.label}: its {budget.period} budget is "
            f"{budget.limit:g}, {from_nanos(max(0, left((line, count)))):.6g} is left and this "
            f"request may cost up to {from_nanos(amount):.6g}; {when}",
            retry_after=(end - now).total_seconds() if end is not None else None,
        )

    # Reading budgets (admin API, /me).

    async def standing(self, budgets: Sequence[Budget]) -> list[Standing]:
        """Where each of ``budgets`` stands now."""
        if not budgets:
            return []
        now = self._clock()
        lines = [Line(budget, budget.window(now)) for budget in budgets]
        store = self._live_store()
        try:
            counts = await store.read(lines)
        except self._store_errors as exc:
            if not self._fail_open:
                raise self._unavailable() from exc
            counts = await self._memory.read(lines)
        return [
            Standing(line.budget, line.window, from_nanos(c.spent), from_nanos(c.reserved))
            for line, c in zip(lines, counts, strict=True)
        ]

    async def rebuild(self, lines: Sequence[Line]) -> list[int]:
        """The spend (nano-units) of each line's window, from the usage records (see
        :func:`relaygate.budget_spend.spend_since`)."""
        return await spend_since(self._engine, lines)

    # Redis failing.

    def _live_store(self) -> Store:
        if self._store is not self._redis or not self._store_down:
            return self._store
        if time.monotonic() >= self._retry_at:
            return self._store  # try Redis again
        if self._fail_open:
            return self._memory
        raise self._unavailable()

    def _unavailable(self) -> Overloaded:
        return Overloaded(
            "the budget store (Redis) is unavailable, and budgets fail closed; retry shortly",
            retry_after=RETRY_STORE_SECONDS,
            code="budget_store_unavailable",
        )

    def _store_failed(self, exc: Exception, *, raising: bool = True) -> Store:
        self._metrics.budget_store_errors.inc()
        self._retry_at = time.monotonic() + RETRY_STORE_SECONDS
        if not self._store_down:
            self._store_down = True
            log.warning(
                "budgets: Redis failed (%s: %s); %s until it is back",
                type(exc).__name__,
                exc,
                "counting in this process" if self._fail_open else "refusing budgeted requests",
            )
        if self._fail_open:
            return self._memory
        if raising:
            raise self._unavailable() from exc
        return self._memory

    def _store_ok(self, store: Store) -> None:
        if self._store_down and store is self._redis:
            self._store_down = False
            # What was counted here meanwhile is stale by the next outage: start afresh.
            self._memory = MemoryStore(self.rebuild)
            log.info("budgets: Redis is back; budgets are shared again")

    def _sweep(self, now: datetime) -> None:
        stamp = now.timestamp()
        if stamp - self._swept_at >= 3600:
            self._swept_at = stamp
            self._memory.sweep(now)


def _covers(grants: tuple[frozenset[int], frozenset[int]], target: Target | None) -> bool:
    if target is None:
        return False
    models, endpoints = grants
    return target.model_id in models or target.endpoint_id in endpoints


def _utcnow() -> datetime:
    return datetime.now(UTC)
