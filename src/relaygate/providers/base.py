"""The interface every provider adapter implements, and the shared listing call.

A provider knows how to authenticate to an endpoint and how to list its models.
Listing failures are raised as :class:`ListingFailed` with a sentence an operator
can act on (name not resolved, connection refused, timed out, HTTP 401, …).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson


@dataclass(frozen=True, slots=True)
class DiscoveredModel:
    """One model as a provider's listing describes it."""

    id: str
    owned_by: str | None = None


class ListingFailed(Exception):
    """Listing an endpoint's models failed; ``str()`` is the operator-facing reason."""


class Provider(Protocol):
    """What relaygate needs from each kind of endpoint."""

    type: str

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        """The headers that carry ``api_key`` to this provider (none without a key)."""
        ...

    async def list_models(
        self, http: aiohttp.ClientSession, url: str, api_key: str | None, timeout: float
    ) -> list[DiscoveredModel]:
        """List the endpoint's models; raises :class:`ListingFailed`."""
        ...


def _connection_reason(exc: aiohttp.ClientConnectorError) -> str:
    cause = exc.os_error
    if isinstance(exc, aiohttp.ClientConnectorDNSError) or isinstance(cause, socket.gaierror):
        return f"host name {exc.host!r} could not be resolved (check the URL)"
    if isinstance(cause, ConnectionRefusedError):
        return f"connection refused by {exc.host}:{exc.port} (is the server running?)"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate of {exc.host} was not accepted"
    return f"could not connect to {exc.host}:{exc.port} ({cause.strerror or cause})"


async def get_json(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], timeout: float
) -> Any:
    """GET ``url`` and return its decoded JSON body.

    Raises :class:`ListingFailed` naming the cause: DNS, refused connection,
    timeout after ``timeout`` seconds, a non-2xx status, or a body that is not JSON.
    """
    try:
        async with http.get(
            url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            body = await response.read()
            status = response.status
            content_type = response.headers.get("content-type", "unknown")
    except aiohttp.ClientConnectorError as exc:
        raise ListingFailed(_connection_reason(exc)) from None
    except TimeoutError:
        raise ListingFailed(f"timed out after {timeout:g} s waiting for {url}") from None
    except (aiohttp.InvalidURL, ValueError):
        raise ListingFailed(f"{url} is not a valid URL") from None
    except (aiohttp.ClientError, asyncio.CancelledError) as exc:
        if isinstance(exc, asyncio.CancelledError):
            raise
        raise ListingFailed(f"request to {url} failed: {type(exc).__name__}") from None
    if status in (401, 403):
        raise ListingFailed(
            f"HTTP {status} from the provider at {url}: the endpoint's API key is missing, "
            "invalid or lacks permission"
        )
    if status == 404:
        raise ListingFailed(f"HTTP 404 from {url}: the URL should be the API base, /v1 included")
    if status >= 400:
        raise ListingFailed(f"HTTP {status} from the provider at {url}")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ListingFailed(
            f"response from {url} is not a model list (got {content_type.split(';')[0]}, "
            "not JSON): the URL should be the API base, /v1 included"
        ) from None
