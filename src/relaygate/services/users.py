"""Users: a name, an optional email and a role (``admin`` or ``user``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from relaygate.changes import bump
from relaygate.context import Context
from relaygate.db.lookup import find_by_id_or_name
from relaygate.db.tables import User
from relaygate.errors import BadRequest, Conflict
from relaygate.services.patch import UNSET, Unset

ROLES = ("admin", "user")


@dataclass(frozen=True, slots=True)
class UserInfo:
    id: int
    name: str
    email: str | None
    role: str
    created_at: datetime


def _info(user: User) -> UserInfo:
    return UserInfo(user.id, user.name, user.email, user.role, user.created_at)


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise BadRequest("role must be 'admin' or 'user'", param="role")
    return role


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise BadRequest("name must be 1 to 200 characters", param="name")
    return name


async def find_user(session: AsyncSession, ident: int | str) -> User:
    """The user with id ``ident`` (or that name); raises :class:`NotFound`."""
    return await find_by_id_or_name(session, User, ident, "user")


async def list_users(ctx: Context) -> list[UserInfo]:
    async with ctx.sessions() as session:
        return [_info(u) for u in (await session.scalars(select(User).order_by(User.id))).all()]


async def get_user(ctx: Context, ident: int | str) -> UserInfo:
    async with ctx.sessions() as session:
        return _info(await find_user(session, ident))


async def create_user(
    ctx: Context, *, name: str, email: str | None = None, role: str = "user"
) -> UserInfo:
    """Create a user; raises :class:`BadRequest` or :class:`Conflict` (name taken)."""
    user = User(name=_check_name(name), email=email or None, role=_check_role(role))
    try:
        async with ctx.sessions.begin() as session:
            session.add(user)
    except IntegrityError:
        raise Conflict(f"a user named {user.name!r} already exists", param="name") from None
    return _info(user)


async def _admins(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).where(User.role == "admin")) or 0)


async def update_user(
    ctx: Context,
    ident: int | str,
    *,
    name: str | Unset = UNSET,
    email: str | Unset | None = UNSET,
    role: str | Unset = UNSET,
) -> UserInfo:
    """Change a user's name, email or role. The last admin cannot be demoted (Conflict)."""
    try:
        async with ctx.sessions.begin() as session:
            user = await find_user(session, ident)
            if not isinstance(name, Unset):
                user.name = _check_name(name)
            if not isinstance(email, Unset):
                user.email = email or None
            if not isinstance(role, Unset):
                if user.role == "admin" and role != "admin" and await _admins(session) <= 1:
                    raise Conflict("cannot demote the last admin", param="role")
                user.role = _check_role(role)
            await bump(session)
    except IntegrityError:
        raise Conflict(f"a user named {name!r} already exists", param="name") from None
    await ctx.snapshots.refresh()
    return _info(user)


async def delete_user(ctx: Context, ident: int | str) -> None:
    """Delete a user and their API keys. The last admin cannot be deleted (Conflict)."""
    async with ctx.sessions.begin() as session:
        user = await find_user(session, ident)
        if user.role == "admin" and await _admins(session) <= 1:
            raise Conflict("cannot delete the last admin")
        await session.delete(user)
        await bump(session)
    await ctx.snapshots.refresh()
