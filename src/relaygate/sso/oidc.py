"""The OpenID Connect authorization code flow with PKCE, for the console's sign-in.

:func:`start` makes a ``state``, a ``nonce`` and a PKCE verifier (RFC 7636, S256),
keeps them (the state by hash) for :data:`ATTEMPT_SECONDS`, and gives the provider's
authorization URL; the browser also keeps the state in a cookie. :func:`finish` takes
the provider's answer: the state must match the cookie's and a kept attempt (used once),
the code is exchanged with the verifier, and the ID token verified
(:mod:`relaygate.sso.id_tokens`). Reference: OpenID Connect Core 1.0 §3.1
(https://openid.net/specs/openid-connect-core-1_0.html#CodeFlowAuth).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from sqlalchemy import delete, func, select

from relaygate.context import Context
from relaygate.db.tables import SignInAttempt, utcnow
from relaygate.errors import AuthenticationFailed, NotFound, Overloaded, UpstreamFailed
from relaygate.keys import hash_key
from relaygate.sign_in_settings import OidcProvider
from relaygate.sso import id_tokens
from relaygate.sso import provider as idp

ATTEMPT_SECONDS = 600
"""How long a sign-in may stay at the provider before its callback is refused."""
MAX_ATTEMPTS = 10_000
"""Sign-ins under way at once (each a row): anyone may start one, so their number is
bounded; past it new ones get 503 until older ones end or expire."""


@dataclass(frozen=True, slots=True)
class Started:
    """Where to send the browser, and the state its cookie keeps."""

    url: str
    state: str


@dataclass(frozen=True, slots=True)
class Finished:
    """A verified sign-in: the ID token and its claims."""

    id_token: str
    claims: dict[str, Any]


def find_provider(ctx: Context, name: str) -> OidcProvider:
    """The configured provider ``name``; raises :class:`NotFound`."""
    for provider in ctx.settings.oidc:
        if provider.name == name:
            return provider
    raise NotFound(f"no sign-in provider named {name!r}")


def redirect_uri(ctx: Context, provider: OidcProvider) -> str:
    """``{public_url}/ui/auth/oidc/{name}/callback``, as registered at the provider."""
    return f"{ctx.settings.public_url}/ui/auth/oidc/{provider.name}/callback"


async def start(ctx: Context, provider: OidcProvider) -> Started:
    """Begin a sign-in at ``provider``; raises :class:`UpstreamFailed` when its discovery
    fails, :class:`Overloaded` past :data:`MAX_ATTEMPTS` sign-ins under way."""
    metadata = await idp.discover(ctx.http, provider)
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(48)
    async with ctx.sessions.begin() as session:
        await session.execute(delete(SignInAttempt).where(SignInAttempt.expires_at < utcnow()))
        under_way = await session.scalar(select(func.count()).select_from(SignInAttempt))
        if (under_way or 0) >= MAX_ATTEMPTS:
            raise Overloaded("too many sign-ins are under way; try again in a few minutes")
        session.add(
            SignInAttempt(
                state_hash=hash_key(state),
                provider=provider.name,
                nonce=nonce,
                verifier=verifier,
                expires_at=utcnow() + timedelta(seconds=ATTEMPT_SECONDS),
            )
        )
    query = urlencode(
        {
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": redirect_uri(ctx, provider),
            "scope": " ".join(provider.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    joiner = "&" if "?" in metadata.authorization_endpoint else "?"
    return Started(metadata.authorization_endpoint + joiner + query, state)


async def _take_attempt(ctx: Context, state: str) -> SignInAttempt | None:
    """The kept attempt of ``state``, deleted so it is used once, or None."""
    async with ctx.sessions.begin() as session:
        attempt = await session.get(SignInAttempt, hash_key(state))
        if attempt is None:
            return None
        result = await session.execute(
            delete(SignInAttempt).where(SignInAttempt.state_hash == attempt.state_hash)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None  # another request took it first
    return attempt


async def finish(
    ctx: Context, provider: OidcProvider, code: str, state: str, cookie_state: str | None
) -> Finished:
    """Complete a sign-in from the provider's callback. Raises
    :class:`AuthenticationFailed` when the state is wrong, unknown, used or expired,
    or the ID token fails a check; :class:`UpstreamFailed` when the provider fails."""
    if not cookie_state or not hmac.compare_digest(state.encode(), cookie_state.encode()):
        raise AuthenticationFailed("the sign-in's state does not match; start again")
    attempt = await _take_attempt(ctx, state)
    if attempt is None or attempt.provider != provider.name or attempt.expires_at <= utcnow():
        raise AuthenticationFailed("the sign-in is unknown, used or expired; start again")
    metadata = await idp.discover(ctx.http, provider)
    raw = await idp.exchange_code(
        ctx.http,
        provider,
        metadata,
        code=code,
        verifier=attempt.verifier,
        redirect_uri=redirect_uri(ctx, provider),
    )
    keys = await idp.key_set(ctx.http, provider, metadata)
    return Finished(raw, id_tokens.verify(raw, keys, provider, attempt.nonce))


async def end_session_url(ctx: Context, provider: OidcProvider, id_token: str | None) -> str | None:
    """The provider's end-session URL (RP-Initiated Logout 1.0 §2) returning to the
    sign-in page, or None when it has none or cannot be reached."""
    try:
        metadata = await idp.discover(ctx.http, provider)
    except UpstreamFailed:  # signing out of relaygate must not depend on the provider
        return None
    if metadata.end_session_endpoint is None:
        return None
    params = {
        "client_id": provider.client_id,
        "post_logout_redirect_uri": f"{ctx.settings.public_url}/ui/login",
    }
    if id_token:
        params["id_token_hint"] = id_token
    joiner = "&" if "?" in metadata.end_session_endpoint else "?"
    return metadata.end_session_endpoint + joiner + urlencode(params)
