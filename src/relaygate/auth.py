"""Authenticating a user API key against the snapshot: a hash and a dict lookup.

Clients send ``Authorization: Bearer <key>`` or, as older Anthropic SDKs do,
``x-api-key: <key>``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from relaygate.errors import AuthenticationFailed
from relaygate.keys import hash_key
from relaygate.snapshot import Principal, Snapshot

_BEARER = b"bearer "


def key_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The API key in raw ASGI ``headers`` (lower-case names), or None when none is sent.

    Raises :class:`AuthenticationFailed` when an ``authorization`` header is not
    ``Bearer <key>`` (another scheme, a bare key, an empty key) and no ``x-api-key``
    stands in for it: that caller meant to send a key, and should hear what is wrong.
    """
    fallback = None
    malformed: AuthenticationFailed | None = None
    for name, value in headers:
        if name == b"authorization":
            if value[:7].lower() == _BEARER:
                key = value[7:].strip()
                if key:
                    return key.decode("latin-1")
            if value.strip().lower() == b"bearer":
                malformed = AuthenticationFailed(
                    "the Authorization header has no key after 'Bearer'", code="missing_api_key"
                )
            else:
                # The value is not shown: it may well be a secret.
                malformed = AuthenticationFailed(
                    "the Authorization header must be 'Bearer <key>' (another scheme or a "
                    "bare key is not accepted)"
                )
        elif name == b"x-api-key":
            fallback = value.strip().decode("latin-1") or None
    if fallback is None and malformed is not None:
        raise malformed
    return fallback


def authenticate(snapshot: Snapshot, key: str | None) -> Principal:
    """The principal ``key`` acts for; raises :class:`AuthenticationFailed` when the key
    is missing, unknown, revoked or expired."""
    if key is None:
        raise AuthenticationFailed(
            "missing API key: send it as 'Authorization: Bearer <key>'", code="missing_api_key"
        )
    principal = snapshot.keys.get(hash_key(key))
    if principal is None:
        raise AuthenticationFailed("invalid API key (unknown or revoked)")
    if principal.expires_at is not None and principal.expires_at <= time.time():
        raise AuthenticationFailed("API key expired", code="expired_api_key")
    return principal
