"""Where budgets' spend and reservations live: in this process, in Redis, or in the
database (see :mod:`relaygate.budgets` for which is used when).

Every store keeps, per counter (a budget's window, :class:`relaygate.budget.Window`),
two whole amounts in nano-units: ``spent`` (settled) and ``reserved`` (requests in
flight). A reservation is all or nothing over the counters of a request: it succeeds
only when ``spent + reserved + amount <= limit`` holds for every one of them, and then
adds ``amount`` to each one's ``reserved`` in the same atomic step. A counter a store
does not hold yet (a new window, a restarted process, an emptied Redis) is first
filled with the spend its usage records show (the ``rebuild`` callable), so a restart
loses nothing that was written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from relaygate.budget import Budget, Window
from relaygate.db.tables import BudgetCounter

if TYPE_CHECKING:
    from redis.asyncio import Redis

KEEP_ENDED = timedelta(days=7)
"""How long a counter is kept after its window ended (Redis expiry, row deletion)."""


@dataclass(frozen=True, slots=True)
class Line:
    """One budget a request is charged to, in its current window; ``grants`` (model ids,
    endpoint ids) for a group's budget: the copies of models it covers."""

    budget: Budget
    window: Window
    grants: tuple[frozenset[int], frozenset[int]] | None = None

    @property
    def name(self) -> str:
        return self.window.name


@dataclass(frozen=True, slots=True)
class Count:
    """A counter's ``spent`` and ``reserved`` nano-units."""

    spent: int
    reserved: int


Rebuild = Callable[[Sequence[Line]], Awaitable[list[int]]]
"""Spend (nano-units) of each line's window as its usage records show."""


class Store(Protocol):
    async def reserve(self, lines: Sequence[Line], amount: int) -> tuple[bool, list[Count]]:
        """Reserve ``amount`` on every line's counter when it fits all of them; returns
        (reserved, the counts after)."""
        ...

    async def settle(self, names: Sequence[str], release: int, spent: int) -> list[Count | None]:
        """Release ``release`` reserved and add ``spent`` on each counter it holds;
        the counts after (None: a counter it does not hold)."""
        ...

    async def read(self, lines: Sequence[Line]) -> list[Count]:
        """The counts of the lines' counters (rebuilt, not stored, when missing)."""
        ...


class MemoryStore:
    """Counters in this process: exact for one process (SQLite's single process), and
    the fallback when Redis fails and budgets fail open."""

    def __init__(self, rebuild: Rebuild):
        self._rebuild = rebuild
        self._counters: dict[str, list[int]] = {}
        self._ends: dict[str, datetime | None] = {}

    async def _fill(self, lines: Sequence[Line]) -> None:
        missing = [line for line in lines if line.name not in self._counters]
        if not missing:
            return
        values = await self._rebuild(missing)
        for line, value in zip(missing, values, strict=True):
            # Another request may have filled it meanwhile: the first fill stands.
            self._counters.setdefault(line.name, [value, 0])
            self._ends[line.name] = line.window.end

    async def reserve(self, lines: Sequence[Line], amount: int) -> tuple[bool, list[Count]]:
        await self._fill(lines)
        # From here to the end, no await: the check and the reservation are one step.
        counters = [self._counters[line.name] for line in lines]
        fits = all(
            c[0] + c[1] + amount <= line.budget.limit_nanos
            for c, line in zip(counters, lines, strict=True)
        )
        if fits:
            for counter in counters:
                counter[1] += amount
        return fits, [Count(c[0], c[1]) for c in counters]

    async def settle(self, names: Sequence[str], release: int, spent: int) -> list[Count | None]:
        out: list[Count | None] = []
        for name in names:
            counter = self._counters.get(name)
            if counter is None:
                out.append(None)
                continue
            counter[1] = max(0, counter[1] - release)
            counter[0] += spent
            out.append(Count(counter[0], counter[1]))
        return out

    async def read(self, lines: Sequence[Line]) -> list[Count]:
        held = {
            line.name: Count(*self._counters[line.name])
            for line in lines
            if line.name in self._counters
        }
        return await _or_rebuilt(lines, held, self._rebuild)

    def sweep(self, now: datetime) -> None:
        """Forget counters whose window ended more than :data:`KEEP_ENDED` ago."""
        for name in [n for n, end in self._ends.items() if end and end + KEEP_ENDED < now]:
            del self._ends[name]
            self._counters.pop(name, None)


