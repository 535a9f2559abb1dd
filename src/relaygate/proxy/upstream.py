"""One attempt at a request upstream: the request to a target's endpoint, the answer
streamed back to the client chunk by chunk, the endpoint's health learnt from it, and
the failures that let the proxy fail over to its next target."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import NoReturn
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from relaygate.errors import RelaygateError, UpstreamFailed, UpstreamTimeout
from relaygate.health import Health, parse_retry_after
from relaygate.metrics import Metrics
from relaygate.proxy.accounting import Exchange
from relaygate.proxy.asgi import Scope, Send
from relaygate.proxy.tokens import BodyTokens, StreamTokens
from relaygate.ratelimit import add_rate_limit_headers
from relaygate.snapshot import Target, TargetSurface

log = logging.getLogger(__name__)

# Hop-by-hop headers (RFC 9110 §7.6.1) and the ones relaygate sets itself.
# Request headers that reach the endpoint, by allow-list: what clients send to shape an
# answer, never what would choose another organisation, project or identity of the
# operator's key (OpenAI-Organization, OpenAI-Project, X-Forwarded-*, method overrides).
# The body's type is always JSON (relaygate parsed it as such), the auth header the
# endpoint's, x-request-id and x-relaygate-via relaygate's own.
_PASS_REQUEST = frozenset(
    {
        b"accept",
        b"user-agent",
        b"anthropic-version",
        b"idempotency-key",
        b"traceparent",
        b"tracestate",
    }
)
_PASS_REQUEST_PREFIXES = (b"x-stainless-",)  # the SDKs' own (language, retry count)
_ANTHROPIC_BETA = b"anthropic-beta"
# Anthropic betas that reach the account's resources (its files, code-execution
# containers, skills) rather than shape one answer: removed from anthropic-beta.
_RESOURCE_BETAS = ("files-api", "code-execution", "skills", "message-batches")
# Query parameters forwarded: Azure's api-version, the Anthropic SDK's beta=true.
_PASS_QUERY = frozenset({"api-version", "beta"})
# Response headers a client may see (by allow-list: an upstream must not set a
# client's HSTS, CORS, cookies or redirects through relaygate): the content headers,
# retry and rate-limit headers, and the providers' request ids and timings that the
# OpenAI and Anthropic SDKs and their users read. x-request-id and x-relaygate-* are
# relaygate's own, set once.
_PASS_RESPONSE = frozenset(
    {
        b"content-type",
        b"content-length",
        b"content-encoding",
        b"content-language",
        b"content-disposition",
        b"cache-control",
        b"retry-after",
        b"retry-after-ms",
        b"x-should-retry",
        b"request-id",  # Anthropic's request id
        b"openai-processing-ms",
        b"openai-version",
        b"anthropic-version",
    }
)
_PASS_RESPONSE_PREFIXES = (b"x-ratelimit-", b"anthropic-ratelimit-", b"ratelimit")
_NOSNIFF = (b"x-content-type-options", b"nosniff")
ENDPOINT_HEADER = b"x-relaygate-endpoint"
REQUEST_ID_HEADER = b"x-request-id"
MODEL_HEADER = b"x-relaygate-model"
"""Sent when a fallback model answered: the public name of the model that did."""


class Retry(Exception):
    """Raised by :meth:`Upstream.attempt` when a target failed before answering and the
    next one should be tried; ``error`` is what to answer if none is left."""

    def __init__(self, error: RelaygateError):
        super().__init__(error.message)
        self.error = error


class Upstream:
    """Sends requests to the endpoints over the shared ``http`` client, counting the
    failures in ``metrics`` and telling ``health`` how each endpoint did."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        metrics: Metrics,
        health: Health,
        via: bytes = b"",
        max_event_bytes: int = 1024 * 1024,
    ) -> None:
        self._max_event = max_event_bytes
        self._http = http
        self._metrics = metrics
        self._health = health
        self._via = via.decode("latin-1")
        self._client_timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _client_timeout(self, connect: float) -> aiohttp.ClientTimeout:
        timeout = self._client_timeouts.get(connect)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=None)
            self._client_timeouts[connect] = timeout
        return timeout

    async def attempt(
        self,
        scope: Scope,
        send: Send,
        target: Target,
        body: bytes,
        state: Exchange,
        *,
        final: bool,
    ) -> int:
        """Send the request of ``scope`` with ``body`` to ``target`` and stream its answer
        to the client through ``send``, recording its progress in ``state``; return the
        status the client got (502 or 504 when the answer broke off after it started).

        Raises :class:`Retry` for a failure before the response started, unless
        ``final``: the last target raises the error itself (:class:`UpstreamFailed` or
        :class:`UpstreamTimeout`), and passes 5xx and 429 answers through.

        Timeouts (``target.timeouts``): ``first_byte`` runs to the response headers,
        ``idle`` between two chunks, ``total`` over the whole request; ``connect`` is the
        HTTP client's. A failure once the response has started ends it: an event stream
        gets an error event and a clean end, any other body is cut off (the connection
        closes, so the client cannot mistake it for a whole answer)."""
        path = scope["path"][3:]
        url = URL(target.base_url + _wire_path(scope), encoded=True)
        timeouts = target.timeouts
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeouts.total
        idle = timeouts.idle
        health = self._health
        endpoint_id = target.health_key
        user = state.principal.user_id if state.principal is not None else None
        response: aiohttp.ClientResponse | None = None
        chunk = b""
        try:
            async with asyncio.timeout_at(
                min(loop.time() + timeouts.first_byte, deadline)
            ) as timer:
                state.sent_at = time.perf_counter()
                async with self._http.request(
                    scope["method"],
                    url,
                    data=body,
                    headers=self._upstream_headers(scope["headers"], target.surface(path), state),
                    timeout=self._client_timeout(timeouts.connect),
                    allow_redirects=False,
                ) as response:
                    status = response.status
                    self._judge(status, response, target, user, final=final)
                    headers_at = time.perf_counter()
                    stream_reader: StreamTokens | None = None
                    body_reader: BodyTokens | None = None
                    if status < 300:
                        content_type = response.headers.get("content-type", "")
                        if content_type.startswith("text/event-stream"):
                            stream_reader = StreamTokens(state.strip_usage, self._max_event)
                            state.tokens = stream_reader.tokens
                        elif "json" in content_type:
                            body_reader = BodyTokens()
                            state.tokens = body_reader.tokens
                    out_headers = response_headers(response.raw_headers)
                    # What an upstream says is never a page of relaygate's origin.
                    out_headers.append(_NOSNIFF)
                    if stream_reader is not None and state.strip_usage:
                        out_headers = [h for h in out_headers if h[0] != b"content-length"]
                    out_headers.append((ENDPOINT_HEADER, target.endpoint_name.encode()))
                    out_headers.append((REQUEST_ID_HEADER, state.request_id.encode()))
                    out_headers.append(
                        (
                            b"server-timing",
                            (
                                f"relaygate;dur={(state.sent_at - state.arrived) * 1000:.2f}, "
                                f"upstream;dur={(headers_at - state.sent_at) * 1000:.2f}"
                            ).encode(),
                        )
                    )
                    if state.served_model is not None:
                        out_headers.append((MODEL_HEADER, state.served_model.encode()))
                    add_rate_limit_headers(scope, out_headers)
                    await send(
                        {"type": "http.response.start", "status": status, "headers": out_headers}
                    )
                    state.started = True
                    state.upstream_status = status
                    # The idle timer is moved once per `slack` seconds of flowing chunks,
                    # not on every chunk; it fires after `idle` to `idle + slack` s of
                    # silence (or at the deadline).
                    slack = min(1.0, idle / 20)
                    due = min(loop.time() + idle + slack, deadline)
                    timer.reschedule(due)
                    # Every chunk goes out as soon as it is read. A body whose length is
                    # known ends with its last chunk: one send fewer, which for a
                    # one-chunk JSON answer is a third of them.
                    left = response.content_length if stream_reader is None else None
                    ended = False
                    async for chunk in response.content.iter_any():
                        if stream_reader is not None:
                            chunk = stream_reader.feed(chunk)
                        elif body_reader is not None:
                            body_reader.feed(chunk)
                        if chunk:
                            if not state.first_byte_at:
                                state.first_byte_at = time.perf_counter()
                            if left is not None:
                                left -= len(chunk)
                                ended = left <= 0
                            if ended:
                                if body_reader is not None:
                                    body_reader.finish()
                                state.finished = True
                            await send(
                                {
                                    "type": "http.response.body",
                                    "body": chunk,
                                    "more_body": not ended,
                                }
                            )
                            if ended:
                                break
                        if loop.time() + idle > due and due < deadline:
                            due = min(loop.time() + idle + slack, deadline)
                            timer.reschedule(due)
                    if not ended:
                        rest = b""
                        if stream_reader is not None:
                            rest = stream_reader.finish()  # what the stream held back, if any
                            if stream_reader.gave_up:
                                self._metrics.usage_unread.inc()
                                log.warning(
                                    "usage of a stream from endpoint %r not counted: an event "
                                    "was longer than max_event_bytes (%d)",
                                    target.endpoint_name,
                                    self._max_event,
                                )
                        elif body_reader is not None:
                            body_reader.finish()
                        state.finished = True
                        await send({"type": "http.response.body", "body": rest})
                    return status
        except aiohttp.ClientConnectorError as exc:
            self._metrics.upstream_errors.labels("connect").inc()
            cause = (
                "connection refused"
                if isinstance(exc.os_error, ConnectionRefusedError)
                else "cannot connect"
            )
            health.failed(endpoint_id, cause)
            self._fail(
                UpstreamFailed(f"endpoint {target.endpoint_name!r} is unreachable ({cause})"),
                final=final,
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            if isinstance(exc, TimeoutError):
                if _is_connect_timeout(exc):
                    kind = "connect_timeout"
                    reason = f"no connection within {timeouts.connect:g} s"
                elif loop.time() >= deadline - 0.001:
                    kind = "total_timeout"
                    reason = f"not finished within the total timeout of {timeouts.total:g} s"
                elif state.started:
                    kind = "idle_timeout"
                    reason = f"silent for {idle:g} s or more (idle timeout)"
                else:
                    kind = "first_byte_timeout"
                    reason = f"no response within {timeouts.first_byte:g} s"
            else:
                kind = "broken"
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self._metrics.upstream_errors.labels(kind).inc()
            health.failed(endpoint_id, reason)
            if state.started:
                log.warning("response from endpoint %r broke off: %s", target.endpoint_name, reason)
                state.finished = True
                await self._end_broken(scope, send, response, chunk, target, reason)
                return 504 if kind.endswith("timeout") else 502
            error_type = UpstreamTimeout if kind.endswith("timeout") else UpstreamFailed
            self._fail(
                error_type(f"endpoint {target.endpoint_name!r} failed: {reason}"), final=final
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _judge(
        self,
        status: int,
        response: aiohttp.ClientResponse,
        target: Target,
        user: int | None,
        *,
        final: bool,
    ) -> None:
        """Learn ``target``'s health from the ``status`` it answered (for ``user``), and
        raise what a failed answer calls for (see :meth:`attempt`): a status outside
        200 to 599 or a redirect (never followed: it would carry the provider key and the
        prompt wherever it points) fails over or is a 502; a refused provider key is a
        502, never an authentication error the client's SDK would blame its own key for;
        a 5xx or 429 fails over, or passes through from the last target."""
        health, key = self._health, target.health_key
        if 200 <= status < 300:
            health.succeeded(key, user)
            return
        name = target.endpoint_name
        if not 200 <= status < 600 or 300 <= status < 400:
            redirect = 300 <= status < 400
            self._metrics.upstream_errors.labels("redirect" if redirect else "bad_status").inc()
            health.failed(key, f"HTTP {status}: {'redirected' if redirect else 'not final'}")
            message = (
                f"endpoint {name!r} redirected the request (HTTP {status}); relaygate does "
                "not follow redirects, so an admin must correct the endpoint's URL"
                if redirect
                else f"endpoint {name!r} answered with HTTP status {status}, which is not a "
                "valid final status"
            )
            self._fail(UpstreamFailed(message), final=final)
        if status in (401, 403):
            self._metrics.upstream_errors.labels("auth").inc()
            if target.own_key:
                message = (
                    f"endpoint {name!r} rejected your own provider key (HTTP {status}); "
                    f"update it with PUT /admin/api/v1/me/provider-keys/{target.endpoint_id}"
                )
            else:
                message = (
                    f"endpoint {name!r} rejected its provider API key (HTTP {status}); an "
                    "admin must update the endpoint's key"
                )
                health.failed(key, f"HTTP {status}: provider key refused")
            self._fail(UpstreamFailed(message), final=final)
        if status >= 500 or status == 429:
            self._metrics.upstream_errors.labels(f"http_{status}").inc()
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if status == 429 or target.own_key or user is None:
                # The key's own rate limit, or the user's own key: all its users.
                health.failed(key, f"HTTP {status}", retry_after)
            else:
                health.failed_for(key, user, f"HTTP {status}", retry_after)
            if not final:
                raise Retry(UpstreamFailed(f"endpoint {name!r} answered HTTP {status}"))
            return
        health.succeeded(key, user)

    def _upstream_headers(
        self, headers: list[tuple[bytes, bytes]], surface: TargetSurface, state: Exchange
    ) -> list[tuple[str, str]]:
        out = [("content-type", "application/json"), ("x-request-id", state.request_id)]
        sent: set[bytes] = set()
        for name, value in headers:
            # A client's header named like the endpoint's auth header stays behind.
            if name in surface.header_names:
                continue
            if name in _PASS_REQUEST or name.startswith(_PASS_REQUEST_PREFIXES):
                out.append((name.decode("latin-1"), value.decode("latin-1")))
                sent.add(name)
            elif name == _ANTHROPIC_BETA:
                betas = _betas(value)
                if betas:
                    out.append(("anthropic-beta", betas))
                    sent.add(name)
        if self._via:
            # The marks of the relaygates the request passed, this one's last.
            out.append(("x-relaygate-via", _via_chain(headers, self._via)))
        for name, value in surface.defaults:
            if name not in sent:
                out.append((name.decode("latin-1"), value.decode("latin-1")))
        out.extend(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in surface.headers
        )
        return out

    @staticmethod
    async def _end_broken(
        scope: Scope,
        send: Send,
        response: aiohttp.ClientResponse | None,
        last_chunk: bytes,
        target: Target,
        reason: str,
    ) -> None:
        """End a response that broke off after it started. An event stream that stopped
        between two events gets an error event (in the shape the client's SDK raises on:
        OpenAI's ``{"error": …}`` data, or Anthropic's ``event: error``) and a clean end;
        anything else is left unfinished so the server closes the connection."""
        content_type = response.headers.get("content-type", "") if response is not None else ""
        if not content_type.startswith("text/event-stream"):
            return  # uvicorn closes a connection whose response did not finish
        message = f"the response from endpoint {target.endpoint_name!r} broke off: {reason}"
        if last_chunk and not last_chunk.endswith((b"\n\n", b"\r\n\r\n")):
            event = b""  # mid-event: an error event would be garbled, so only end
        elif scope["path"].startswith("/v1/messages"):
            error = {"type": "error", "error": {"type": "api_error", "message": message}}
            event = b"event: error\ndata: " + orjson.dumps(error) + b"\n\n"
        else:
            error = {
                "error": {"message": message, "type": "upstream_error", "code": "stream_broken"}
            }
            event = b"data: " + orjson.dumps(error) + b"\n\n"
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": event})

    @staticmethod
    def _fail(error: RelaygateError, *, final: bool) -> NoReturn:
        """Raise ``error`` for the client (last target), or :class:`Retry` to fail over."""
        if final:
            raise error
        raise Retry(error)


def _wire_path(scope: Scope) -> str:
    """The request's path below ``/v1``, byte for byte as the client sent it (a ``%3F``
    stays an escaped ``?``, never becomes a query upstream), and the query parameters
    of :data:`_PASS_QUERY`, as sent."""
    raw: bytes = scope.get("raw_path") or b""
    if raw.startswith(b"/v1/"):
        wire = raw[3:].decode("latin-1")
    else:  # no raw path, or an escaped /v1 prefix: the checked path, escaped again
        wire = quote(scope["path"][3:], safe="/:@!$&'()*+,;=-._~")
    query: bytes = scope.get("query_string") or b""
    if not query:
        return wire
    kept = [
        pair for pair in query.decode("latin-1").split("&") if pair.partition("=")[0] in _PASS_QUERY
    ]
    return wire + "?" + "&".join(kept) if kept else wire


def _betas(value: bytes) -> str:
    """An ``anthropic-beta`` value less the betas that reach the account's resources."""
    return ",".join(
        beta
        for beta in (part.strip() for part in value.decode("latin-1").split(","))
        if beta and not beta.startswith(_RESOURCE_BETAS)
    )


def response_headers(raw: tuple[tuple[bytes, bytes], ...]) -> list[tuple[bytes, bytes]]:
    """The headers of an upstream answer that reach the client, names lower-cased: those
    of the allow-list, less any the upstream's own ``Connection`` header names
    (hop-by-hop, RFC 9110 §7.6.1)."""
    out: list[tuple[bytes, bytes]] = []
    hop: set[bytes] | None = None
    for name, value in raw:
        name = name.lower()
        if name in _PASS_RESPONSE or name.startswith(_PASS_RESPONSE_PREFIXES):
            out.append((name, value))
        elif name == b"connection":
            hop = hop or set()
            hop.update(token.strip().lower() for token in value.split(b","))
    if hop:
        out = [(name, value) for name, value in out if name not in hop]
    return out


def _via_chain(headers: list[tuple[bytes, bytes]], via: str) -> str:
    before = [value.decode("latin-1") for name, value in headers if name == b"x-relaygate-via"]
    return ",".join([*before, via])


def _is_connect_timeout(exc: TimeoutError) -> bool:
    """Whether ``exc`` is the HTTP client's connect timeout (not one of relaygate's)."""
    return isinstance(exc, aiohttp.ConnectionTimeoutError)
