"""The proxy as a raw ASGI app: the hot path, kept lean.

Per request: authenticate from the snapshot, read and parse the body once, look
up the model, rewrite ``model`` to the upstream id, forward over the shared
aiohttp client and stream the answer back chunk by chunk. No database access.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, NoReturn

import aiohttp
import orjson

from relaygate.auth import authenticate, key_from_headers
from relaygate.errors import (
    ModelNotFound,
    ModelUnavailable,
    Overloaded,
    PermissionDenied,
    RelaygateError,
    UpstreamFailed,
    UpstreamTimeout,
    error_body,
    render,
)
from relaygate.health import Health, parse_retry_after
from relaygate.logs import REQUEST_ID, request_id
from relaygate.metrics import Metrics
from relaygate.proxy.body import check_payload, parse_model, read_body
from relaygate.proxy.checks import check_request
from relaygate.proxy.tokens import BodyTokens, StreamTokens, Tokens
from relaygate.ratelimit import ADMISSION_SCOPE_KEY, RateLimiter, add_rate_limit_headers
from relaygate.services.api_keys import KeyActivity
from relaygate.snapshot import Principal, Route, SnapshotStore, Target, TargetSurface, View
from relaygate.usage import UsageEntry, UsageQueue, cost_of, now

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Hop-by-hop headers (RFC 9110 §7.6.1) and the ones relaygate sets itself.
_DROP_REQUEST = frozenset(
    {
        b"host",
        b"content-length",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"authorization",
        b"x-api-key",
        b"cookie",
        b"accept-encoding",
        b"expect",
        b"x-request-id",  # replaced by relaygate's (the client's own, when well-formed)
    }
)
_DROP_RESPONSE = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"server",
        b"date",
        b"set-cookie",
    }
)
_JSON_HEADERS = [(b"content-type", b"application/json")]
ENDPOINT_HEADER = b"x-relaygate-endpoint"
REQUEST_ID_HEADER = b"x-request-id"
_USAGE_STREAM_PATHS = ("/chat/completions", "/completions")
MODEL_HEADER = b"x-relaygate-model"
"""Sent when a fallback model answered: the public name of the model that did."""


async def _send_bytes(
    send: Send, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    out = [*_JSON_HEADERS, *headers] if headers else _JSON_HEADERS
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send, exc: RelaygateError, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    """Answer with ``exc`` as an OpenAI-shaped error, with the headers it calls for
    (``Retry-After``, ``Allow``) and ``extra`` ones."""
    status, body = render(exc)
    await _send_bytes(send, status, body, exc.headers + extra if extra else exc.headers)


class Proxy:
    """ASGI app for every ``/v1/...`` request but the registry routes.

    ``max_concurrent`` bounds the requests served at once (more get 503 with
    ``Retry-After``); ``health`` learns from every forwarded request which endpoints to
    skip for a while.
    """

    def __init__(
        self,
        snapshots: SnapshotStore,
        http: aiohttp.ClientSession,
        activity: KeyActivity,
        metrics: Metrics,
        health: Health,
        usage: UsageQueue,
        *,
        max_body_bytes: int,
        max_concurrent: int,
        limiter: RateLimiter | None = None,
    ):
        self._snapshots = snapshots
        self._http = http
        self._activity = activity
        self._metrics = metrics
        self._health = health
        self._usage = usage
        self._max_body = max_body_bytes
        self._max_concurrent = max_concurrent
        self._in_flight = 0
        self._client_timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._limiter = limiter or RateLimiter()

    @property
    def in_flight(self) -> int:
        """Requests being served now."""
        return self._in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrived = time.perf_counter()
        exchange = _Exchange(arrived, request_id(scope["headers"]))
        reply_headers = ((REQUEST_ID_HEADER, exchange.request_id.encode()),)
        if self._in_flight >= self._max_concurrent:
            self._metrics.proxy_requests.labels("5xx").inc()
            await send_error(
                send,
                Overloaded(
                    f"relaygate is serving its limit of {self._max_concurrent} requests at "
                    "once; retry shortly"
                ),
                reply_headers,
            )
            return
        self._in_flight += 1
        self._metrics.in_flight.inc()
        token = REQUEST_ID.set(exchange.request_id)
        status = 500
        try:
            status = await self._handle(scope, receive, send, exchange)
        except RelaygateError as exc:
            status = exc.status
            await send_error(send, exc, reply_headers)
        except Exception:
            log.exception("unexpected error while proxying %s", scope["path"])
            status = 500
            # Fails harmlessly when the response had already started.
            with contextlib.suppress(Exception):
                await _send_bytes(
                    send,
                    500,
                    error_body("internal error; see the server log", "server_error", None),
                    reply_headers,
                )
        finally:
            self._in_flight -= 1
            self._metrics.in_flight.dec()
            self._metrics.proxy_requests.labels(f"{status // 100}xx").inc()
            if exchange.principal is not None and exchange.model is not None:
                try:
                    self._account(scope, exchange, status)
                except Exception:  # the answer is out; never let accounting break the server
                    log.exception("could not account for a request")
                await self._count_tokens(exchange)
            REQUEST_ID.reset(token)

    async def _count_tokens(self, exchange: _Exchange) -> None:
        """Count the answer's prompt and completion tokens against the caller's tokens
        per minute (after the answer went out; only for callers with limits)."""
        principal, tokens = exchange.principal, exchange.tokens
        if principal is None or principal.limits is None or tokens is None:
            return
        used = (tokens.prompt or 0) + (tokens.completion or 0)
        if used:
            try:
                await self._limiter.add_tokens(principal, used)
            except Exception:
                log.exception("could not count tokens against the rate limits")

    def _account(self, scope: Scope, exchange: _Exchange, status: int) -> None:
        """Queue the request's usage record and update the metrics (no I/O)."""
        ended = time.perf_counter()
        principal, target, tokens = exchange.principal, exchange.target, exchange.tokens
        assert principal is not None and exchange.model is not None
        model = exchange.served_model or exchange.model
        endpoint = target.endpoint_name if target is not None else ""
        latency = ended - exchange.arrived
        ttfb = exchange.first_byte_at - exchange.arrived if exchange.first_byte_at else None
        prompt = completion = total = None
        if tokens is not None:
            prompt, completion, total = tokens.prompt, tokens.completion, tokens.total
        metrics = self._metrics
        label = model if exchange.routed else ""
        metrics.requests.labels(label, endpoint, str(status)).inc()
        if target is not None:
            metrics.duration.labels(label, endpoint).observe(latency)
            if exchange.stream and ttfb is not None:
                metrics.time_to_first_token.labels(label, endpoint).observe(ttfb)
            for kind, count in (("input", prompt), ("output", completion)):
                if count:
                    metrics.token_usage.labels(label, endpoint, kind).observe(count)
                    metrics.tokens.labels(label, endpoint, kind).inc(count)
        self._usage.put(
            UsageEntry(
                created_at=now(),
                request_id=exchange.request_id,
                user_id=principal.user_id,
                key_id=principal.key_id,
                endpoint_id=target.endpoint_id if target is not None else None,
                model=model[:500],
                upstream_model=target.upstream_id if target is not None else None,
                path=scope["path"][:200],
                status=status,
                stream=exchange.stream,
                latency_ms=latency * 1000,
                ttfb_ms=ttfb * 1000 if ttfb is not None else None,
                prompt_tokens=prompt,
                completion_tokens=completion,
                total_tokens=total,
                cost=cost_of(prompt, completion, target.input_price, target.output_price)
                if target is not None
                else None,
            )
        )

    @staticmethod
    def _unavailable(known: frozenset[str], name: str) -> RelaygateError:
        """403 for a model that exists but the caller may not use, else 404."""
        if name in known:
            return PermissionDenied(
                f"you do not have access to the model {name!r}; ask an admin to grant it",
                param="model",
                code="model_not_allowed",
            )
        return ModelNotFound(f"the model {name!r} does not exist", param="model")

    async def _handle(self, scope: Scope, receive: Receive, send: Send, exchange: _Exchange) -> int:
        snapshot = self._snapshots.current
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        path: str = scope["path"]
        method: str = scope["method"]
        length = check_request(method, path, headers)
        principal = authenticate(snapshot, key_from_headers(headers))
        if principal.limits is not None:  # rate limits: raises RateLimited (429)
            scope[ADMISSION_SCOPE_KEY] = await self._limiter.admit(principal)
        self._activity.touch(principal.key_id)
        exchange.principal = principal
        view = principal.view
        if method in ("GET", "HEAD") and path == "/v1/models":
            await _send_bytes(send, 200, view.model_list_body)
            return 200
        if method in ("GET", "HEAD") and path.startswith("/v1/models/"):
            name = path[len("/v1/models/") :]
            entry = view.model_bodies.get(name)
            if entry is None:
                if name in view.routes:
                    raise ModelUnavailable(f"the model {name!r} is offline", param="model")
                raise self._unavailable(snapshot.known_names, name)
            await _send_bytes(send, 200, entry)
            return 200

        body = await read_body(receive, length, self._max_body)
        payload, model = parse_model(body)
        exchange.model = model
        exchange.stream = payload.get("stream") is True
        check_payload(path, payload)
        route = view.routes.get(model)
        if route is None:
            raise self._unavailable(snapshot.known_names, model)
        exchange.routed = True
        plan = self._plan(view, route)
        return await self._forward(scope, receive, send, plan, payload, model, body, exchange)

    def _plan(self, view: View, route: Route) -> list[tuple[Target, str]]:
        """The (target, public model name) pairs to try in order: the route's targets
        that are not cooling down, round-robin, then those of its fallback model when
        the caller's ``view`` has it (fallbacks are not chained). Raises the error to
        answer when there are none."""
        health = self._health
        plan = [(t, route.name) for t in health.partition(route.rotation(), _endpoint_of)]
        fallback = view.routes.get(route.fallback) if route.fallback else None
        if fallback is not None and fallback.targets:
            plan.extend(
                (t, fallback.name) for t in health.partition(fallback.rotation(), _endpoint_of)
            )
        if plan:
            return plan
        if route.targets:
            cooling = [t.endpoint_id for t in route.targets]
            wait = health.retry_in(cooling)
            raise Overloaded(
                f"every endpoint serving the model {route.name!r} is cooling down after "
                f"failures; retry in {math.ceil(wait)} s",
                retry_after=wait,
                param="model",
                code="endpoints_cooling_down",
            )
        if route.needs_user_key:
            endpoint_id, endpoint_name = route.needs_user_key[0]
            raise PermissionDenied(
                f"the model {route.name!r} is served by endpoint {endpoint_name!r}, which "
                "requires your own provider key: set it with PUT "
                f"/admin/api/v1/me/provider-keys/{endpoint_id}",
                param="model",
                code="provider_key_required",
            )
        raise ModelUnavailable(
            f"the model {route.name!r} is offline: its endpoint failed its last sync",
            param="model",
        )

    def _upstream_headers(
        self, headers: list[tuple[bytes, bytes]], surface: TargetSurface, state: _Exchange
    ) -> list[tuple[str, str]]:
        # A client's header named like the endpoint's auth header (e.g. api-key) stays behind.
        out = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in headers
            if name not in _DROP_REQUEST and name not in surface.header_names
        ]
        sent = {name for name, _ in headers}
        if b"content-type" not in sent:
            out.append(("content-type", "application/json"))
        out.append(("x-request-id", state.request_id))
        for name, value in surface.defaults:
            if name not in sent:
                out.append((name.decode("latin-1"), value.decode("latin-1")))
        out.extend(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in surface.headers
        )
        return out

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        plan: list[tuple[Target, str]],
        payload: dict[str, Any],
        model: str,
        body: bytes,
        state: _Exchange,
    ) -> int:
        """Try the ``plan`` in turn until a target answers; fail over on connection
        errors, timeouts before the first byte, 5xx, 429 and refused provider keys — never
        once a byte has reached the client. The last target's error response is passed
        through.

        A streamed chat or text completion that did not ask for usage is sent with
        ``stream_options.include_usage`` so its tokens can be counted, and the extra
        usage chunk is kept from the client."""
        task = asyncio.current_task()
        rewrite = False
        if state.stream and scope["path"].endswith(_USAGE_STREAM_PATHS):
            options = payload.get("stream_options")
            if not isinstance(options, dict) or options.get("include_usage") is not True:
                payload["stream_options"] = {
                    **(options if isinstance(options, dict) else {}),
                    "include_usage": True,
                }
                state.strip_usage = rewrite = True

        async def cancel_on_disconnect() -> None:
            # A client that goes away cancels the upstream request and frees its connection.
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    if not state.finished and task is not None:
                        task.cancel()
                    return

        watcher = asyncio.create_task(cancel_on_disconnect())
        try:
            failure: RelaygateError | None = None
            last = len(plan) - 1
            for index, (target, name) in enumerate(plan):
                if target.upstream_id != model or rewrite:
                    payload["model"] = target.upstream_id
                    sent = orjson.dumps(payload)
                else:
                    sent = body
                try:
                    state.target = target
                    state.served_model = name if name != model else None
                    return await self._attempt(
                        scope, send, target, sent, state, final=index == last
                    )
                except _Retry as retry:
                    failure = retry.error
                    log.warning(
                        "failing over from endpoint %r: %s",
                        target.endpoint_name,
                        retry.error.message,
                    )
            assert failure is not None
            raise failure
        except asyncio.CancelledError:
            if watcher.done() and not state.finished and task is not None:
                task.uncancel()
                log.info("client disconnected; cancelled the upstream request")
                return 499
            raise
        finally:
            state.finished = True
            watcher.cancel()

    def _client_timeout(self, connect: float) -> aiohttp.ClientTimeout:
        timeout = self._client_timeouts.get(connect)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=None)
            self._client_timeouts[connect] = timeout
        return timeout

    async def _attempt(
        self,
        scope: Scope,
        send: Send,
        target: Target,
        body: bytes,
        state: _Exchange,
        *,
        final: bool,
    ) -> int:
        """One upstream request. Raises :class:`_Retry` for a failure before the response
        started (the final target raises the error itself, or passes 5xx/429 through).

        Timeouts (``target.timeouts``): ``first_byte`` runs to the response headers,
        ``idle`` between two chunks, ``total`` over the whole request; ``connect`` is the
        HTTP client's. A failure once the response has started ends it: an event stream
        gets an error event and a clean end, any other body is cut off (the connection
        closes, so the client cannot mistake it for a whole answer)."""
        path = scope["path"][3:]
        url = target.base_url + path
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        timeouts = target.timeouts
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeouts.total
        idle = timeouts.idle
        health = self._health
        endpoint_id = target.endpoint_id
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
                ) as response:
                    status = response.status
                    if status in (401, 403):
                        # The provider refused the endpoint's key: the client's relaygate key
                        # is fine, so this must not look like an authentication error to its
                        # SDK.
                        self._metrics.upstream_errors.labels("auth").inc()
                        if target.own_key:
                            message = (
                                f"endpoint {target.endpoint_name!r} rejected your own provider "
                                f"key (HTTP {status}); update it with PUT "
                                f"/admin/api/v1/me/provider-keys/{target.endpoint_id}"
                            )
                        else:
                            message = (
                                f"endpoint {target.endpoint_name!r} rejected its provider API "
                                f"key (HTTP {status}); an admin must update the endpoint's key"
                            )
                            health.failed(endpoint_id, f"HTTP {status}: provider key refused")
                        self._fail(UpstreamFailed(message), final=final)
                    if status >= 500 or status == 429:
                        self._metrics.upstream_errors.labels(f"http_{status}").inc()
                        health.failed(
                            endpoint_id,
                            f"HTTP {status}",
                            parse_retry_after(response.headers.get("retry-after")),
                        )
                        if not final:
                            raise _Retry(
                                UpstreamFailed(
                                    f"endpoint {target.endpoint_name!r} answered HTTP {status}"
                                )
                            )
                    else:
                        health.succeeded(endpoint_id)
                    headers_at = time.perf_counter()
                    stream_reader: StreamTokens | None = None
                    body_reader: BodyTokens | None = None
                    if status < 300:
                        content_type = response.headers.get("content-type", "")
                        if content_type.startswith("text/event-stream"):
                            stream_reader = StreamTokens(strip=state.strip_usage)
                            state.tokens = stream_reader.tokens
                        elif "json" in content_type:
                            body_reader = BodyTokens()
                            state.tokens = body_reader.tokens
                    out_headers = [
                        (name.lower(), value)
                        for name, value in response.raw_headers
                        if name.lower() not in _DROP_RESPONSE
                    ]
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
                    timer.reschedule(min(loop.time() + idle, deadline))
                    async for chunk in response.content.iter_any():
                        if stream_reader is not None:
                            chunk = stream_reader.feed(chunk)
                        elif body_reader is not None:
                            body_reader.feed(chunk)
                        if chunk:
                            if not state.first_byte_at:
                                state.first_byte_at = time.perf_counter()
                            await send(
                                {"type": "http.response.body", "body": chunk, "more_body": True}
                            )
                        timer.reschedule(min(loop.time() + idle, deadline))
                    if stream_reader is not None:
                        rest = stream_reader.finish()
                        if rest:
                            await send(
                                {"type": "http.response.body", "body": rest, "more_body": True}
                            )
                    elif body_reader is not None:
                        body_reader.finish()
                    state.finished = True
                    await send({"type": "http.response.body", "body": b""})
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
                    reason = f"silent for {idle:g} s (idle timeout)"
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
        """Raise ``error`` for the client (last target), or :class:`_Retry` to fail over."""
        if final:
            raise error
        raise _Retry(error)


