"""Verifying an OpenID Connect ID token with joserfc (Authlib's JOSE library).

Checked, after OpenID Connect Core 1.0 §3.1.3.7
(https://openid.net/specs/openid-connect-core-1_0.html#IDTokenValidation): the
signature against the provider's key set (asymmetric algorithms only: ``none`` and
HMAC are refused), ``iss`` equal to the issuer, ``aud`` holding the client id (and
``azp`` equal to it when there are several audiences), ``exp`` and ``iat`` within the
allowed clock skew, and ``nonce`` equal to the one this sign-in sent.
"""

from __future__ import annotations

import time
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from relaygate.errors import AuthenticationFailed
from relaygate.sign_in_settings import OidcProvider

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")


def verify(
    raw: str,
    keys: dict[str, Any],
    provider: OidcProvider,
    nonce: str,
    now: float | None = None,
) -> dict[str, Any]:
    """The claims of the ID token ``raw`` once every check above passed; raises
    :class:`AuthenticationFailed` (without the token) when one fails."""
    try:
        key_set = KeySet.import_key_set(keys)  # type: ignore[arg-type]
        token = jwt.decode(raw, key_set, algorithms=list(ALGORITHMS))
        registry = jwt.JWTClaimsRegistry(
            now=int(now if now is not None else time.time()),
            leeway=int(provider.clock_skew),
            # The configured issuer is kept without a trailing slash; a provider whose
            # issuer has one (Auth0) puts it in ``iss`` (discovery checked it is the same).
            iss={"essential": True, "values": [provider.issuer, provider.issuer + "/"]},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        registry.validate(token.claims)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise AuthenticationFailed(
            f"the ID token from {provider.name!r} was refused ({type(exc).__name__})"
        ) from None
    claims = token.claims
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if provider.client_id not in audiences:
        raise AuthenticationFailed(f"the ID token from {provider.name!r} is for another client")
    if len(audiences) > 1 and claims.get("azp") != provider.client_id:
        raise AuthenticationFailed(f"the ID token from {provider.name!r} is for another client")
    return claims
