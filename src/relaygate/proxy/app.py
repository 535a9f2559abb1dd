"""The proxy as a raw ASGI app: the hot path, kept lean.

Per request: authenticate from the snapshot, read and parse the body once, look
up the model, rewrite ``model`` to the upstream id, forward over the hot path's
client (:mod:`relaygate.upstream_client`) and stream the answer back chunk by chunk.
No database access.
Trying the route's targets in turn is :mod:`relaygate.proxy.forwarding`'s, one
upstream request :mod:`relaygate.proxy.upstream`'s, the accounting once the answer is
out :mod:`relaygate.proxy.accounting`'s; a multipart form (a file
upload) is read and sent on by :mod:`relaygate.proxy.multipart`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import aiohttp

from relaygate.auth import authenticate, key_from_headers
from relaygate.budgets import Budgets
from relaygate.errors import (
    ClientDisconnected,
    Overloaded,
    PayloadTooLarge,
    RelaygateError,
    error_body,
)
from relaygate.health import Health
from relaygate.logs import REQUEST_ID, request_id
from relaygate.metrics import Metrics
from relaygate.proxy.access_log import AccessLog
from relaygate.proxy.accounting import Accounting, Exchange
from relaygate.proxy.asgi import (
    Receive,
    Scope,
    Send,
    has_body,
    send_error,
    send_error_draining,
    send_json,
)
from relaygate.proxy.batched import Answer, Gathered, Ticket, batch_scope
from relaygate.proxy.body import (
    check_payload,
    check_references,
    parse_model,
    read_body,
)
from relaygate.proxy.checks import check_request
from relaygate.proxy.forwarding import Forwarding
from relaygate.proxy.headers import REQUEST_ID_HEADER
from relaygate.proxy.in_flight import InFlight
from relaygate.proxy.listing import answer_models
from relaygate.proxy.multipart import read_form
from relaygate.proxy.plan import plan_for, unavailable
from relaygate.proxy.stored import STORED_RESPONSES, answer_stored
from relaygate.proxy.translation import (
    Translation,
)
from relaygate.proxy.upstream import Upstream
from relaygate.ratelimit import ADMISSION_SCOPE_KEY, RateLimiter
from relaygate.services.api_findings import ApiFindings
from relaygate.services.api_keys import KeyActivity
from relaygate.snapshot import Principal, Snapshot
from relaygate.snapshots import SnapshotStore
from relaygate.upstream_client import LeanClient
from relaygate.usage_records import UsageQueue

log = logging.getLogger(__name__)


class Proxy:
    """ASGI app for every ``/v1/...`` request but the registry routes.

    Requests go upstream over ``client`` (the hot path's, :mod:`relaygate.upstream_client`);
    ``http`` serves the rest (the probe of a missing route). ``max_concurrent`` bounds
    the requests served at once (more get 503 with ``Retry-After``); ``health`` learns
    from every forwarded request which endpoints to skip for a while; ``access_log``
    writes one line per live request (:mod:`relaygate.proxy.access_log`).
    """

    def __init__(
        self,
        snapshots: SnapshotStore,
        http: aiohttp.ClientSession,
        client: LeanClient,
        activity: KeyActivity,
        metrics: Metrics,
        health: Health,
        usage: UsageQueue,
        *,
        max_body_bytes: int,
        max_concurrent: int,
        limiter: RateLimiter | None = None,
        via: str = "",
        body_timeout: float = 60.0,
        drain_seconds: float = 5.0,
        max_per_key: int | None = None,
        max_per_user: int | None = None,
        max_event_bytes: int = 1024 * 1024,
        budgets: Budgets | None = None,
        translation: Translation | None = None,
        access_log: bool = True,
    ):
        self._snapshots = snapshots
        self._access = AccessLog(access_log)
        self._activity = activity
        self._metrics = metrics
        self._health = health
        self._max_body = max_body_bytes
        self._max_concurrent = max_concurrent
        self._in_flight = 0
        self._body_timeout = body_timeout
        self._drain_seconds = drain_seconds
        self._per_key = InFlight(max_per_key or max_concurrent, max_per_user or max_concurrent)
        self._limiter = limiter or RateLimiter()
        self._via = via.encode()
        self._budgets = budgets
        self._translation = translation or Translation(
            ApiFindings(), None, max_event=max_event_bytes, max_body=max_body_bytes
        )
        self._accounting = Accounting(metrics, usage, self._limiter, budgets)
        upstream = Upstream(http, client, metrics, health, self._via, max_event_bytes)
        self._forwarding = Forwarding(upstream, self._translation)
        # Bound once: a labels() call on every request costs more than the count itself.
        self._by_class = {n: metrics.proxy_requests.labels(f"{n}xx") for n in range(1, 6)}
        metrics.track(metrics.in_flight, lambda: self._in_flight)

    @property
    def in_flight(self) -> int:
        """Requests being served now."""
        return self._in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.serve_live(scope, receive, send)

    async def serve_live(
        self, scope: Scope, receive: Receive, send: Send, principal: Principal | None = None
    ) -> None:
        """Serve one live ``/v1`` request: authenticated by its own key, or, given
        ``principal``, made for it by relaygate itself (the console's playground, whose
        page holds no key) — either way within the live path's capacity and the key's
        concurrency, rate limits and budgets, and recorded in its usage."""
        exchange = Exchange(time.perf_counter(), request_id(scope["headers"]))
        if self._in_flight >= self._max_concurrent:
            self._by_class[5].inc()
            error = Overloaded(
                f"relaygate is serving its limit of {self._max_concurrent} requests at "
                "once; retry shortly"
            )
            await send_error(send, error, ((REQUEST_ID_HEADER, exchange.request_id.encode()),))
            token = REQUEST_ID.set(exchange.request_id)
            self._access.write(scope["method"], scope["path"], exchange, error.status)
            REQUEST_ID.reset(token)
            return
        self._in_flight += 1
        await self._serve(scope, receive, send, exchange, principal, live=True)

    async def serve_batch(
        self,
        principal: Principal,
        path: str,
        body: bytes,
        request_id: str,
        ticket: Ticket,
        max_answer: int,
    ) -> Answer:
        """Serve one batch request for ``principal``: ``POST path`` with the JSON
        ``body``, known by ``request_id``, as a live request is served (routing, access,
        failover, rate limits, budgets, accounting) but outside the live path's capacity,
        holding one of the ``ticket``'s per-endpoint slots while it is sent, its answer
        kept up to ``max_answer`` bytes (``too_large`` past it). Returns the
        :class:`Answer`, errors included (never raises but for cancellation)."""
        exchange = Exchange(time.perf_counter(), request_id)
        exchange.ticket = ticket
        gathered = Gathered(body, max_answer)
        scope = batch_scope(path, body, request_id)
        await self._serve(scope, gathered.receive, gathered.send, exchange, principal, live=False)
        tokens = exchange.tokens
        return Answer(
            gathered.status or 500,
            gathered.body,
            request_id,
            exchange.upstream_status != 0,
            gathered.withdrawn,
            gathered.retry_after,
            gathered.code(),
            tokens.prompt if tokens is not None else None,
            tokens.completion if tokens is not None else None,
            exchange.cost,
            gathered.too_large,
        )

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        exchange: Exchange,
        principal: Principal | None,
        *,
        live: bool,
    ) -> None:
        """Serve one request, answering any error, and account for it; ``principal``
        stands for the request's API key (None: authenticated from its own key). A
        ``live`` request is counted in :attr:`in_flight` by the caller; a batch request
        is not."""
        reply_headers = ((REQUEST_ID_HEADER, exchange.request_id.encode()),)
        token = REQUEST_ID.set(exchange.request_id)
        status = 500
        try:
            status = await self._handle(scope, receive, send, exchange, principal, live)
        except ClientDisconnected:
            status = 499  # nothing to answer: the client is gone
        except RelaygateError as exc:
            status = exc.status
            if exchange.body_whole or not has_body(scope["headers"]):
                await send_error(send, exc, reply_headers)
            else:
                await send_error_draining(send, receive, exc, reply_headers, self._drain_seconds)
        except Exception:
            log.exception("unexpected error while proxying %s", scope["path"])
            status = 500
            # Fails harmlessly when the response had already started.
            with contextlib.suppress(Exception):
                await send_json(
                    send,
                    500,
                    error_body("internal error; see the server log", "server_error", None),
                    reply_headers,
                )
        finally:
            if live:  # its slot is free once it is answered
                self._in_flight -= 1
                self._access.write(scope["method"], scope["path"], exchange, status)
            if exchange.holds_slot and exchange.principal is not None:
                self._per_key.release(exchange.principal)
            self._by_class[min(max(status // 100, 1), 5)].inc()
            if exchange.principal is not None and exchange.model is not None:
                try:
                    self._accounting.record(scope["path"], exchange, status)
                except Exception:  # the answer is out; never let accounting break the server
                    log.exception("could not account for a request")
                await self._accounting.count_tokens(exchange)
            if exchange.reservation is not None:
                await self._accounting.settle(exchange, status)
            REQUEST_ID.reset(token)

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        exchange: Exchange,
        given: Principal | None,
        live: bool,
    ) -> int:
        """Serve one request in its steps: check its head, admit its key
        (:meth:`_admit`), answer the model list itself (:mod:`relaygate.proxy.listing`),
        read its body, route it and reserve its budget, then forward it; returns the
        status the client got."""
        snapshot = self._snapshots.current
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        path: str = scope["path"]
        method: str = scope["method"]
        stored = method in ("GET", "DELETE") and path.startswith(STORED_RESPONSES)
        length, form_type = (
            (None, None)
            if stored  # relaygate's own route: nothing goes upstream
            else check_request(method, path, headers, snapshot.route_policy, self._via)
        )
        principal = await self._admit(scope, snapshot, exchange, given, live)
        if stored:
            return await answer_stored(self._translation.responses, send, method, path, principal)
        if method in ("GET", "HEAD") and (path == "/v1/models" or path.startswith("/v1/models/")):
            return await answer_models(send, snapshot, principal, path)
        body = await self._read(receive, length, exchange)
        form = None if form_type is None else read_form(body, form_type)
        payload: dict[str, Any]
        if form is None:
            payload, model = parse_model(body)
        else:  # a form's payload is its model: all a budget's estimate reads of it
            model, payload = form.model, {"model": form.model}
        exchange.model = model
        exchange.stream = payload.get("stream") is True if form is None else form.stream
        if form is None:
            check_payload(path, payload)
            check_references(payload, body, path)
        route = snapshot.route_for(principal, model)
        if route is None:
            raise unavailable(snapshot, model)
        exchange.routed = True
        plan = plan_for(snapshot, self._health, principal, route, method, path)
        budgets = self._budgets
        if budgets is not None and budgets.has_budget(snapshot, principal):
            # Raises BudgetExceeded (429) when a budget has not enough left.
            # A form's files are no prompt tokens: its text fields are counted.
            size = len(body) if form is None else form.text_bytes
            exchange.reservation = await budgets.reserve(
                snapshot, principal, [target for target, _ in plan], path, payload, size
            )
            openai_stream = path in ("/v1/chat/completions", "/v1/completions")
            send = self._accounting.settling(send, exchange, done_marker=openai_stream)
        return await self._forwarding.forward(
            scope, receive, send, plan, payload, model, body, exchange, form
        )

    async def _read(self, receive: Receive, length: int | None, exchange: Exchange) -> bytes:
        """The request's body, read within its bounds (:func:`read_body`, which raises),
        noting in ``exchange`` whether it was read to its end: a 413 for a body that had
        come whole need not drain the rest."""
        try:
            body = await read_body(receive, length, self._max_body, self._body_timeout)
        except PayloadTooLarge as exc:
            exchange.body_whole = exc.body_ended
            raise
        exchange.body_whole = True
        return body

    async def _admit(
        self,
        scope: Scope,
        snapshot: Snapshot,
        exchange: Exchange,
        given: Principal | None,
        live: bool,
    ) -> Principal:
        """The request's principal (``given``, or its key's), admitted: its rate limits
        (429 :class:`RateLimited`) and, for a live request, one of its key's concurrent
        slots (429 :class:`ConcurrencyLimited`)."""
        principal = given or authenticate(snapshot, key_from_headers(scope["headers"]))
        if principal.limits is not None:
            scope[ADMISSION_SCOPE_KEY] = await self._limiter.admit(principal)
        self._activity.touch(principal.key_id)
        exchange.principal = principal
        if live:  # a batch request takes none of its key's live slots
            self._per_key.take(principal)
            exchange.holds_slot = True
        return principal
