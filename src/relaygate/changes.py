"""The one path every configuration change takes.

A service changes the configuration inside :func:`unit` and nowhere else::

    async with unit(ctx) as session:
        session.add(ApiKey(...))

The unit records what the transaction changed, as (kind, id) pairs: the rows it
flushed through the ORM are recorded by themselves (an API key, a user, a group or one
of its memberships or grants, an endpoint, a model, a user's own provider key); a bulk
statement on such a table must be declared with :func:`declare`. When the transaction
commits, the change goes into the change log (``config_changes``) under the next value
of the change counter, and this process applies it to its snapshot at once; every other
process reads the log from its last position (woken by PostgreSQL ``NOTIFY``, or by its
periodic check) and applies the same changes the same way. A change that changed
nothing (an empty PATCH) is not recorded.

The counter is updated last in the transaction, so its row lock orders the commits:
the log a process reads never has a hole that a slower transaction fills later.

A write to a configuration table outside a unit raises :class:`ChangeOutsideUnit`, and
so does a bulk statement left undeclared: a change can never bypass the snapshots.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import orjson
from sqlalchemy import Integer, Text, cast, delete, event, inspect, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from relaygate import audit
from relaygate.db.tables import (
    ApiKey,
    ConfigChange,
    Endpoint,
    Group,
    GroupEndpoint,
    GroupMember,
    GroupModel,
    Meta,
    Model,
    User,
    UserProviderKey,
    utcnow,
)

if TYPE_CHECKING:
    from relaygate.context import Context

log = logging.getLogger(__name__)
VERSION_KEY = "config_version"
CHANNEL = "relaygate_changes"
KEEP_CHANGES = 10_000
"""Log entries kept; a process further behind than this rebuilds its snapshot."""
UNIT = "relaygate.change"

Kind = Literal["key", "user", "group", "endpoint", "model", "own_key", "all"]
KINDS: tuple[Kind, ...] = ("all", "endpoint", "model", "group", "user", "own_key", "key")
"""Every kind, in the order a change applies them (a key after its new user)."""

_KINDS_OF_TABLE: dict[str, frozenset[str]] = {
    "api_keys": frozenset({"key"}),
    "users": frozenset({"user"}),
    "groups": frozenset({"group"}),
    "group_members": frozenset({"group"}),
    "group_models": frozenset({"group"}),
    "group_endpoints": frozenset({"group"}),
    "endpoints": frozenset({"endpoint"}),
    "models": frozenset({"endpoint", "model"}),
    "user_provider_keys": frozenset({"own_key"}),
}
"""The configuration tables, and the kinds a bulk statement on each must be declared as."""

_NOT_CONFIGURATION: dict[str, frozenset[str]] = {
    "api_keys": frozenset({"last_used_at"}),
    "endpoints": frozenset(
        {"sync_status", "last_synced_at", "last_sync_error", "next_sync_at", "updated_at"}
    ),
    "models": frozenset({"last_seen_at"}),
}
"""Columns of configuration tables that the snapshot does not hold: writing only these
is not a change (a key's last use, an endpoint's sync state and schedule)."""


class ChangeOutsideUnit(RuntimeError):
    """A configuration table was written outside :func:`unit`, or a bulk statement in a
    unit was not declared: a programming error, never a user's."""


@dataclass(frozen=True, slots=True)
class Change:
    """What one unit of work changed: (kind, id) pairs; ``("all", 0)`` means everything
    (the snapshot is rebuilt)."""

    items: frozenset[tuple[str, int]]

    def of(self, kind: str) -> list[int]:
        """The ids changed of ``kind``, sorted."""
        return sorted(i for k, i in self.items if k == kind)

    def encode(self) -> str:
        """The change as JSON: ``[["key", 12], ["group", 3]]``."""
        return orjson.dumps(sorted(self.items)).decode()

    @classmethod
    def decode(cls, value: str) -> Change:
        """The change :meth:`encode` wrote; raises ValueError when malformed."""
        items = orjson.loads(value)
        if not isinstance(items, list) or not all(
            isinstance(i, list) and len(i) == 2 and i[0] in KINDS and isinstance(i[1], int)
            for i in items
        ):
            raise ValueError(f"malformed change {value[:80]!r}")
        return cls(frozenset((str(k), int(i)) for k, i in items))


@dataclass(slots=True)
class _Pending:
    items: set[tuple[str, int]] = field(default_factory=set)
    bulk: set[str] = field(default_factory=set)
    """Tables written by bulk statements, each to be covered by a declared kind."""


def declare(session: AsyncSession, kind: Kind, ident: int) -> None:
    """Declare that the unit of ``session`` changed the ``kind`` with id ``ident``, for
    changes made by bulk statements (the ORM's are recorded by themselves)."""
    pending = session.info.get(UNIT)
    if not isinstance(pending, _Pending):
        raise ChangeOutsideUnit(f"a {kind} change declared outside a unit of work")
    pending.items.add((kind, ident))


