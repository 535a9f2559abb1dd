"""User API keys: ``rg-`` plus 32 random bytes (URL-safe base64), stored as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "rg-"
DISPLAY_PREFIX_LENGTH = 9


def generate_key() -> str:
    """A new API key: ``rg-`` and 43 URL-safe characters (256 random bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The SHA-256 of ``key`` as 64 hex digits: what the database and the snapshot hold."""
    return hashlib.sha256(key.encode()).hexdigest()


GENERATED_LENGTH = len(KEY_PREFIX) + 43
MIN_IMPORTED_LENGTH = 32


def display_prefix(key: str) -> str:
    """The first characters of a generated key, enough for a person to tell keys apart.

    A key relaygate did not generate (an imported ``RELAYGATE_ADMIN_KEY``) shows
    none of its characters: its first ones may be all of its secret.
    """
    if key.startswith(KEY_PREFIX) and len(key) >= GENERATED_LENGTH:
        return key[:DISPLAY_PREFIX_LENGTH]
    return "(imported)"
