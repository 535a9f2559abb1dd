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
from typing import Any

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
from relaygate.proxy.body import parse_model, read_body
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


async def _send_bytes(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON_HEADERS})
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
            await _send_bytes(send, status, body)
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
        principal = authenticate(snapshot, key_from_headers(headers))
        self._activity.touch(principal.key_id)
        path: str = scope["path"]
        method: str = scope["method"]
        view = principal.view
        if method == "GET" and path == "/v1/models":
            await _send_bytes(send, 200, view.model_list_body)
            return 200
        if method == "GET" and path.startswith("/v1/models/"):
            name = path[len("/v1/models/") :]
            entry = view.model_bodies.get(name)
            if entry is None:
                raise self._unavailable(snapshot.known_names, name)
            await _send_bytes(send, 200, entry)
            return 200

        body = await read_body(receive, headers, self._max_body)
        payload, model = parse_model(body)
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
        target = route.pick()
        if target.upstream_id != model:
            payload["model"] = target.upstream_id
            body = orjson.dumps(payload)
        return await self._forward(scope, receive, send, target, body)

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
        self, scope: Scope, receive: Receive, send: Send, target: Target, body: bytes
    ) -> int:
        path = scope["path"][3:]
        url = target.base_url + path
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        task = asyncio.current_task()
        finished = False

        async def cancel_on_disconnect() -> None:
            # A client that goes away cancels the upstream request and frees its connection.
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    if not finished and task is not None:
                        task.cancel()
                    return

        watcher = asyncio.create_task(cancel_on_disconnect())
        started = False
        try:
            async with self._http.request(
                scope["method"],
                url,
                data=body,
                headers=self._upstream_headers(scope["headers"], target.surface(path)),
            ) as response:
                if response.status in (401, 403):
                    # The provider refused the endpoint's key: the client's relaygate key is
                    # fine, so this must not look like an authentication error to its SDK.
                    self._metrics.upstream_errors.labels("auth").inc()
                    log.warning(
                        "endpoint %r refused its provider key (HTTP %d)",
                        target.endpoint_name,
                        response.status,
                    )
                    raise UpstreamFailed(
                        f"endpoint {target.endpoint_name!r} rejected its provider API key "
                        f"(HTTP {response.status}); an admin must update the endpoint's key"
                    )
                out_headers = [
                    (name.lower(), value)
                    for name, value in response.raw_headers
                    if name.lower() not in _DROP_RESPONSE
                ]
                out_headers.append((ENDPOINT_HEADER, target.endpoint_name.encode()))
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status,
                        "headers": out_headers,
                    }
                )
                started = True
                async for chunk in response.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                finished = True
                await send({"type": "http.response.body", "body": b""})
                return response.status
        except asyncio.CancelledError:
            if watcher.done() and not finished and task is not None:
                task.uncancel()
                log.info("client disconnected; cancelled the request to %r", target.endpoint_name)
                return 499
            raise
        except aiohttp.ClientConnectorError as exc:
            self._metrics.upstream_errors.labels("connect").inc()
            cause = (
                "connection refused"
                if isinstance(exc.os_error, ConnectionRefusedError)
                else ("cannot connect")
            )
            raise UpstreamFailed(
                f"endpoint {target.endpoint_name!r} is unreachable ({cause})"
            ) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            kind = "timeout" if isinstance(exc, TimeoutError) else "broken"
            self._metrics.upstream_errors.labels(kind).inc()
            if started:
                # Headers are out: all that is left is to end the stream cleanly.
                log.warning("stream from endpoint %r broke off: %s", target.endpoint_name, kind)
                finished = True
                with contextlib.suppress(Exception):
                    await send({"type": "http.response.body", "body": b""})
                return 502
            if kind == "timeout":
                raise UpstreamTimeout(
                    f"endpoint {target.endpoint_name!r} did not answer in time"
                ) from None
            raise UpstreamFailed(
                f"endpoint {target.endpoint_name!r} failed: {type(exc).__name__}"
            ) from None
        finally:
            finished = True
            watcher.cancel()
