"""The interface every provider adapter implements, and the shared listing call.

A provider knows how to authenticate to an endpoint (per API surface, for
forwarding, and for its model listing), how to list the endpoint's models
(following pagination to the end) and how to map its listing to
:class:`DiscoveredModel`. Listing failures are raised as :class:`ListingFailed`
with a sentence an operator can act on (name not resolved, connection refused,
timed out, HTTP 401 and the provider's own message, …).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
import orjson

from relaygate.errors import ListingFailed
from relaygate.routes import RoutePolicy

CAPABILITIES = ("chat", "completions", "embeddings", "vision", "tools", "audio", "images")


@dataclass(frozen=True, slots=True)
class DiscoveredModel:
    """One model as a provider's listing describes it. Token limits are counts of tokens;
    ``created`` is when the provider released or created the model."""

    id: str
    owned_by: str | None = None
    display_name: str | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    created: datetime | None = None
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthScheme:
    """How a key travels: in header ``header`` (lower-case), after ``prefix``."""

    header: str
    prefix: str = ""

    def headers(self, api_key: str | None) -> dict[str, str]:
        """The header carrying ``api_key``; none without a key."""
        return {self.header: self.prefix + api_key} if api_key else {}


BEARER = AuthScheme("authorization", "Bearer ")


@dataclass(frozen=True, slots=True)
class Surface:
    """One API surface of a provider: the request paths (below the endpoint URL) it
    serves, how it authenticates, and headers set only when the client sent none.
    A surface with no ``prefixes`` serves every other path."""

    auth: AuthScheme
    prefixes: tuple[str, ...] = ()
    defaults: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Access:
    """What listing needs of an endpoint: its URL, its key, and its custom auth scheme
    (which, when set, replaces the provider's everywhere)."""

    url: str
    api_key: str | None = field(repr=False)
    custom_auth: AuthScheme | None = None
    max_bytes: int = 32 * 1024 * 1024
    """The largest listing page read; a larger one fails the listing."""
    max_models: int = 20_000
    """The most models a listing (all pages) may hold; more fail the listing."""

    def check_count(self, url: str, count: int) -> None:
        """Raise :class:`ListingFailed` when ``count`` models are more than ``max_models``."""
        if count > self.max_models:
            raise ListingFailed(
                f"{url} lists more than {self.max_models} models (setting max_listing_models); "
                "narrow it with the endpoint's model_filter on the server, or raise the setting"
            )

    def headers(self, scheme: AuthScheme) -> dict[str, str]:
        return (self.custom_auth or scheme).headers(self.api_key)


class Provider(Protocol):
    """What relaygate needs from each kind of endpoint."""

    type: str
    surfaces: tuple[Surface, ...]
    """Forwarding rules, most specific first; the last has no prefixes."""
    routes: RoutePolicy
    """The inference routes forwarded to endpoints of this type (see :mod:`relaygate.routes`)."""

    async def list_models(
        self, http: aiohttp.ClientSession, access: Access, timeout: float
    ) -> list[DiscoveredModel]:
        """Every model of the endpoint, all pages; raises :class:`ListingFailed`."""
        ...


@dataclass(slots=True)
class JsonResponse:
    status: int
    body: Any = field(default=None)


def _connection_reason(exc: aiohttp.ClientConnectorError) -> str:
    cause = exc.os_error
    if isinstance(exc, aiohttp.ClientConnectorDNSError) or isinstance(cause, socket.gaierror):
        return f"host name {exc.host!r} could not be resolved (check the URL)"
    if isinstance(cause, ConnectionRefusedError):
        return f"connection refused by {exc.host}:{exc.port} (is the server running?)"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate of {exc.host} was not accepted"
    return f"could not connect to {exc.host}:{exc.port} ({cause.strerror or cause})"


def mask(text: str, secrets: Mapping[str, str]) -> str:
    """``text`` with every header value in ``secrets`` (and the key after its prefix)
    replaced by ``…``: providers may echo the key they were sent."""
    for value in secrets.values():
        for secret in {value, value.rpartition(" ")[2]}:
            if len(secret) >= 4:
                text = text.replace(secret, "…")
    return text


def provider_message(body: Any) -> str | None:
    """The human message in a provider's error body (OpenAI, Anthropic and Google shapes:
    ``{"error": {"message"}}``, ``{"type": "error", "error": {"message"}}``), if any."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:300]
        if isinstance(error, str):
            return error[:300]
    return None


async def get_json(
    http: aiohttp.ClientSession,
    url: str,
    headers: Mapping[str, str],
    timeout: float,
    params: Mapping[str, str] | None = None,
    *,
    allow_404: bool = False,
    max_bytes: int = 32 * 1024 * 1024,
) -> JsonResponse:
    """GET ``url`` and return its status and decoded JSON body.

    Raises :class:`ListingFailed` naming the cause: DNS, refused connection, timeout
    after ``timeout`` seconds, a redirect (never followed; the message names its
    target), a non-2xx status (with the provider's message), or a body that is not JSON.
    With ``allow_404`` a 404 is returned, not raised.
    """
    try:
        async with http.get(
            url,
            headers=dict(headers),
            params=params,
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as response:
            status = response.status
            if 300 <= status < 400:
                # Never followed: the endpoint's key would go wherever it points.
                target = response.headers.get("location", "nowhere")[:300]
                raise ListingFailed(
                    f"{url} redirected (HTTP {status}) to {target}; relaygate does not follow "
                    "redirects: set the endpoint's URL to where the API really is"
                )
            raw = await _read_bounded(response, url, max_bytes)
            content_type = response.headers.get("content-type", "unknown")
    except aiohttp.ClientConnectorError as exc:
        raise ListingFailed(_connection_reason(exc)) from None
    except TimeoutError:
        raise ListingFailed(f"timed out after {timeout:g} s waiting for {url}") from None
    except (aiohttp.InvalidURL, ValueError):
        raise ListingFailed(f"{url} is not a valid URL") from None
    except aiohttp.ClientError as exc:
        raise ListingFailed(f"request to {url} failed: {type(exc).__name__}") from None
    except asyncio.CancelledError:
        raise
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
        if status < 400:
            raise ListingFailed(
                f"response from {url} is not a model list (got {content_type.split(';')[0]}, "
                "not JSON): the URL should be the API base, /v1 included"
            ) from None
    if status == 404 and allow_404:
        return JsonResponse(status, body)
    if status >= 400:
        said = provider_message(body)
        said = f": {mask(said, headers)}" if said else ""
        if status in (401, 403) or (status == 400 and "API key" in said):
            raise ListingFailed(
                f"HTTP {status} from the provider at {url}{said} (the endpoint's API key is "
                "missing, invalid or lacks permission)"
            )
        if status == 404:
            raise ListingFailed(
                f"HTTP 404 from {url}{said} (the URL should be the API base, /v1 included)"
            )
        raise ListingFailed(f"HTTP {status} from the provider at {url}{said}")
    return JsonResponse(status, body)


async def _read_bounded(response: aiohttp.ClientResponse, url: str, limit: int) -> bytes:
    """The body of ``response``, read chunk by chunk; raises :class:`ListingFailed` once it
    passes ``limit`` bytes (a declared length is checked before a byte is read)."""
    if response.content_length is not None and response.content_length > limit:
        raise _listing_too_large(url, limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise _listing_too_large(url, limit)
        parts.append(chunk)
    return b"".join(parts)


def _listing_too_large(url: str, limit: int) -> ListingFailed:
    return ListingFailed(
        f"the model list at {url} is larger than {limit} bytes (setting max_listing_bytes)"
    )


def not_a_list(url: str, why: str) -> ListingFailed:
    return ListingFailed(f"response from {url} is not a model list ({why})")


class Pages:
    """Guards a paged listing: a cursor seen twice, or more than ``limit`` pages, is an
    error rather than a silently truncated or looping list."""

    def __init__(self, url: str, limit: int = 100):
        self._url = url
        self._limit = limit
        self._seen: set[str] = set()

    def next(self, cursor: str) -> str:
        """Accept ``cursor`` for the next page; raises :class:`ListingFailed`."""
        if cursor in self._seen:
            raise ListingFailed(
                f"pagination of {self._url} did not end (cursor {cursor!r} repeated)"
            )
        if len(self._seen) >= self._limit:
            raise ListingFailed(f"pagination of {self._url} did not end after {self._limit} pages")
        self._seen.add(cursor)
        return cursor


def as_int(value: Any) -> int | None:
    """``value`` if it is a positive integer, else None (providers send 0 for unknown)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def as_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def from_epoch(value: Any) -> datetime | None:
    """A Unix time in seconds (OpenAI's ``created``) as a UTC datetime; None for 0 or junk."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value, UTC)
    return None


EPOCH = datetime(1970, 1, 2, tzinfo=UTC)


def from_rfc3339(value: Any) -> datetime | None:
    """An RFC 3339 time (Anthropic's ``created_at``) as a UTC datetime, or None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    # Anthropic sends the epoch when a release date is unknown.
    return parsed if parsed >= EPOCH else None
