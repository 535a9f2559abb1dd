"""An endpoint's credentials: its key (stored encrypted, or named in the environment)
and the auth scheme that carries it."""

from __future__ import annotations

from typing import Literal

from relaygate.db.tables import Endpoint
from relaygate.errors import CredentialsUnavailable, DecryptionFailed
from relaygate.providers import Access, AuthScheme
from relaygate.settings import read_env_key
from relaygate.vault import Vault


def key_source(endpoint: Endpoint) -> Literal["stored", "env", "none"]:
    """``stored``, ``env`` or ``none``: where the endpoint's provider key comes from."""
    if endpoint.api_key_env:
        return "env"
    return "stored" if endpoint.api_key_encrypted else "none"


def custom_auth(endpoint: Endpoint) -> AuthScheme | None:
    """The endpoint's own auth header (e.g. ``api-key`` with no prefix), if it has one."""
    if not endpoint.auth_header:
        return None
    return AuthScheme(endpoint.auth_header.lower(), endpoint.auth_prefix or "")


def endpoint_key(endpoint: Endpoint, vault: Vault) -> str | None:
    """The endpoint's provider key in clear, or None when it has none.

    Raises :class:`CredentialsUnavailable` when the named environment variable is
    unset or the stored key does not decrypt with this secret key.
    """
    if endpoint.api_key_env:
        value = read_env_key(endpoint.api_key_env)
        if value is None:
            raise CredentialsUnavailable(
                f"environment variable {endpoint.api_key_env} (its API key) is not set"
            )
        value = value.strip()
        if not value.isascii() or any(ch < " " for ch in value):
            raise CredentialsUnavailable(
                f"environment variable {endpoint.api_key_env} holds characters a key cannot have"
            )
        return value
    if endpoint.api_key_encrypted:
        try:
            return vault.decrypt(endpoint.api_key_encrypted)
        except DecryptionFailed:
            raise CredentialsUnavailable(
                "the stored API key cannot be decrypted with this RELAYGATE_SECRET_KEY"
            ) from None
    return None


def endpoint_access(endpoint: Endpoint, vault: Vault) -> Access:
    """What a provider needs to list the endpoint's models; raises CredentialsUnavailable."""
    return Access(endpoint.url, endpoint_key(endpoint, vault), custom_auth(endpoint))
