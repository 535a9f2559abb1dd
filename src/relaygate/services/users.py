"""Users: a name, an optional email, a role (``admin`` or ``user``) and optional rate
limits per minute shared by all their keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, delete, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.orm.attributes import set_committed_value

from relaygate import audit
from relaygate.account_spec import UserUpdate
from relaygate.budget import check_budget
from relaygate.changes import declare, unit
from relaygate.context import Context
from relaygate.db.lookup import find_by_id_or_name
from relaygate.db.tables import ApiKey, User, WebSession, utcnow
from relaygate.errors import BadRequest, Conflict
from relaygate.ratelimit import check_limit
from relaygate.services.budgets import BudgetFields, apply_budget, with_spend

ROLES = ("admin", "user")


@dataclass(frozen=True, slots=True)
class UserInfo(BudgetFields):
    """A user, as the services give it and the admin API serves it."""

    id: int
    name: str
    email: str | None
    role: str
    created_at: datetime
    requests_per_minute: int | None
    tokens_per_minute: int | None
    disabled: bool = False
    """Whether an admin (or the identity provider's mapping) disabled the user: their
    keys are revoked and they cannot sign in"""


def _info(user: User) -> UserInfo:
    return UserInfo(
        user.id,
        user.name,
        user.email,
        user.role,
        user.created_at,
        user.requests_per_minute,
        user.tokens_per_minute,
        budget=user.budget,
        budget_period=user.budget_period,
        budget_reset_at=user.budget_reset_at,
        disabled=bool(user.disabled),
    )


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise BadRequest("role must be 'admin' or 'user'", param="role")
    return role


def check_name(name: str) -> str:
    """``name`` stripped; raises :class:`BadRequest` unless it is 1 to 200 characters."""
    name = name.strip()
    if not name or len(name) > 200:
        raise BadRequest("name must be 1 to 200 characters", param="name")
    return name


async def find_user(session: AsyncSession, ident: int | str) -> User:
    """The user with id ``ident`` (or that name); raises :class:`NotFound`."""
    return await find_by_id_or_name(session, User, ident, "user")


async def list_users(ctx: Context) -> list[UserInfo]:
    """Every user, with their budgets' spend."""
    async with ctx.sessions() as session:
        infos = [_info(u) for u in (await session.scalars(select(User).order_by(User.id))).all()]
    return await with_spend(ctx, "user", infos)


async def get_user(ctx: Context, ident: int | str) -> UserInfo:
    """The user with id or name ``ident``, with their budget's spend; raises NotFound."""
    async with ctx.sessions() as session:
        info = _info(await find_user(session, ident))
    return (await with_spend(ctx, "user", [info]))[0]


async def create_user(
    ctx: Context,
    *,
    name: str,
    email: str | None = None,
    role: str = "user",
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
    budget: float | None = None,
    budget_period: str | None = None,
) -> UserInfo:
    """Create a user, with optional limits per minute on all their keys' requests and
    tokens together (None: no limit) and a budget per ``budget_period``; raises
    :class:`BadRequest` or :class:`Conflict` (name taken)."""
    budget, budget_period = check_budget(budget, budget_period)
    user = User(
        budget=budget,
        budget_period=budget_period,
        name=check_name(name),
        email=email or None,
        role=_check_role(role),
        disabled=False,
        requests_per_minute=check_limit(requests_per_minute, "requests_per_minute"),
        tokens_per_minute=check_limit(tokens_per_minute, "tokens_per_minute"),
    )
    try:
        async with unit(ctx) as session:
            session.add(user)
    except IntegrityError:
        raise Conflict(f"a user named {user.name!r} already exists", param="name") from None
    return (await with_spend(ctx, "user", [_info(user)]))[0]


def _another_admin(user_id: int) -> ColumnElement[bool]:
    other = aliased(User)
    return exists().where(other.role == "admin", other.id != user_id, other.disabled.is_(False))


async def _lock_admins(session: AsyncSession) -> None:
    """Lock every admin row until the transaction ends (PostgreSQL; SQLite has one writer
    at a time and ignores it), so two concurrent demotions of the last two admins cannot
    both see the other left: the second waits, then sees the first's change."""
    await session.execute(select(User.id).where(User.role == "admin").with_for_update())


async def _demote(session: AsyncSession, user_id: int, role: str) -> None:
    """Give admin ``user_id`` the role ``role`` in one conditional statement, refused with
    :class:`Conflict` when no other admin is left."""
    await _lock_admins(session)
    result = await session.execute(
        update(User)
        .where(User.id == user_id, User.role == "admin", _another_admin(user_id))
        .values(role=role)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("cannot demote the last admin", param="role")
    declare(session, "user", user_id)
    audit.note(session, "user.update", "user", user_id, values={"role": role})


async def update_user(
    ctx: Context,
    ident: int | str,
    changes: UserUpdate,
) -> UserInfo:
    """Apply the fields ``changes`` sent: a user's name, email, role, limits per minute
    (None clears a limit), budget (None clears it) or whether they are disabled
    (disabling revokes their API keys and ends their console sessions; enabling again
    restores no key). The last admin cannot be demoted (Conflict); a bad value raises
    :class:`BadRequest`."""
    sent = changes.changes()
    disabled = sent.get("disabled")
    try:
        async with unit(ctx) as session:
            user = await find_user(session, ident)
            if "name" in sent:
                user.name = check_name(sent["name"])
            if "email" in sent:
                user.email = sent["email"] or None
            if "role" in sent:
                role = _check_role(sent["role"])
                if user.role == "admin" and role != "admin":
                    await _demote(session, user.id, role)
                    set_committed_value(user, "role", role)
                else:
                    user.role = role
            for limit in ("requests_per_minute", "tokens_per_minute"):
                if limit in sent:
                    setattr(user, limit, check_limit(sent[limit], limit))
            apply_budget(user, sent)
            if disabled is not None and disabled != user.disabled:
                if disabled and user.role == "admin":
                    await _lock_admins(session)
                    others = select(User.id).where(
                        User.role == "admin", User.id != user.id, User.disabled.is_(False)
                    )
                    if (await session.scalar(others.limit(1))) is None:
                        raise Conflict("cannot disable the last admin", param="disabled")
                user.disabled = disabled
                if disabled:
                    await revoke_keys(session, user.id)
    except IntegrityError:
        raise Conflict(f"a user named {sent.get('name')!r} already exists", param="name") from None
    if disabled is True:
        async with ctx.sessions.begin() as session:
            await session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    return (await with_spend(ctx, "user", [_info(user)]))[0]


async def revoke_keys(session: AsyncSession, user_id: int) -> int:
    """Revoke every API key of ``user_id`` in ``session`` (a unit); returns how many."""
    revoked = 0
    for key in (
        await session.scalars(
            select(ApiKey).where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        )
    ).all():
        key.revoked_at = utcnow()
        revoked += 1
    return revoked


async def delete_user(ctx: Context, ident: int | str) -> None:
    """Delete a user and their API keys. The last admin cannot be deleted (Conflict)."""
    async with unit(ctx) as session:
        user = await find_user(session, ident)
        await _lock_admins(session)
        result = await session.execute(
            delete(User)
            .where(User.id == user.id, or_(User.role != "admin", _another_admin(user.id)))
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict("cannot delete the last admin")
        session.expunge(user)
        declare(session, "user", user.id)
        audit.note(session, "user.delete", "user", user.id, user.name)
