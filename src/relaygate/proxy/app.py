"""The proxy as a raw ASGI app: the hot path, kept lean.

Per request: authenticate from the snapshot, read and parse the body once, look
up the model, rewrite ``model`` to the upstream id, forward over the shared
aiohttp client and stream the answer back chunk by chunk. No database access.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, NoReturn

import aiohttp
import orjson

from relaygate.auth import authenticate, key_from_headers
from relaygate.errors import (
    ModelNotFound,
    ModelUnavailable,
    PermissionDenied,
    RelaygateError,
    UpstreamFailed,
    UpstreamTimeout,
    error_body,
    render,
)
from relaygate.metrics import Metrics
from relaygate.proxy.body import check_payload, parse_model, read_body
from relaygate.proxy.checks import check_request
from relaygate.services.api_keys import KeyActivity
from relaygate.snapshot import SnapshotStore, Target, TargetSurface

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


async def _send_bytes(
    send: Send, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    out = [*_JSON_HEADERS, *headers] if headers else _JSON_HEADERS
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


class Proxy:
    """ASGI app for every ``/v1/...`` request but the registry routes."""

    def __init__(
        self,
        snapshots: SnapshotStore,
        http: aiohttp.ClientSession,
        activity: KeyActivity,
        metrics: Metrics,
        max_body_bytes: int,
    ):
        self._snapshots = snapshots
        self._http = http
        self._activity = activity
        self._metrics = metrics
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._metrics.in_flight.inc()
        status = 500
        try:
            status = await self._handle(scope, receive, send)
        except RelaygateError as exc:
            status, body = render(exc)
            await _send_bytes(send, status, body, exc.headers)
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
        if not route.targets:
            if route.needs_user_key:
                endpoint_id, endpoint_name = route.needs_user_key[0]
                raise PermissionDenied(
                    f"the model {model!r} is served by endpoint {endpoint_name!r}, which "
                    "requires your own provider key: set it with PUT "
                    f"/admin/api/v1/me/provider-keys/{endpoint_id}",
                    param="model",
                    code="provider_key_required",
                )
            raise ModelUnavailable(
                f"the model {model!r} is offline: its endpoint failed its last sync",
                param="model",
            )
        return await self._forward(scope, receive, send, route.rotation(), payload, model, body)

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
        targets: tuple[Target, ...],
        payload: dict[str, Any],
        model: str,
        body: bytes,
    ) -> int:
        """Try ``targets`` in turn until one answers; fail over on connection errors,
        timeouts before the first byte, 5xx, 429 and refused provider keys — never once a
        byte has reached the client. The last target's error response is passed through."""
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
            for index, target in enumerate(targets):
                if target.upstream_id != model:
                    payload["model"] = target.upstream_id
                    sent = orjson.dumps(payload)
                else:
                    sent = body
                try:
                    return await self._attempt(
                        scope, send, target, sent, state, final=index == len(targets) - 1
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
        started (the final target raises the error itself, or passes 5xx/429 through)."""
        path = scope["path"][3:]
        url = target.base_url + path
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        try:
            async with self._http.request(
                scope["method"],
                url,
                data=body,
                headers=self._upstream_headers(scope["headers"], target.surface(path)),
            ) as response:
                status = response.status
                if status in (401, 403):
                    # The provider refused the endpoint's key: the client's relaygate key is
                    # fine, so this must not look like an authentication error to its SDK.
                    self._metrics.upstream_errors.labels("auth").inc()
                    if target.own_key:
                        message = (
                            f"endpoint {target.endpoint_name!r} rejected your own provider key "
                            f"(HTTP {status}); update it with PUT "
                            f"/admin/api/v1/me/provider-keys/{target.endpoint_id}"
                        )
                    else:
                        message = (
                            f"endpoint {target.endpoint_name!r} rejected its provider API key "
                            f"(HTTP {status}); an admin must update the endpoint's key"
                        )
                    self._fail(UpstreamFailed(message), final=final)
                if not final and (status >= 500 or status == 429):
                    self._metrics.upstream_errors.labels(f"http_{status}").inc()
                    raise _Retry(
                        UpstreamFailed(f"endpoint {target.endpoint_name!r} answered HTTP {status}")
                    )
                out_headers = [
                    (name.lower(), value)
                    for name, value in response.raw_headers
                    if name.lower() not in _DROP_RESPONSE
                ]
                out_headers.append((ENDPOINT_HEADER, target.endpoint_name.encode()))
                await send(
                    {"type": "http.response.start", "status": status, "headers": out_headers}
                )
                state.started = True
                async for chunk in response.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
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
            self._fail(
                UpstreamFailed(f"endpoint {target.endpoint_name!r} is unreachable ({cause})"),
                final=final,
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            kind = "timeout" if isinstance(exc, TimeoutError) else "broken"
            self._metrics.upstream_errors.labels(kind).inc()
            if state.started:
                # Headers are out: all that is left is to end the stream cleanly.
                log.warning("stream from endpoint %r broke off: %s", target.endpoint_name, kind)
                state.finished = True
                with contextlib.suppress(Exception):
                    await send({"type": "http.response.body", "body": b""})
                return 502
            if kind == "timeout":
                self._fail(
                    UpstreamTimeout(f"endpoint {target.endpoint_name!r} did not answer in time"),
                    final=final,
                )
            self._fail(
                UpstreamFailed(f"endpoint {target.endpoint_name!r} failed: {type(exc).__name__}"),
                final=final,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _fail(error: RelaygateError, *, final: bool) -> NoReturn:
        """Raise ``error`` for the client (last target), or :class:`_Retry` to fail over."""
        if final:
            raise error
        raise _Retry(error)


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
