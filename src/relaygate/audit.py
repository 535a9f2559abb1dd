"""The audit log: every administrative change, who made it, when, from which address.

Who acts is set by the boundary that knows it, for the rest of the request or command:
the admin API's dependency (:func:`relaygate.admin.deps.attributed`), the console's
checked session, the CLI's runner, start-up seeding. ``ctx.audit.acting(actor)`` does
it; :class:`Actor` says who (a user by id, or ``cli``, ``config``, ``system``).

While an actor is set, every unit of work (:func:`relaygate.changes.unit`) writes one
entry per configuration row it changed, in the same transaction as the change: the
rows the ORM flushed are described by themselves (:func:`observe`: ``endpoint.create``,
``key.revoke``, ``group.member.add``, …), and a service that changes rows with a bulk
statement says what it did with :func:`note`. Without an actor (a sync, a background
task) nothing is written: those are no administrative changes. :func:`record` writes an
entry that is no configuration change (a console sign-in, a batch cancelled) at once.

An entry's ``details`` hold the changed fields' names and their new values, except for
any field whose name says it holds a secret (a key, a hash, a token, an encrypted
value, a hint of one): only its name. URLs lose their user info and query string,
where credentials hide. With ``audit_log_json`` each committed entry is also written as
one JSON line on the ``relaygate.audit`` logger.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import orjson
from sqlalchemy import event, inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key
from starlette.requests import HTTPConnection

from relaygate.db.tables import (
    ApiKey,
    AuditEntry,
    Endpoint,
    Group,
    GroupEndpoint,
    GroupMember,
    GroupModel,
    Model,
    User,
    UserProviderKey,
    utcnow,
)

if TYPE_CHECKING:
    from relaygate.context import Context

log = logging.getLogger("relaygate.audit")
PENDING = "relaygate.audit"
LINES = "relaygate.audit.lines"
ActorType = Literal["user", "cli", "config", "system"]
SECRET_PARTS = ("key", "secret", "password", "token", "hash", "encrypted", "hint", "credential")
"""A field whose name holds one of these is recorded by name, never by value."""
UNRECORDED = frozenset(
    {
        "id",
        "created_at",
        "updated_at",
        "first_seen_at",
        "last_seen_at",
        "last_used_at",
        "sync_status",
        "last_synced_at",
        "last_sync_error",
        "next_sync_at",
        "api_found",
        "status",
    }
)
"""Columns kept by relaygate itself (times, sync state), no administrator's change."""
BUDGET_FIELDS = frozenset({"budget", "budget_period"})
MAX_TEXT = 300
"""Longest text value kept in ``details`` (a longer one is cut, marked with …)."""
MAX_JSON = 2000


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a user (``user_id``; ``name`` looked up when the entry is written if
    not given), or ``cli``, ``config`` or ``system``; ``address`` the client's."""

    type: ActorType
    user_id: int | None = None
    name: str | None = None
    address: str | None = None


SYSTEM = Actor("system", name="system")
CONFIG = Actor("config", name="config")


def client_address(request: HTTPConnection) -> str | None:
    """The address a request came from: the peer of its connection."""
    return request.client.host if request.client else None


def user_actor(user_id: int, request: HTTPConnection) -> Actor:
    """The user ``user_id`` acting through ``request``, from its address."""
    return Actor("user", user_id, address=client_address(request))


@dataclass(slots=True)
class AuditTrail:
    """A context's actor of the moment, per task (a :class:`ContextVar` owned by the
    :class:`~relaygate.context.Context`, so nothing lives at module level)."""

    actor: ContextVar[Actor | None] = field(
        default_factory=lambda: ContextVar("relaygate_audit_actor", default=None)
    )

    def current(self) -> Actor | None:
        return self.actor.get()

    def set(self, actor: Actor | None) -> None:
        """Act as ``actor`` for the rest of this task (a request, a command)."""
        self.actor.set(actor)

    @contextmanager
    def acting(self, actor: Actor | None) -> Iterator[None]:
        """Act as ``actor`` (None: unattributed, nothing recorded) inside the block."""
        token = self.actor.set(actor)
        try:
            yield
        finally:
            self.actor.reset(token)


@dataclass(slots=True)
class _Entry:
    action: str
    target_type: str
    target_id: str | None
    target_name: str | None
    fields: set[str] = field(default_factory=set)
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Pending:
    actor: Actor
    json_lines: bool
    entries: dict[tuple[str, str, str | None], _Entry] = field(default_factory=dict)

    def add(self, entry: _Entry) -> None:
        family = entry.action.rpartition(".")[0]
        created = self.entries.get((f"{family}.create", entry.target_type, entry.target_id))
        if entry.action.endswith(".update") and created is not None:
            into = created  # a row created and then changed in one unit: one entry
        else:
            into = self.entries.setdefault(
                (entry.action, entry.target_type, entry.target_id), entry
            )
        if into is not entry:
            into.fields |= entry.fields
            into.values.update(entry.values)
            into.target_name = into.target_name or entry.target_name


