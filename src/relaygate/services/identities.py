"""Users from an identity provider: who a sign-in is, what role and groups it brings.

A sign-in is matched by (provider, subject) alone; an email links a first sign-in to
an existing user only where the provider's ``link_by_email`` allows it. The role comes
from ``admin_groups`` (when set) and the memberships from ``group_map`` at every
sign-in: memberships the mapping made (``group_members.source``) and the provider no
longer lists are removed; memberships an administrator added are never touched. A
sign-in the mapping refuses (``allowed_groups``, ``allowed_email_domains``) revokes the
API keys of the user it names and ends their console sessions: the provider removed
them, so they lose access at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from relaygate.account_spec import UserUpdate
from relaygate.changes import unit
from relaygate.context import Context
from relaygate.db.tables import Group, GroupMember, Identity, User, WebSession, utcnow
from relaygate.errors import Conflict, PermissionDenied
from relaygate.services import users

log = logging.getLogger(__name__)
MAX_NAME_TRIES = 20


@dataclass(frozen=True, slots=True)
class Asserted:
    """Who a provider says signs in. ``provider`` is the ``oidc:`` entry's name, or
    ``proxy`` for the trusted proxy's headers."""

    provider: str
    subject: str
    email: str | None
    name: str | None
    groups: frozenset[str]
    email_verified: bool | None = None


@dataclass(frozen=True, slots=True)
class Mapping:
    """How a provider's claims become a relaygate user (the provider's settings)."""

    admin_groups: frozenset[str] = frozenset()
    group_map: dict[str, str] = field(default_factory=dict)
    allowed_groups: frozenset[str] | None = None
    allowed_email_domains: tuple[str, ...] | None = None
    link_by_email: bool = False


def refusal(asserted: Asserted, mapping: Mapping) -> str | None:
    """Why the mapping refuses this sign-in, or None when it allows it."""
    if mapping.allowed_email_domains is not None:
        domain = (asserted.email or "").rpartition("@")[2].lower()
        if not asserted.email or domain not in mapping.allowed_email_domains:
            return "your email domain is not allowed to sign in"
        if asserted.email_verified is False:
            return "your email address is not verified at the identity provider"
    if mapping.allowed_groups is not None and not asserted.groups & mapping.allowed_groups:
        return "you are in none of the groups allowed to sign in"
    return None


async def remove_access(ctx: Context, user_id: int) -> int:
    """Revoke every API key of ``user_id`` and end their console sessions; returns how
    many keys were revoked."""
    async with unit(ctx) as session:
        revoked = await users.revoke_keys(session, user_id)
    async with ctx.sessions.begin() as session:
        await session.execute(delete(WebSession).where(WebSession.user_id == user_id))
    return revoked


async def _free_name(ctx: Context, wanted: str) -> str:
    async with ctx.sessions() as session:
        for attempt in range(MAX_NAME_TRIES):
            name = wanted[:190] if attempt == 0 else f"{wanted[:190]}-{attempt + 1}"
            if await session.scalar(select(User.id).where(User.name == name)) is None:
                return name
    raise Conflict(f"no free user name for {wanted!r}")


async def _link_or_create(ctx: Context, asserted: Asserted, mapping: Mapping) -> int:
    """The user a first sign-in links to (by email, when allowed) or creates, with the
    identity, in one transaction: of two first sign-ins of one subject at once (a
    browser's first page behind the trusted proxy loads several things), one links and
    the other takes its user, leaving no user without an identity."""
    user_id: int | None = None
    # Only an address the provider says it verified: one that sends no email_verified
    # may let its users type any address, an admin's included.
    if mapping.link_by_email and asserted.email and asserted.email_verified is True:
        async with ctx.sessions() as session:
            found = (
                await session.scalars(select(User.id).where(User.email == asserted.email))
            ).all()
        if len(found) == 1:
            user_id = found[0]
    name = None
    if user_id is None:
        wanted = asserted.email or asserted.name or ""
        wanted = wanted.strip() or f"{asserted.provider}-{asserted.subject}"
        name = users.check_name(await _free_name(ctx, wanted))
    try:
        async with unit(ctx) as session:
            if user_id is None:
                user = User(name=name, email=asserted.email, role="user", disabled=False)
                session.add(user)
                await session.flush()
                user_id = user.id
            session.add(
                Identity(
                    provider=asserted.provider,
                    subject=asserted.subject,
                    user_id=user_id,
                    email=asserted.email,
                )
            )
    except IntegrityError:
        async with ctx.sessions() as session:
            linked = await session.scalar(
                select(Identity.user_id).where(
                    Identity.provider == asserted.provider, Identity.subject == asserted.subject
                )
            )
            taken = name is not None and await session.scalar(
                select(User.id).where(User.name == name)
            )
        if linked is not None:
            return linked
        if taken:  # the free name was taken meanwhile by another user's first sign-in
            raise Conflict("another sign-in took this user name at once; sign in again") from None
        raise
    log.info("user %d linked to %s subject %r", user_id, asserted.provider, asserted.subject)
    return user_id