def _endpoint_of(target: Target) -> int:
    return target.endpoint_id


def _is_connect_timeout(exc: TimeoutError) -> bool:
    """Whether ``exc`` is the HTTP client's connect timeout (not one of relaygate's)."""
    return isinstance(exc, aiohttp.ConnectionTimeoutError)


class _Retry(Exception):
    """A target failed before answering; the next one should be tried."""

    def __init__(self, error: RelaygateError):
        super().__init__(error.message)
        self.error = error


class _Exchange:
    """One proxied request across its attempts: progress, and what its usage record
    needs. Times are ``time.perf_counter()`` seconds (0.0: not yet)."""

    __slots__ = (
        "arrived",
        "finished",
        "first_byte_at",
        "model",
        "principal",
        "request_id",
        "routed",
        "sent_at",
        "served_model",
        "started",
        "stream",
        "strip_usage",
        "target",
        "tokens",
    )

    def __init__(self, arrived: float, request_id: str) -> None:
        self.arrived = arrived
        self.request_id = request_id
        self.principal: Principal | None = None
        self.model: str | None = None
        """The model the client asked for."""
        self.routed = False
        """Whether ``model`` is a known public name (else it is not a metric label)."""
        self.served_model: str | None = None
        """The fallback model that answered, when not ``model``."""
        self.target: Target | None = None
        self.stream = False
        self.strip_usage = False
        self.tokens: Tokens | None = None
        self.sent_at = arrived
        self.first_byte_at = 0.0
        self.started = False
        self.finished = False