RESERVE_SCRIPT = """
-- KEYS: counter hashes (fields s: spent, r: reserved; whole nano-units).
-- ARGV[1]: the amount; then per key i: ARGV[3i-1] its limit, ARGV[3i] its spend as
-- rebuilt (-1: not known), ARGV[3i+1] when it expires (Unix ms; 0: never).
-- Returns {-1, indices of missing keys whose spend is not known}, or
-- {reserved (1 or 0), then per key: spent, reserved}.
local amount = tonumber(ARGV[1])
local missing = {}
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 0 then
    local rebuilt = tonumber(ARGV[3 * i])
    if rebuilt < 0 then
      missing[#missing + 1] = i
    else
      redis.call('HSET', key, 's', ARGV[3 * i], 'r', 0)
      local at = tonumber(ARGV[3 * i + 1])
      if at > 0 then redis.call('PEXPIREAT', key, at) end
    end
  end
end
if #missing > 0 then
  table.insert(missing, 1, -1)
  return missing
end
local fits = 1
local counts = {}
for i, key in ipairs(KEYS) do
  local s = tonumber(redis.call('HGET', key, 's')) or 0
  local r = tonumber(redis.call('HGET', key, 'r')) or 0
  if s + r + amount > tonumber(ARGV[3 * i - 1]) then fits = 0 end
  counts[i] = {s, r}
end
local out = {fits}
for i, key in ipairs(KEYS) do
  local r = counts[i][2]
  if fits == 1 then r = redis.call('HINCRBY', key, 'r', ARGV[1]) end
  out[#out + 1] = counts[i][1]
  out[#out + 1] = r
end
return out
"""

SETTLE_SCRIPT = """
-- KEYS: counter hashes; ARGV[1]: reserved to release; ARGV[2]: spend to add.
-- Returns per key: spent, reserved (-1, -1 for a key Redis does not hold). Amounts go to
-- HINCRBY as the strings sent: a Lua number would be written in exponent form past 1e14.
local out = {}
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    local r = redis.call('HINCRBY', key, 'r', '-' .. ARGV[1])
    if r < 0 then
      redis.call('HSET', key, 'r', 0)
      r = 0
    end
    out[#out + 1] = redis.call('HINCRBY', key, 's', ARGV[2])
    out[#out + 1] = r
  else
    out[#out + 1] = -1
    out[#out + 1] = -1
  end
end
return out
"""


class RedisStore:
    """Counters in Redis, shared by every replica: one script reserves on all of a
    request's counters atomically, another settles. Every counter carries the hash tag
    ``{budget}``, so the scripts work on a Redis Cluster (all counters on one slot).
    Raises what the Redis client raises (the caller decides to fail open or closed)."""

    def __init__(self, redis: Redis, prefix: str, rebuild: Rebuild):
        self._redis = redis
        self._prefix = f"{prefix}:{{budget}}:"
        self._rebuild = rebuild
        self._reserve = redis.register_script(RESERVE_SCRIPT)
        self._settle = redis.register_script(SETTLE_SCRIPT)

    def _keys(self, names: Sequence[str]) -> list[str]:
        return [self._prefix + name for name in names]

    async def reserve(self, lines: Sequence[Line], amount: int) -> tuple[bool, list[Count]]:
        keys = self._keys([line.name for line in lines])
        rebuilt = [-1] * len(lines)
        for _ in range(3):  # a counter may expire between the rebuild and the retry
            args: list[int] = [amount]
            for line, value in zip(lines, rebuilt, strict=True):
                end = line.window.end
                expires = round((end + KEEP_ENDED).timestamp() * 1000) if end else 0
                args += [line.budget.limit_nanos, value, expires]
            raw = [int(v) for v in await self._reserve(keys=keys, args=args)]
            if raw[0] >= 0:
                counts = [Count(raw[i], raw[i + 1]) for i in range(1, len(raw), 2)]
                return raw[0] == 1, counts
            missing = [lines[i - 1] for i in raw[1:]]
            for i, value in zip(raw[1:], await self._rebuild(missing), strict=True):
                rebuilt[i - 1] = value
        raise RuntimeError("budget counters kept vanishing from Redis")

    async def settle(self, names: Sequence[str], release: int, spent: int) -> list[Count | None]:
        raw = [int(v) for v in await self._settle(keys=self._keys(names), args=[release, spent])]
        return [Count(raw[i], raw[i + 1]) if raw[i] >= 0 else None for i in range(0, len(raw), 2)]

    async def read(self, lines: Sequence[Line]) -> list[Count]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in self._keys([line.name for line in lines]):
                pipe.hmget(key, "s", "r")
            found = await pipe.execute()
        held = {
            line.name: Count(int(s), int(r or 0))
            for line, (s, r) in zip(lines, found, strict=True)
            if s is not None
        }
        return await _or_rebuilt(lines, held, self._rebuild)