async def _sync_role(ctx: Context, user: User, asserted: Asserted, mapping: Mapping) -> None:
    if not mapping.admin_groups:
        return
    role: Literal["admin", "user"] = "admin" if asserted.groups & mapping.admin_groups else "user"
    if role != user.role:
        try:
            await users.update_user(ctx, user.id, UserUpdate.unchecked(role=role))
        except Conflict:
            log.warning("user %d kept the admin role: they are the last admin", user.id)


async def _sync_groups(ctx: Context, user_id: int, asserted: Asserted, mapping: Mapping) -> None:
    """Make ``user_id``'s memberships from this provider the ones the mapping gives. Two
    sign-ins of one user at once may both add a membership: the one that loses reads
    what the other committed and finds nothing left to do."""
    try:
        await _set_groups(ctx, user_id, asserted, mapping)
    except IntegrityError:
        await _set_groups(ctx, user_id, asserted, mapping)


async def _set_groups(ctx: Context, user_id: int, asserted: Asserted, mapping: Mapping) -> None:
    source = asserted.provider if asserted.provider == "proxy" else f"oidc:{asserted.provider}"
    wanted = {mapping.group_map[g] for g in asserted.groups if g in mapping.group_map}
    async with unit(ctx) as session:
        rows = await session.execute(select(Group.name, Group.id).where(Group.name.in_(wanted)))
        ids = {name: group_id for name, group_id in rows}
        for missing in wanted - ids.keys():
            log.warning("group_map names the relaygate group %r, which does not exist", missing)
        held = {
            m.group_id: m
            for m in (
                await session.scalars(select(GroupMember).where(GroupMember.user_id == user_id))
            ).all()
        }
        for group_id, member in held.items():
            if member.source == source and group_id not in ids.values():
                await session.delete(member)
        for group_id in ids.values():
            if group_id not in held:
                session.add(GroupMember(group_id=group_id, user_id=user_id, source=source))


async def sign_in(ctx: Context, asserted: Asserted, mapping: Mapping) -> int:
    """The id of the relaygate user ``asserted`` is, created or linked on a first
    sign-in, with role and groups synced. Raises :class:`PermissionDenied` when the
    mapping refuses the sign-in (the user's keys are then revoked) or the user is
    disabled."""
    async with ctx.sessions() as session:
        identity = await session.scalar(
            select(Identity).where(
                Identity.provider == asserted.provider, Identity.subject == asserted.subject
            )
        )
    refused = refusal(asserted, mapping)
    if refused is not None:
        if identity is not None:
            revoked = await remove_access(ctx, identity.user_id)
            log.warning(
                "user %d refused by %s's mapping: %d API key(s) revoked",
                identity.user_id,
                asserted.provider,
                revoked,
            )
        raise PermissionDenied(refused)
    user_id = identity.user_id if identity else await _link_or_create(ctx, asserted, mapping)
    async with ctx.sessions() as session:
        user = await session.get(User, user_id)
    if user is None:
        raise PermissionDenied("this user no longer exists")
    if user.disabled:
        raise PermissionDenied("this user is disabled in relaygate")
    await _sync_role(ctx, user, asserted, mapping)
    await _sync_groups(ctx, user_id, asserted, mapping)
    async with ctx.sessions.begin() as session:
        await session.execute(
            update(Identity)
            .where(Identity.provider == asserted.provider, Identity.subject == asserted.subject)
            .values(last_sign_in_at=utcnow(), email=asserted.email)
        )
    return user_id
