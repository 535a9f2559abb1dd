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
from relaygate.metrics import Metrics
from relaygate.proxy.body import check_payload, parse_model, read_body
from relaygate.proxy.checks import check_request
from relaygate.ratelimit import ADMISSION_SCOPE_KEY, RateLimiter, add_rate_limit_headers
from relaygate.services.api_keys import KeyActivity
from relaygate.snapshot import Route, SnapshotStore, Target, TargetSurface, View

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
MODEL_HEADER = b"x-relaygate-model"
"""Sent when a fallback model answered: the public name of the model that did."""


async def _send_bytes(
    send: Send, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    out = [*_JSON_HEADERS, *headers] if headers else _JSON_HEADERS
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, exc: RelaygateError) -> None:
    """Answer with ``exc`` as an OpenAI-shaped error, with the headers it calls for
    (``Retry-After``, ``Allow``)."""
    status, body = render(exc)
    await _send_bytes(send, status, body, exc.headers)


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
        if self._in_flight >= self._max_concurrent:
            self._metrics.proxy_requests.labels("5xx").inc()
            await send_error(
                send,
                Overloaded(
                    f"relaygate is serving its limit of {self._max_concurrent} requests at "
                    "once; retry shortly"
                ),
            )
            return
        self._in_flight += 1
        self._metrics.in_flight.inc()
        status = 500
        try:
            status = await self._handle(scope, receive, send)
        except RelaygateError as exc:
            status = exc.status
            await send_error(send, exc)
        except Exception:
            log.exception("unexpected error while proxying %s", scope["path"])
            status = 500
            # Fails harmlessly when the response had already started.
            with contextlib.suppress(Exception):
                await _send_bytes(
                    send,
                    500,
                    error_body("internal error; see the server log", "server_error", None),
                )
        finally:
            self._in_flight -= 1
            self._metrics.in_flight.dec()
            self._metrics.proxy_requests.labels(f"{status // 100}xx").inc()

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

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> int:
        snapshot = self._snapshots.current
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        path: str = scope["path"]
        method: str = scope["method"]
        length = check_request(method, path, headers)
        principal = authenticate(snapshot, key_from_headers(headers))
        if principal.limits is not None:  # rate limits: raises RateLimited (429)
            scope[ADMISSION_SCOPE_KEY] = await self._limiter.admit(principal)
        self._activity.touch(principal.key_id)
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
        check_payload(path, payload)
        route = view.routes.get(model)
        if route is None:
            raise self._unavailable(snapshot.known_names, model)
        plan = self._plan(view, route)
        return await self._forward(scope, receive, send, plan, payload, model, body)

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
        self, headers: list[tuple[bytes, bytes]], surface: TargetSurface
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
    ) -> int:
        """Try the ``plan`` in turn until a target answers; fail over on connection
        errors, timeouts before the first byte, 5xx, 429 and refused provider keys — never
        once a byte has reached the client. The last target's error response is passed
        through."""
        task = asyncio.current_task()
        state = _Exchange()

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
                if target.upstream_id != model:
                    payload["model"] = target.upstream_id
                    sent = orjson.dumps(payload)
                else:
                    sent = body
                try:
                    return await self._attempt(
                        scope,
                        send,
                        target,
                        sent,
                        state,
                        final=index == last,
                        served_as=name if name != model else None,
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
        served_as: str | None,
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
                async with self._http.request(
                    scope["method"],
                    url,
                    data=body,
                    headers=self._upstream_headers(scope["headers"], target.surface(path)),
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
                    out_headers = [
                        (name.lower(), value)
                        for name, value in response.raw_headers
                        if name.lower() not in _DROP_RESPONSE
                    ]
                    out_headers.append((ENDPOINT_HEADER, target.endpoint_name.encode()))
                    if served_as is not None:
                        out_headers.append((MODEL_HEADER, served_as.encode()))
                    add_rate_limit_headers(scope, out_headers)
                    await send(
                        {"type": "http.response.start", "status": status, "headers": out_headers}
                    )
                    state.started = True
                    timer.reschedule(min(loop.time() + idle, deadline))
                    async for chunk in response.content.iter_any():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                        timer.reschedule(min(loop.time() + idle, deadline))
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
    """Progress of one proxied request across its attempts."""

    __slots__ = ("finished", "started")

    def __init__(self) -> None:
        self.started = False
        self.finished = False
