"""Provider keys encrypted at rest (Fernet from ``cryptography``: AES-128-CBC + HMAC-SHA256).

The operator's secret key (``RELAYGATE_SECRET_KEY``: at least 32 random bytes in
base64 or hex, see :func:`relaygate.secret_keys.is_strong_secret`) is stretched with
HKDF-SHA256 into the Fernet key. Without one, on a SQLite file database, a random
secret is generated into a file beside the database (mode 0600).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from relaygate.errors import ConfigError, DecryptionFailed
from relaygate.secret_keys import WEAK_SECRET_KEY, is_strong_secret
from relaygate.settings import Settings

log = logging.getLogger(__name__)
SECRET_FILE_NAME = "relaygate.secret"
CHECK_PLAINTEXT = "relaygate-secret-check"


class Vault:
    """Encrypts and decrypts provider keys with one secret key, and seals what a browser
    carries for relaygate (:meth:`seal`)."""

    def __init__(self, secret: str):
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"relaygate provider keys"
        ).derive(secret.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))
        self._mac_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"relaygate console"
        ).derive(secret.encode())
        self._sealer = Fernet(
            base64.urlsafe_b64encode(
                HKDF(
                    algorithm=hashes.SHA256(), length=32, salt=None, info=b"relaygate sealed"
                ).derive(secret.encode())
            )
        )
        self.mark = hmac.new(secret.encode(), b"relaygate via", hashlib.sha256).hexdigest()[:16]
        """This installation's mark (16 hex digits, the same on every replica sharing the
        secret, revealing nothing of it): sent upstream so a request that comes back is
        recognised (see :data:`relaygate.proxy.checks.VIA_HEADER`)."""

    def sign(self, message: str) -> str:
        """An HMAC-SHA256 of ``message`` under a key derived from the secret (the same on
        every replica), as hex: for tokens relaygate must recognise but not store."""
        return hmac.new(self._mac_key, message.encode(), hashlib.sha256).hexdigest()

    def encrypt(self, plaintext: str) -> str:
        """Encrypt ``plaintext``; returns an ASCII token safe to store."""
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        """Decrypt a token from :meth:`encrypt`; raises :class:`DecryptionFailed`."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, ValueError):
            raise DecryptionFailed("value was encrypted with another secret key") from None

    def seal(self, plaintext: str, at: int | None = None) -> str:
        """Encrypt and authenticate ``plaintext``, stamped with the time ``at`` (Unix
        seconds; default now), for a browser to carry and give back (a sign-in's state
        cookie): a URL-safe ASCII token that only this secret key opens. Its key is
        derived apart from the provider keys' (HKDF ``info``), so a sealed value and a
        stored provider key never open each other."""
        data = plaintext.encode()
        token = self._sealer.encrypt(data) if at is None else self._sealer.encrypt_at_time(data, at)
        return token.decode("ascii")

    def unseal(self, token: str, max_age: int) -> str | None:
        """The plaintext :meth:`seal` sealed into ``token`` at most ``max_age`` seconds ago,
        or None when it was not sealed with this secret key, was altered, or is older."""
        try:
            return self._sealer.decrypt(token.encode("ascii"), ttl=max_age).decode()
        except (InvalidToken, ValueError):
            return None


def key_hint(key: str) -> str:
    """The most of a key relaygate ever shows: its last four characters."""
    return "…" + key[-4:] if len(key) >= 12 else "…"


def generate_secret() -> str:
    """A new random secret key (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def secret_file_path(settings: Settings) -> Path | None:
    """Where the generated secret key lives, or None when there is no such place."""
    if settings.secret_key_file:
        return Path(settings.secret_key_file)
    db_file = settings.sqlite_path
    return db_file.parent / SECRET_FILE_NAME if db_file is not None else None


def load_secret(
    settings: Settings, *, create: bool = True, allow_weak_secret_key: bool = False
) -> str:
    """Return the secret key: the setting, else the key file (generated when ``create``).

    Raises :class:`ConfigError` when neither exists and none can be generated, and when
    the key file holds a key :func:`is_strong_secret` refuses (unless
    ``allow_weak_secret_key``, for ``secrets rotate``; the setting itself was checked
    when the settings were loaded).
    """
    if settings.secret_key:
        return settings.secret_key
    path = secret_file_path(settings)
    if path is None:
        raise ConfigError(
            "set RELAYGATE_SECRET_KEY: it encrypts provider keys and must be the same on every "
            "replica (generate one with `relaygate secrets generate`)"
        )
    if path.is_file():
        text = path.read_text(encoding="utf-8").strip()
        if text:
            if not allow_weak_secret_key and not is_strong_secret(text):
                raise ConfigError(f"the secret key in {path} {WEAK_SECRET_KEY}")
            return text
    if not create:
        raise ConfigError(f"no secret key: set RELAYGATE_SECRET_KEY or create {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = generate_secret()
    write_secret_file(path, secret)
    log.warning(
        "RELAYGATE_SECRET_KEY is not set: generated one into %s (mode 0600). Back it up with "
        "the database; without it stored provider keys cannot be decrypted.",
        path,
    )
    return secret


def write_secret_file(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path`` readable by its owner only (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret + "\n")
    os.chmod(path, 0o600)
