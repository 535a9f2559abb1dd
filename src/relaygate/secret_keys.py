"""What a secret key may be: at least 32 random bytes, spelled in hex or base64, and the
words that tell an operator whose key is refused how to make one and move to it."""

from __future__ import annotations

import base64
import binascii
import re

MIN_SECRET_BYTES = 32
MIN_SECRET_DISTINCT_BYTES = 16
SECRET_KEY_RULE = (
    "must hold at least 32 random bytes (43+ base64 characters or 64 hex digits); make one "
    "with `relaygate secrets generate` or `openssl rand -base64 32`"
)
"""What a secret key that :func:`is_strong_secret` refuses is told, after its name."""
WEAK_SECRET_KEY = (
    SECRET_KEY_RULE + "; `relaygate secrets rotate --new-key NEW`, run with the old key "
    "still set, moves stored provider keys to the new one"
)
"""What a configured secret key that :func:`is_strong_secret` refuses is told: the rule,
and how a database made with the weak key keeps its provider keys."""
_HEX = re.compile(r"[0-9A-Fa-f]+")
_BASE64 = (
    (re.compile(r"[A-Za-z0-9_-]+={0,2}"), b"-_"),  # URL-safe, as `secrets generate` makes
    (re.compile(r"[A-Za-z0-9+/]+={0,2}"), b"+/"),  # standard, as `openssl rand -base64`
)


def secret_key_bytes(value: str) -> bytes | None:
    """The bytes a secret key spells: hex when ``value`` is made of hex digits alone,
    else URL-safe or standard base64 (padding optional); None when it is none of these.

    A string of hex digits is read as hex even where it would also be base64: its
    characters carry 4 bits each, not 6, and a random base64 key is never all hex digits.
    """
    if _HEX.fullmatch(value):
        return bytes.fromhex(value) if len(value) % 2 == 0 else None
    for pattern, altchars in _BASE64:
        if pattern.fullmatch(value):
            body = value.rstrip("=")
            try:
                return base64.b64decode(
                    body + "=" * (-len(body) % 4), altchars=altchars, validate=True
                )
            except binascii.Error:
                return None
    return None


def is_strong_secret(value: str) -> bool:
    """Whether ``value`` may be a secret key: it spells (see :func:`secret_key_bytes`) at
    least :data:`MIN_SECRET_BYTES` bytes with :data:`MIN_SECRET_DISTINCT_BYTES` distinct
    values among them. A passphrase, or 64 hex zeros, is refused."""
    decoded = secret_key_bytes(value)
    return (
        decoded is not None
        and len(decoded) >= MIN_SECRET_BYTES
        and len(set(decoded)) >= MIN_SECRET_DISTINCT_BYTES
    )
