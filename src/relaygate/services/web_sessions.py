"""Web-console sessions, kept in the database so every replica knows them.

The cookie holds a random token; the database holds its SHA-256, the hash of the API
key the user signed in with (revoking that key ends the session), a CSRF token, and
the expiry.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete

from relaygate.auth import authenticate
from relaygate.context import Context
from relaygate.db.tables import WebSession, utcnow
from relaygate.keys import hash_key
from relaygate.snapshot import Principal


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A live session: who it acts for and the token its forms must carry."""

    principal: Principal
    csrf_token: str


async def sign_in(ctx: Context, key: str) -> tuple[str, Principal]:
    """Start a session for a valid API key; returns the cookie token and who it acts for.

    Raises :class:`relaygate.errors.AuthenticationFailed` for a missing, unknown,
    revoked or expired key.
    """
    principal = authenticate(ctx.snapshots.current, key.strip() or None)
    token = secrets.token_urlsafe(32)
    async with ctx.sessions.begin() as session:
        await session.execute(delete(WebSession).where(WebSession.expires_at < utcnow()))
        session.add(
            WebSession(
                id_hash=hash_key(token),
                key_hash=hash_key(key.strip()),
                csrf_token=secrets.token_urlsafe(32),
                expires_at=utcnow() + timedelta(hours=ctx.settings.web_session_hours),
            )
        )
    return token, principal


async def sign_in_user(
    ctx: Context, user_id: int, provider: str | None = None, id_token: str | None = None
) -> str:
    """Start a session for a user who signed in through single sign-on; returns the
    cookie token. The session lasts while the user exists (or until signed out)."""
    token = secrets.token_urlsafe(32)
    async with ctx.sessions.begin() as session:
        await session.execute(delete(WebSession).where(WebSession.expires_at < utcnow()))
        session.add(
            WebSession(
                id_hash=hash_key(token),
                user_id=user_id,
                provider=provider,
                id_token=id_token,
                csrf_token=secrets.token_urlsafe(32),
                expires_at=utcnow() + timedelta(hours=ctx.settings.web_session_hours),
            )
        )
    return token


def user_principal(ctx: Context, user_id: int) -> Principal | None:
    """A principal acting for ``user_id`` with no key of its own, as a single sign-on
    session does; None when the user is gone. Its ``key_id`` is ``-user_id`` (no key has
    it): what counts per key (requests in flight, usage records of the playground) stays
    each user's own."""
    user = ctx.snapshots.current.users.get(user_id)
    return None if user is None else Principal(-user_id, user)


async def find(ctx: Context, token: str | None) -> WebSession | None:
    """The live session row of a cookie token, or None."""
    if not token:
        return None
    async with ctx.sessions() as session:
        row = await session.get(WebSession, hash_key(token))
    return None if row is None or row.expires_at <= utcnow() else row


async def current(ctx: Context, token: str | None) -> ConsoleSession | None:
    """The session for a cookie token, or None when absent, expired, or its key (or
    user) is gone."""
    row = await find(ctx, token)
    if row is None:
        return None
    if row.key_hash is None:
        by_user = user_principal(ctx, row.user_id) if row.user_id is not None else None
        return None if by_user is None else ConsoleSession(by_user, row.csrf_token)
    principal = ctx.snapshots.current.keys.get(row.key_hash)
    if principal is None:
        return None
    if principal.expires_at is not None and principal.expires_at <= utcnow().timestamp():
        return None
    return ConsoleSession(principal, row.csrf_token)


async def sign_out(ctx: Context, token: str | None) -> None:
    """End the session of a cookie token (if any)."""
    if token:
        async with ctx.sessions.begin() as session:
            await session.execute(delete(WebSession).where(WebSession.id_hash == hash_key(token)))
