"""The OpenID Connect authorization code flow with PKCE, for the console's sign-in.

:func:`start` makes a ``state``, a ``nonce`` and a PKCE verifier (RFC 7636, S256) and
gives the provider's authorization URL, with the three (and the provider's name) sealed
for the browser's state cookie (:meth:`relaygate.vault.Vault.seal`): starting a sign-in,
which anyone may do, stores nothing and, the discovery being kept a while
(:class:`relaygate.sso.provider.DiscoveryCache`), calls no one. :func:`finish` takes
the provider's answer: the cookie must open (sealed with this secret key at most
:data:`ATTEMPT_SECONDS` ago), name this provider and hold the answer's state, and its
state must not have been used (a used one is kept, hashed, until its cookie expires:
the only row a sign-in writes before it succeeds); the code is exchanged with the
verifier, and the ID token verified (:mod:`relaygate.sso.id_tokens`), its nonce the
cookie's. Reference: OpenID Connect Core 1.0 §3.1
(https://openid.net/specs/openid-connect-core-1_0.html#CodeFlowAuth).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from relaygate.context import Context
from relaygate.db.tables import UsedSignIn, utcnow
from relaygate.errors import AuthenticationFailed, NotFound, UpstreamFailed
from relaygate.keys import hash_key
from relaygate.sign_in_settings import OidcProvider
from relaygate.sso import id_tokens
from relaygate.sso import provider as idp

ATTEMPT_SECONDS = 600
"""How long a sign-in may stay at the provider before its callback is refused."""
SEALED_AS = "oidc-sign-in/1"
"""The first item of what a state cookie seals: what the sealed value is for."""


@dataclass(frozen=True, slots=True)
class Started:
    """Where to send the browser, and the sealed sign-in its state cookie keeps."""

    url: str
    cookie: str


@dataclass(frozen=True, slots=True)
class Finished:
    """A verified sign-in: the ID token and its claims."""

    id_token: str
    claims: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Attempt:
    """What a sign-in's state cookie holds."""

    state: str
    provider: str
    nonce: str
    verifier: str


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
    fails."""
    metadata = await ctx.discovery.get(provider)
    attempt = _Attempt(
        secrets.token_urlsafe(32),
        provider.name,
        secrets.token_urlsafe(32),
        secrets.token_urlsafe(48),
    )
    query = urlencode(
        {
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": redirect_uri(ctx, provider),
            "scope": " ".join(provider.scopes),
            "state": attempt.state,
            "nonce": attempt.nonce,
            "code_challenge": create_s256_code_challenge(attempt.verifier),
            "code_challenge_method": "S256",
        }
    )
    joiner = "&" if "?" in metadata.authorization_endpoint else "?"
    sealed = ctx.vault.seal(orjson.dumps([SEALED_AS, *_fields(attempt)]).decode())
    return Started(metadata.authorization_endpoint + joiner + query, sealed)


def _fields(attempt: _Attempt) -> tuple[str, str, str, str]:
    return attempt.state, attempt.provider, attempt.nonce, attempt.verifier


def _opened(ctx: Context, cookie: str) -> _Attempt | None:
    """The sign-in sealed in ``cookie``, or None when it does not open (another secret
    key, altered, older than :data:`ATTEMPT_SECONDS`) or holds something else."""
    plain = ctx.vault.unseal(cookie, ATTEMPT_SECONDS)
    if plain is None:
        return None
    try:
        fields = orjson.loads(plain)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(fields, list) or len(fields) != 5 or fields[0] != SEALED_AS:
        return None
    if not all(isinstance(f, str) for f in fields):
        return None
    return _Attempt(*fields[1:])


async def _use(ctx: Context, state: str) -> None:
    """Mark the sign-in of ``state`` used (until its cookie expires), so its callback is
    taken once (RFC 6749 §4.1.2: a code is used once, by the client too); raises
    :class:`AuthenticationFailed` when it was used already."""
    now = utcnow()
    try:
        async with ctx.sessions.begin() as session:
            await session.execute(delete(UsedSignIn).where(UsedSignIn.expires_at < now))
            session.add(
                UsedSignIn(
                    state_hash=hash_key(state),
                    expires_at=now + timedelta(seconds=ATTEMPT_SECONDS),
                )
            )
    except IntegrityError:
        raise AuthenticationFailed("the sign-in was used already; start again") from None


async def finish(
    ctx: Context, provider: OidcProvider, code: str, state: str, cookie: str | None
) -> Finished:
    """Complete a sign-in from the provider's callback, ``cookie`` being the browser's
    state cookie. Raises :class:`AuthenticationFailed` when the state is wrong, the
    cookie unknown, expired or another provider's, or the ID token fails a check;
    :class:`UpstreamFailed` when the provider fails (a used code included)."""
    if not cookie:
        raise AuthenticationFailed("the sign-in's state does not match; start again")
    attempt = _opened(ctx, cookie)
    if attempt is None:
        raise AuthenticationFailed("the sign-in is unknown or expired; start again")
    if not hmac.compare_digest(state.encode(), attempt.state.encode()):
        raise AuthenticationFailed("the sign-in's state does not match; start again")
    if attempt.provider != provider.name:
        raise AuthenticationFailed("the sign-in was started at another provider; start again")
    await _use(ctx, state)
    metadata = await ctx.discovery.get(provider)
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
        metadata = await ctx.discovery.get(provider)
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
