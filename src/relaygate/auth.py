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
    """The API key in raw ASGI ``headers`` (lower-case names), or None."""
    fallback = None
    for name, value in headers:
        if name == b"authorization":
            if value[:7].lower() == _BEARER:
                return value[7:].strip().decode("latin-1") or None
        elif name == b"x-api-key":
            fallback = value.strip().decode("latin-1") or None
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