def begin(session: AsyncSession, ctx: Context) -> None:
    """Make ``session``'s unit of work record what it changes, when an actor is set."""
    actor = ctx.audit.current()
    if actor is not None:
        session.info[PENDING] = _Pending(actor, ctx.settings.audit_log_json)


def note(
    session: AsyncSession,
    action: str,
    target_type: str,
    target_id: int | str | None,
    target_name: str | None = None,
    values: dict[str, Any] | None = None,
) -> None:
    """Say what a unit of work did with a bulk statement (which :func:`observe` cannot
    see): ``action`` on the target, with non-secret ``values`` of changed fields. Does
    nothing outside a recording unit."""
    pending = session.info.get(PENDING)
    if isinstance(pending, _Pending):
        shown = _shown(values or {})
        pending.add(_Entry(action, target_type, _ident(target_id), target_name, set(shown), shown))


async def write_pending(session: AsyncSession) -> None:
    """Add the entries the unit of ``session`` collected (called by ``unit`` before it
    commits) and flush them."""
    pending = session.info.pop(PENDING, None)
    if not isinstance(pending, _Pending) or not pending.entries:
        return
    actor = await _named(session, pending.actor)
    for entry in pending.entries.values():
        await _name_target(session, entry)
    rows = [_row(actor, entry) for entry in pending.entries.values()]
    session.add_all(rows)
    await session.flush()
    if pending.json_lines:
        session.info.setdefault(LINES, []).extend(line_of(row) for row in rows)


async def record(
    ctx: Context,
    action: str,
    *,
    target_type: str,
    target_id: int | str | None = None,
    target_name: str | None = None,
    values: dict[str, Any] | None = None,
    actor: Actor | None = None,
    session: AsyncSession | None = None,
) -> None:
    """Write one entry now: ``action`` (a dotted name, ``session.create``) by ``actor``
    (default: the one acting; else ``system``) on the target, with ``values`` (fields
    whose names say they hold a secret are kept by name only).

    With ``session`` the entry joins that transaction (written when its caller commits);
    without, it is written in a transaction of its own. Raises what the database raises.
    """
    who = actor or ctx.audit.current() or SYSTEM
    shown = _shown(values or {})
    entry = _Entry(action, target_type, _ident(target_id), target_name, set(shown), shown)
    if session is not None:
        await _add(session, who, entry, ctx.settings.audit_log_json)
        return
    async with ctx.sessions.begin() as own:
        await _add(own, who, entry, ctx.settings.audit_log_json)


async def _add(session: AsyncSession, actor: Actor, entry: _Entry, json_lines: bool) -> None:
    await _name_target(session, entry)
    row = _row(await _named(session, actor), entry)
    session.add(row)
    await session.flush()
    if json_lines:
        session.info.setdefault(LINES, []).append(line_of(row))


async def _name_target(session: AsyncSession, entry: _Entry) -> None:
    """Give a user or group target its name when the flush did not have it at hand."""
    ident = entry.target_id or ""
    if entry.target_name is not None or not ident.isdigit():
        return
    row: User | Group | None = None
    if entry.target_type == "user":
        row = await session.get(User, int(ident))
    elif entry.target_type == "group":
        row = await session.get(Group, int(ident))
    entry.target_name = row.name if row is not None else None


async def _named(session: AsyncSession, actor: Actor) -> Actor:
    if actor.name is not None or actor.user_id is None:
        return actor
    user = await session.get(User, actor.user_id)
    name = user.name if user is not None else f"user {actor.user_id}"
    return Actor(actor.type, actor.user_id, name, actor.address)


def _row(actor: Actor, entry: _Entry) -> AuditEntry:
    return AuditEntry(
        created_at=utcnow(),
        actor_type=actor.type,
        actor_id=actor.user_id,
        actor_name=(actor.name or actor.type)[:200],
        address=actor.address[:64] if actor.address else None,
        action=entry.action,
        target_type=entry.target_type,
        target_id=entry.target_id,
        target_name=entry.target_name[:500] if entry.target_name else None,
        details={"fields": sorted(entry.fields), "values": entry.values},
    )


