"""The fields of an endpoint, checked: what an operator may give its URL, name, pool,
timeouts, sync interval, batch concurrency, key, key variable and custom auth header.
Each check returns the value as stored and raises :class:`BadRequest` (``param`` naming
the field) with a sentence saying what to write instead."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from relaygate.db.tables import Endpoint
from relaygate.endpoint_spec import API_MODES, MAX_BATCH_CONCURRENCY, MAX_SYNC_INTERVAL
from relaygate.errors import BadRequest
from relaygate.settings import Settings


def check_url(url: str) -> str:
    """Return ``url`` without a trailing slash if it is an http(s) API base URL;
    raises :class:`BadRequest` otherwise."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        valid = False
    if not valid:
        raise BadRequest(
            f"url {url!r} is not an http(s) URL; give the API base, e.g. "
            "https://api.openai.com/v1 or http://127.0.0.1:11434/v1",
            param="url",
        )
    if parts.username is not None or parts.password is not None:
        raise BadRequest(
            "url must not carry credentials (user:password@); put the key in api_key",
            param="url",
        )
    if parts.query or parts.fragment:
        raise BadRequest("url must be the API base, without ?query or #fragment", param="url")
    return url.rstrip("/")


def check_pool(pool: str | None) -> str | None:
    """A pool name (1 to 200 printable characters), or None for none; raises
    :class:`BadRequest`."""
    if pool is None or not pool.strip():
        return None
    pool = pool.strip()
    if len(pool) > 200 or not pool.isprintable():
        raise BadRequest("pool must be 1 to 200 printable characters", param="pool")
    return pool


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise BadRequest("name must be 1 to 200 characters", param="name")
    return name


TIMEOUT_NAMES = ("connect", "first_byte", "idle", "total")


def check_timeouts(value: dict[str, float] | None) -> dict[str, float] | None:
    """An endpoint's own timeouts: a mapping of ``connect``, ``first_byte``, ``idle``
    and ``total`` to positive seconds, or None for none; raises :class:`BadRequest`."""
    if not value:
        return None
    unknown = sorted(set(value) - set(TIMEOUT_NAMES))
    if unknown:
        raise BadRequest(
            f"unknown timeout {unknown[0]!r}: use {', '.join(TIMEOUT_NAMES)}", param="timeouts"
        )
    out: dict[str, float] = {}
    for name, seconds in value.items():
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0 < seconds <= 86400
        ):
            raise BadRequest(
                f"timeouts.{name} must be a number of seconds above 0 and at most 86400",
                param=f"timeouts.{name}",
            )
        out[name] = float(seconds)
    return out


def check_interval(value: float | None) -> float | None:
    if value is not None and not 0 < value <= MAX_SYNC_INTERVAL:
        raise BadRequest(
            "sync_interval must be a positive number of seconds, at most a year",
            param="sync_interval",
        )
    return value


def check_batch_concurrency(value: int | None) -> int | None:
    """Batch requests one process may send the endpoint at once: a whole number from 1
    to :data:`MAX_BATCH_CONCURRENCY`, or None to follow the ``batch_concurrency``
    setting; raises :class:`BadRequest`."""
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 1 <= value <= MAX_BATCH_CONCURRENCY
    ):
        raise BadRequest(
            f"batch_concurrency must be a whole number from 1 to {MAX_BATCH_CONCURRENCY}, "
            "or null to follow the batch_concurrency setting",
            param="batch_concurrency",
        )
    return value


_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_env_name(settings: Settings, name: str | None) -> str | None:
    """An environment variable name an endpoint may read its key from: it must match one
    of ``api_key_env_patterns`` and may never be one of relaygate's own settings."""
    if not name:
        return None
    if not _ENV_NAME.match(name):
        raise BadRequest(
            "api_key_env must be an environment variable name such as OPENAI_API_KEY",
            param="api_key_env",
        )
    allowed = any(fnmatchcase(name, p) for p in settings.api_key_env_patterns)
    if name.startswith("RELAYGATE_") or not allowed:
        raise BadRequest(
            f"api_key_env {name!r} is not allowed: it must match one of "
            f"{', '.join(settings.api_key_env_patterns)} (setting api_key_env_patterns)",
            param="api_key_env",
        )
    return name


def check_header(name: str | None) -> str | None:
    if name is not None and (not _HEADER_NAME.match(name) or len(name) > 100):
        raise BadRequest(
            "auth_header must be an HTTP header name such as api-key", param="auth_header"
        )
    return name.lower() if name else None


def check_prefix(prefix: str | None) -> str | None:
    if prefix is None:
        return None
    if len(prefix) > 50 or not prefix.isascii() or any(ch < " " for ch in prefix):
        raise BadRequest(
            "auth_prefix must be up to 50 printable ASCII characters, e.g. 'Bearer '",
            param="auth_prefix",
        )
    return prefix


def check_provider_key(value: str | None, param: str, limit: int) -> str | None:
    """A provider key as stored: stripped, printable ASCII, at most ``limit`` characters
    (setting ``max_provider_key_bytes``); None for none. Raises :class:`BadRequest`."""
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or any(ch < " " for ch in value):
        raise BadRequest(f"{param} must be printable ASCII", param=param)
    if len(value) > limit:
        raise BadRequest(
            f"{param} is longer than {limit} characters, more than any provider's key "
            "(setting max_provider_key_bytes)",
            param=param,
        )
    return value or None


def check_api_mode(param: str, mode: str) -> str:
    """An API mode (``messages_api``, ``responses_api``, ``chat_api``): ``auto``,
    ``native`` or ``translate``; raises :class:`BadRequest`."""
    if mode not in API_MODES:
        raise BadRequest(f"{param} must be one of {', '.join(API_MODES)}", param=param)
    return mode


@dataclass(frozen=True, slots=True)
class ApiModes:
    """How requests of each API reach an endpoint (``auto``, ``native``, ``translate``)
    and what ``auto`` found since its last sync (API name → ``native``/``translate``)."""

    messages_api: str
    responses_api: str
    chat_api: str
    found: dict[str, str]


def api_modes(endpoint: Endpoint) -> ApiModes:
    """``endpoint``'s API modes as stored."""
    return ApiModes(
        endpoint.messages_api or "auto",
        endpoint.responses_api or "auto",
        endpoint.chat_api or "auto",
        dict(endpoint.api_found or {}),
    )
