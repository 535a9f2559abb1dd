"""Calls to an OpenID Connect provider: discovery, the token endpoint and its key set.

Each call has the provider's ``timeout``, reads at most :data:`MAX_RESPONSE_BYTES` and
follows no redirect (a provider answering 3xx has failed: a redirect could lead the
call to another host). References: OpenID Connect Discovery 1.0 §4
(https://openid.net/specs/openid-connect-discovery-1_0.html) and RFC 6749 §4.1.3.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from relaygate.errors import UpstreamFailed
from relaygate.sign_in_settings import OidcProvider

MAX_RESPONSE_BYTES = 256 * 1024
"""The largest discovery document, token response or key set relaygate reads."""
DISCOVERY_SECONDS = 300.0
"""How long a provider's discovery document is kept once read."""
FAILURE_SECONDS = 10.0
"""How long a failed discovery is answered from memory before the provider is asked
again."""


@dataclass(frozen=True, slots=True)
class Metadata:
    """The parts of a provider's discovery document relaygate uses."""

    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None


async def _json(
    http: aiohttp.ClientSession,
    provider: OidcProvider,
    url: str,
    form: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON object at ``url`` (a POST of ``form`` when given); raises
    :class:`UpstreamFailed` naming the provider on a timeout, redirect, error status,
    oversized or non-JSON answer. The answer's text is never shown (it may hold a code)."""
    what = f"the identity provider {provider.name!r}"
    try:
        async with http.request(
            "POST" if form is not None else "GET",
            url,
            data=form,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=provider.timeout),
            headers={"accept": "application/json"},
        ) as response:
            if response.status != 200:
                raise UpstreamFailed(f"{what} answered {response.status} at {url}")
            body = bytearray()
            too_long = (response.content_length or 0) > MAX_RESPONSE_BYTES
            if not too_long:
                async for chunk in response.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        too_long = True
                        break
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise UpstreamFailed(f"{what} could not be reached ({type(exc).__name__})") from None
    if too_long:
        raise UpstreamFailed(f"{what} answered more than {MAX_RESPONSE_BYTES} bytes at {url}")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UpstreamFailed(f"{what} answered something other than JSON at {url}") from None
    if not isinstance(value, dict):
        raise UpstreamFailed(f"{what} answered something other than a JSON object at {url}")
    return value


def _url(document: dict[str, Any], name: str, provider: OidcProvider) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise UpstreamFailed(f"the identity provider {provider.name!r} gives no {name}")
    return value


async def discover(http: aiohttp.ClientSession, provider: OidcProvider) -> Metadata:
    """The provider's endpoints, from ``{issuer}/.well-known/openid-configuration``,
    whose ``issuer`` must equal the configured one (Discovery §4.3)."""
    document = await _json(http, provider, provider.issuer + "/.well-known/openid-configuration")
    if str(document.get("issuer", "")).rstrip("/") != provider.issuer:
        raise UpstreamFailed(
            f"the identity provider {provider.name!r} names another issuer in its discovery"
        )
    end = document.get("end_session_endpoint")
    return Metadata(
        _url(document, "authorization_endpoint", provider),
        _url(document, "token_endpoint", provider),
        _url(document, "jwks_uri", provider),
        end if isinstance(end, str) and end.startswith(("https://", "http://")) else None,
    )


async def key_set(
    http: aiohttp.ClientSession, provider: OidcProvider, metadata: Metadata
) -> dict[str, Any]:
    """The provider's JSON Web Key Set (RFC 7517 §5)."""
    return await _json(http, provider, metadata.jwks_uri)


async def exchange_code(
    http: aiohttp.ClientSession,
    provider: OidcProvider,
    metadata: Metadata,
    *,
    code: str,
    verifier: str,
    redirect_uri: str,
) -> str:
    """The ID token the token endpoint gives for ``code`` and the PKCE ``verifier``
    (RFC 6749 §4.1.3, RFC 7636 §4.5), with ``client_secret_post`` when the client has a
    secret."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": provider.client_id,
        "code_verifier": verifier,
    }
    if provider.client_secret:
        form["client_secret"] = provider.client_secret
    answer = await _json(http, provider, metadata.token_endpoint, form)
    token = answer.get("id_token")
    if not isinstance(token, str) or len(token) > MAX_RESPONSE_BYTES:
        raise UpstreamFailed(f"the identity provider {provider.name!r} sent no ID token")
    return token


class DiscoveryCache:
    """Each provider's discovery (:func:`discover`), kept :data:`DISCOVERY_SECONDS`
    after it was read: anyone may start a sign-in, and starting one must not cost the
    provider a call each time. Concurrent misses for one provider share one call, its
    answer or its failure; a failure is kept :data:`FAILURE_SECONDS`, so a provider that
    is down or slow costs one timeout at a time, not one per waiting sign-in. ``clock``
    gives seconds (default :func:`time.monotonic`)."""

    def __init__(
        self, http: aiohttp.ClientSession, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._http = http
        self._clock = clock
        self._kept: dict[tuple[str, str], tuple[float, Metadata | UpstreamFailed]] = {}
        self._asking: dict[tuple[str, str], asyncio.Future[Metadata]] = {}

    async def get(self, provider: OidcProvider) -> Metadata:
        """``provider``'s endpoints, read again when older than the period; raises
        :class:`UpstreamFailed` as :func:`discover` does (also while a failure is kept)."""
        key = (provider.name, provider.issuer)
        kept = self._kept.get(key)
        if kept is not None:
            at, answer = kept
            period = FAILURE_SECONDS if isinstance(answer, UpstreamFailed) else DISCOVERY_SECONDS
            if self._clock() - at < period:
                if isinstance(answer, UpstreamFailed):
                    raise answer
                return answer
        asking = self._asking.get(key)
        if asking is None:
            asking = self._asking[key] = asyncio.ensure_future(self._ask(key, provider))
            # Its failure is read here even when every waiter was cancelled meanwhile.
            asking.add_done_callback(lambda done: done.cancelled() or done.exception())
        # Shielded: one waiter cancelled (its client went away) cancels no one else's.
        return await asyncio.shield(asking)

    async def _ask(self, key: tuple[str, str], provider: OidcProvider) -> Metadata:
        try:
            metadata = await discover(self._http, provider)
        except UpstreamFailed as exc:
            self._kept[key] = (self._clock(), exc)
            raise
        else:
            self._kept[key] = (self._clock(), metadata)
            return metadata
        finally:
            del self._asking[key]