@asynccontextmanager
async def unit(ctx: Context) -> AsyncIterator[AsyncSession]:
    """A transaction that changes the configuration: yields its session; on leaving,
    flushes, records what changed in the change log, commits, and applies the change to
    this process's snapshot. An exception rolls everything back and records nothing."""
    pending = _Pending()
    version, token = 0, ""
    async with ctx.sessions.begin() as session:
        session.info[UNIT] = pending
        audit.begin(session, ctx)
        try:
            yield session
            await session.flush()
            _check_declared(pending)
            await audit.write_pending(session)
            if pending.items:
                version, token = await _record(session, Change(frozenset(pending.items)))
        finally:
            session.info.pop(UNIT, None)
            session.info.pop(audit.PENDING, None)
    if version:
        try:
            await ctx.snapshots.apply(version, token, Change(frozenset(pending.items)))
        except Exception as exc:  # committed: the next check of the log applies it
            log.error("could not apply change %d to the snapshot yet: %s", version, exc)


def _check_declared(pending: _Pending) -> None:
    kinds = {kind for kind, _ in pending.items}
    if "all" in kinds:
        return
    for table in pending.bulk:
        if not kinds & _KINDS_OF_TABLE[table]:
            raise ChangeOutsideUnit(
                f"a bulk statement on {table} was not declared with changes.declare()"
            )


async def _record(session: AsyncSession, change: Change) -> tuple[int, str]:
    """Append ``change`` to the log under the next counter value; returns that value and
    the entry's token."""
    await session.execute(
        update(Meta)
        .where(Meta.key == VERSION_KEY)
        .values(value=cast(cast(Meta.value, Integer) + 1, Text))
    )
    version = await read_version(session)
    token = secrets.token_hex(8)
    session.add(
        ConfigChange(version=version, changes=change.encode(), token=token, created_at=utcnow())
    )
    if version % 100 == 0:
        await session.execute(
            delete(ConfigChange).where(ConfigChange.version <= version - KEEP_CHANGES)
        )
    await session.flush()
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text(f"NOTIFY {CHANNEL}"))
    return version, token


async def read_version(session: AsyncSession) -> int:
    """The current change counter (0 before the first change)."""
    value = await session.scalar(select(Meta.value).where(Meta.key == VERSION_KEY))
    return int(value) if value is not None else 0


async def read_since(
    session: AsyncSession, version: int, limit: int
) -> list[tuple[int, str, Change]]:
    """Up to ``limit`` logged changes after ``version``, oldest first, as (version,
    token, change); a malformed entry reads as a change of everything."""
    rows = await session.execute(
        select(ConfigChange.version, ConfigChange.token, ConfigChange.changes)
        .where(ConfigChange.version > version)
        .order_by(ConfigChange.version)
        .limit(limit)
    )
    found = []
    for number, token, value in rows:
        try:
            found.append((number, token, Change.decode(value)))
        except ValueError:
            log.error("change %d in the log is malformed; rebuilding the snapshot", number)
            found.append((number, token, Change(frozenset({("all", 0)}))))
    return found


async def read_token(session: AsyncSession, version: int) -> str | None:
    """The token of the logged change ``version``, or None when the log has none."""
    value = await session.scalar(select(ConfigChange.token).where(ConfigChange.version == version))
    return str(value) if value is not None else None


class TrackedSession(Session):
    """The ORM session of relaygate's session factory: it records the configuration
    rows each flush writes into its unit of work, and refuses them outside one."""


def _entity(obj: object) -> tuple[str, int] | None:
    """The (kind, id) a flushed ORM object changes, or None when it is no configuration."""
    match obj:
        case ApiKey():
            return ("key", obj.id)
        case User():
            return ("user", obj.id)
        case Group():
            return ("group", obj.id)
        case GroupMember() | GroupModel() | GroupEndpoint():
            return ("group", obj.group_id)
        case Endpoint():
            return ("endpoint", obj.id)
        case Model():
            return ("model", obj.id)
        case UserProviderKey():
            return ("own_key", obj.user_id)
    return None


def _changed_columns(obj: object) -> set[str]:
    state: Any = inspect(obj)
    return {attr.key for attr in state.attrs if attr.history.has_changes()}


@event.listens_for(TrackedSession, "after_flush")
def _after_flush(session: Session, _: UOWTransaction) -> None:
    audit.observe(session)
    found: set[tuple[str, int]] = set()
    for obj in session.new | session.deleted:
        entity = _entity(obj)
        if entity is not None:
            found.add(entity)
    for obj in session.dirty:
        entity = _entity(obj)
        if entity is None:
            continue
        table: str = obj.__tablename__
        if _changed_columns(obj) <= _NOT_CONFIGURATION.get(table, frozenset()):
            continue
        found.add(entity)
    if not found:
        return
    pending = session.info.get(UNIT)
    if not isinstance(pending, _Pending):
        raise ChangeOutsideUnit(
            f"configuration ({', '.join(sorted(k for k, _ in found))}) written outside "
            "changes.unit(): the snapshots would never see it"
        )
    pending.items |= found


@event.listens_for(TrackedSession, "do_orm_execute")
def _on_execute(state: ORMExecuteState) -> None:
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    table = getattr(state.statement, "table", None)
    name = getattr(table, "name", None)
    if name not in _KINDS_OF_TABLE:
        return
    if state.is_update:
        values = getattr(state.statement, "_values", None) or {}
        columns = {getattr(column, "key", column) for column in values}
        if columns and columns <= _NOT_CONFIGURATION.get(name, frozenset()):
            return
    pending = state.session.info.get(UNIT)
    if not isinstance(pending, _Pending):
        raise ChangeOutsideUnit(
            f"a bulk statement on {name} outside changes.unit(): the snapshots would never see it"
        )
    pending.bulk.add(name)