def line_of(row: AuditEntry) -> str:
    """The JSON line of an entry (the ``relaygate.audit`` logger's message)."""
    return orjson.dumps(
        {
            "id": row.id,
            "time": row.created_at.isoformat(),
            "actor": {"type": row.actor_type, "id": row.actor_id, "name": row.actor_name},
            "address": row.address,
            "action": row.action,
            "target": {"type": row.target_type, "id": row.target_id, "name": row.target_name},
            "details": row.details,
        }
    ).decode()


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    for line in session.info.pop(LINES, ()):
        log.info(line)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(LINES, None)


def observe(session: Session) -> None:
    """Describe the configuration rows a flush wrote (called from ``after_flush``, where
    ``new``, ``dirty`` and ``deleted`` still hold what was flushed)."""
    pending = session.info.get(PENDING)
    if not isinstance(pending, _Pending):
        return
    for how, objects in (("create", session.new), ("delete", session.deleted)):
        for obj in objects:
            entry = _describe(session, obj, how, _set_fields(obj) if how == "create" else {})
            if entry is not None:
                pending.add(entry)
    for obj in session.dirty:
        changed = _changed(obj)
        if changed:
            entry = _describe(session, obj, "update", changed)
            if entry is not None:
                pending.add(entry)


def _set_fields(obj: object) -> dict[str, Any]:
    state: Any = inspect(obj)
    found = {}
    for attr in state.mapper.column_attrs:
        value = getattr(obj, attr.key, None)
        if attr.key not in UNRECORDED and value is not None and value != []:
            found[attr.key] = value
    return found


def _changed(obj: object) -> dict[str, Any]:
    state: Any = inspect(obj)
    found = {}
    for attr in state.mapper.column_attrs:
        history = state.attrs[attr.key].history
        if attr.key not in UNRECORDED and history.has_changes():
            found[attr.key] = history.added[0] if history.added else None
    return found


def _describe(session: Session, obj: object, how: str, fields: dict[str, Any]) -> _Entry | None:
    """The entry of one flushed row, or None for a row that is no configuration."""
    verb = {"create": "add", "delete": "remove"}.get(how, how)
    match obj:
        case GroupMember() | GroupModel() | GroupEndpoint():
            part, other = {
                GroupMember: ("member", "user_id"),
                GroupModel: ("model", "model_id"),
                GroupEndpoint: ("endpoint", "endpoint_id"),
            }[type(obj)]
            group = session.identity_map.get(identity_key(Group, obj.group_id))
            name = group.name if isinstance(group, Group) else None
            value = {other: getattr(obj, other)}
            return _Entry(f"group.{part}.{verb}", "group", str(obj.group_id), name, set(), value)
        case UserProviderKey():
            action = "user.provider_key.delete" if how == "delete" else "user.provider_key.set"
            values = {"endpoint_id": obj.endpoint_id}
            return _Entry(action, "user", str(obj.user_id), None, set(fields), values)
        case ApiKey() | User() | Group() | Endpoint() | Model():
            kind = _KIND[type(obj)]
            name = (obj.alias or obj.upstream_id) if isinstance(obj, Model) else obj.name
            action = f"{kind}.{how}"
            if how == "update":
                action = _update_action(kind, obj, set(fields))
            shown = _shown(fields)
            return _Entry(action, kind, str(obj.id), name, set(fields), shown)
    return None


_KIND: dict[type, str] = {
    ApiKey: "key",
    User: "user",
    Group: "group",
    Endpoint: "endpoint",
    Model: "model",
}


def _update_action(kind: str, obj: object, fields: set[str]) -> str:
    if kind == "key" and "revoked_at" in fields and getattr(obj, "revoked_at", None):
        return "key.revoke"
    if fields == {"budget_reset_at"}:
        return "budget.reset"
    if fields <= BUDGET_FIELDS:
        return "budget.set"
    return f"{kind}.update"


def _ident(value: int | str | None) -> str | None:
    return None if value is None else str(value)[:64]


def is_secret(name: str) -> bool:
    """Whether a field named ``name`` may hold a secret (kept by name, never by value);
    a row's id (``key_id``) holds none."""
    lowered = name.lower()
    return not lowered.endswith("_id") and any(part in lowered for part in SECRET_PARTS)


def _shown(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: _value(name, value) for name, value in fields.items() if not is_secret(name)}


def _value(name: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        if name == "url" or name.endswith("_url"):
            value = _bare_url(value)
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "…"
    if value is None or isinstance(value, bool | int | float):
        return value
    try:
        encoded = orjson.dumps(value)
    except TypeError:
        return str(value)[:MAX_TEXT]
    return orjson.loads(encoded) if len(encoded) <= MAX_JSON else f"({len(encoded)} bytes)"


def _bare_url(url: str) -> str:
    """``url`` without user info, query or fragment (where credentials hide)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unreadable URL)"
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit((parts.scheme, host + port, parts.path, "", ""))