class DatabaseStore:
    """Counters in the ``budget_counters`` table, for replicas on PostgreSQL without
    Redis. A reservation is one conditional ``UPDATE`` per counter, in name order (so
    two requests never deadlock), in one transaction: the row lock serialises
    concurrent reservations, and the condition is checked again on the locked row."""

    def __init__(self, engine: AsyncEngine, rebuild: Rebuild):
        self._engine = engine
        self._rebuild = rebuild

    async def _create(self, lines: Sequence[Line]) -> None:
        """Add the counters of ``lines`` with their spend rebuilt (kept when another
        process added one first). Holds no connection while rebuilding."""
        values = await self._rebuild(lines)
        rows = [
            {"name": line.name, "spent": value, "reserved": 0, "ends_at": line.window.end}
            for line, value in zip(lines, values, strict=True)
        ]
        if self._engine.dialect.name == "postgresql":
            from sqlalchemy.dialects import postgresql

            statement: Any = postgresql.insert(BudgetCounter).on_conflict_do_nothing()
        else:
            from sqlalchemy.dialects import sqlite

            statement = sqlite.insert(BudgetCounter).on_conflict_do_nothing()
        async with self._engine.begin() as connection:
            await connection.execute(statement, rows)

    async def reserve(self, lines: Sequence[Line], amount: int) -> tuple[bool, list[Count]]:
        names = [line.name for line in lines]
        for _ in range(3):  # a counter may be deleted between its creation and the retry
            async with self._engine.connect() as connection:
                fits, counts = await self._try(connection, lines, amount)
                if fits:
                    return True, [counts[name] for name in names]
                missing = [line for line in lines if line.name not in counts]
            if not missing:
                return False, [counts[name] for name in names]
            await self._create(missing)
        raise RuntimeError("budget counters kept vanishing from the database")

    @staticmethod
    async def _try(
        connection: AsyncConnection, lines: Sequence[Line], amount: int
    ) -> tuple[bool, dict[str, Count]]:
        """One conditional ``UPDATE`` per counter, committed when all fit, else rolled
        back; returns (fits, the counts by name: after the reservation, or as they are
        when refused, missing names left out)."""
        table = BudgetCounter
        counts: dict[str, Count] = {}
        transaction = await connection.begin()
        for line in sorted(lines, key=lambda line: line.name):
            row = (
                await connection.execute(
                    update(table)
                    .where(
                        table.name == line.name,
                        table.spent + table.reserved + amount <= line.budget.limit_nanos,
                    )
                    .values(reserved=table.reserved + amount)
                    .returning(table.spent, table.reserved)
                )
            ).first()
            if row is None:
                await transaction.rollback()
                break
            counts[line.name] = Count(row.spent, row.reserved)
        else:
            await transaction.commit()
            return True, counts
        names = [line.name for line in lines]
        found = await connection.execute(
            select(table.name, table.spent, table.reserved).where(table.name.in_(names))
        )
        return False, {row.name: Count(row.spent, row.reserved) for row in found}

    async def settle(self, names: Sequence[str], release: int, spent: int) -> list[Count | None]:
        table = BudgetCounter
        left = table.reserved - release
        rows: dict[str, Count] = {}
        async with self._engine.begin() as connection:
            # One row at a time in name order, as reservations lock them: never a deadlock.
            for name in sorted(names):
                row = (
                    await connection.execute(
                        update(table)
                        .where(table.name == name)
                        .values(reserved=case((left < 0, 0), else_=left), spent=table.spent + spent)
                        .returning(table.spent, table.reserved)
                    )
                ).first()
                if row is not None:
                    rows[name] = Count(row.spent, row.reserved)
        return [rows.get(name) for name in names]

    async def read(self, lines: Sequence[Line]) -> list[Count]:
        table = BudgetCounter
        async with self._engine.connect() as connection:
            rows = {
                row.name: Count(row.spent, row.reserved)
                for row in await connection.execute(
                    select(table.name, table.spent, table.reserved).where(
                        table.name.in_([line.name for line in lines])
                    )
                )
            }
        return await _or_rebuilt(lines, rows, self._rebuild)


async def _or_rebuilt(
    lines: Sequence[Line], held: dict[str, Count], rebuild: Rebuild
) -> list[Count]:
    """The count of each line's counter: ``held``'s, else its spend rebuilt."""
    missing = [line for line in lines if line.name not in held]
    if missing:
        for line, value in zip(missing, await rebuild(missing), strict=True):
            held[line.name] = Count(value, 0)
    return [held[line.name] for line in lines]
