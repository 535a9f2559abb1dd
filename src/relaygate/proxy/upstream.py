"""One attempt at a request upstream: the request to a target's endpoint, the answer
streamed back to the client chunk by chunk, the endpoint's health learnt from it, and
the failures that let the proxy fail over to its next target."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import NoReturn

import aiohttp
from yarl import URL

from relaygate.errors import (
    NotServed,
    RelaygateError,
    TryNextTarget,
    UpstreamFailed,
)
from relaygate.health import Health, parse_retry_after
from relaygate.metrics import Metrics
from relaygate.proxy.accounting import Exchange
from relaygate.proxy.asgi import Scope, Send
from relaygate.proxy.headers import (
    JSON_TYPE,
    TRANSLATED_AWAY,
    client_headers,
    upstream_headers,
    wire_path,
)
from relaygate.proxy.multipart import Spliced
from relaygate.proxy.relay import Opened, Relay, end_broken, error_for, failure_of
from relaygate.proxy.replies import Reply
from relaygate.proxy.tokens import BodyTokens, StreamTokens
from relaygate.proxy.translation import Conversion
from relaygate.proxy.upstream_errors import error_answer, once, readable
from relaygate.targets import Target
from relaygate.upstream_client import Answer, LeanClient

log = logging.getLogger(__name__)


class Upstream:
    """Sends requests to the endpoints over the hot path's ``client`` (the probe of a
    missing route over the shared ``http`` client), counting the
    failures in ``metrics`` and telling ``health`` how each endpoint did.

    Timeouts (a target's ``timeouts``): ``first_byte`` runs to the response headers,
    ``idle`` between two chunks, ``total`` over the whole request; ``connect`` is the
    HTTP client's. A failure once the response has started ends it: an event stream gets
    an error event and a clean end, any other body is cut off (the connection closes, so
    the client cannot mistake it for a whole answer).

    An attempt's steps: :meth:`_request_of` builds the request, :meth:`_open` reads the
    answer's headers (health, usage readers, error bodies), :meth:`_relay` or
    :meth:`_relay_translated` stream the body; :mod:`relaygate.proxy.relay` times the
    answer and names a failure."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        client: LeanClient,
        metrics: Metrics,
        health: Health,
        via: bytes = b"",
        max_event_bytes: int = 1024 * 1024,
    ) -> None:
        self._max_event = max_event_bytes
        self._http = http
        self._client = client
        self._metrics = metrics
        self._health = health
        self._via = via.decode("latin-1")

    async def attempt(
        self,
        scope: Scope,
        send: Send,
        target: Target,
        body: bytes | Spliced,
        state: Exchange,
        *,
        final: bool,
        conversion: Conversion | None = None,
        probe: bool = False,
    ) -> int:
        """Send the request of ``scope`` with ``body`` (bytes, or a multipart form's
        :class:`Spliced` pieces) to ``target`` and stream its answer to the client
        through ``send``, recording its progress in ``state``; return the status the
        client got (502 or 504 when the answer broke off after it started).

        Raises :class:`TryNextTarget` for a failure before the response started, unless
        ``final``: the last target raises the error itself (:class:`UpstreamFailed` or
        :class:`UpstreamTimeout`), and passes 5xx and 429 answers through.

        With a ``conversion``, its body goes to its path instead and the answer is
        translated on its way. A ``probe`` answered 404 or 405 raises
        :class:`NotServed` before anything reaches the client. An error answer that is
        not a proper OpenAI or Anthropic error is wrapped (:meth:`_open`)."""
        path, url, data, headers = self._request_of(scope, target, body, state, conversion)
        timeouts = target.timeouts
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeouts.total
        response: Answer | None = None
        relay = Relay(timeouts.idle, deadline)
        try:
            async with asyncio.timeout_at(
                min(loop.time() + timeouts.first_byte, deadline)
            ) as timer:
                relay.timer = timer
                state.sent_at = time.perf_counter()
                async with self._client.request(
                    scope["method"],
                    url,
                    data=data,
                    headers=headers,
                    connect_timeout=timeouts.connect,
                ) as response:
                    opened = await self._open(
                        scope, response, target, path, state, conversion, final, probe
                    )
                    if conversion is not None:
                        relay.reply = conversion.make_reply(opened.status, opened.content_type)
                        return await self._relay_translated(send, opened, relay, state)
                    return await self._relay(send, opened, relay, state, target)
        except (TimeoutError, aiohttp.ClientError) as exc:
            kind, reason = failure_of(exc, timeouts, loop.time() >= deadline - 0.001, state)
            return await self._failed(
                kind, reason, scope, send, response, relay, target, state, final
            )

    async def _failed(
        self,
        kind: str,
        reason: str,
        scope: Scope,
        send: Send,
        response: Answer | None,
        relay: Relay,
        target: Target,
        state: Exchange,
        final: bool,
    ) -> int:
        """Count an attempt's failure and tell health; once the response started, end it
        broken and return the status the client got, else raise the error to fail over
        or answer (see :meth:`attempt`)."""
        self._metrics.upstream_errors.labels(kind).inc()
        self._health.failed(target.health_key, reason)
        if state.started:
            log.warning("response from endpoint %r broke off: %s", target.endpoint_name, reason)
            await end_broken(scope, send, response, relay, target, reason)
            state.finished = True  # after: a broken answer's end settles nothing early
            return 504 if kind.endswith("timeout") else 502
        self._fail(error_for(kind, reason, target.endpoint_name), final=final)

    def _request_of(
        self,
        scope: Scope,
        target: Target,
        body: bytes | Spliced,
        state: Exchange,
        conversion: Conversion | None,
    ) -> tuple[str, URL, bytes | AsyncIterator[memoryview], list[tuple[str, str]]]:
        """The request to send ``target``: its route under ``/v1``, URL, body (a multipart
        form as its pieces, written afresh on each attempt) and headers. Forgets what an
        earlier attempt learnt (its tokens and upstream status)."""
        if conversion is None:
            path = scope["path"][3:]
            url = URL(target.base_url + wire_path(scope), encoded=True)
        else:
            path = conversion.path
            url = URL(conversion.url(target.base_url), encoded=True)
        state.tokens, state.upstream_status = None, 0
        state.upstream_path = conversion.path if conversion is not None else None
        data: bytes | AsyncIterator[memoryview]
        content_type = JSON_TYPE
        if isinstance(body, Spliced):
            data, content_type = body.pieces(), body.content_type
        else:
            data = body
        headers = upstream_headers(
            scope["headers"], target.surface(path), state.upstream_id, self._via, content_type
        )
        if isinstance(body, Spliced):
            headers.append(("content-length", str(body.size)))
        return path, url, data, headers

    async def _open(
        self,
        scope: Scope,
        response: Answer,
        target: Target,
        path: str,
        state: Exchange,
        conversion: Conversion | None,
        final: bool,
        probe: bool,
    ) -> Opened:
        """What the endpoint's response headers say: its health judged (raising what a
        failed answer calls for, see :meth:`attempt`), the usage readers for its body,
        the client's headers, and an error body read whole and, when it is not a proper
        OpenAI or Anthropic error, wrapped in one naming the endpoint."""
        status = response.status
        user = state.principal.user_id if state.principal is not None else None
        if conversion is None or not conversion.helper:
            self._judge(status, response, target, user, final=final)
        if probe and status in (404, 405) and await self._route_missing(target, path, state):
            raise NotServed
        headers_at = time.perf_counter()
        opened = Opened(status, response.headers.get("content-type", ""))
        if status < 300:
            if opened.content_type.startswith("text/event-stream"):
                opened.stream = StreamTokens(state.strip_usage, self._max_event)
                state.tokens = opened.stream.tokens
            elif "json" in opened.content_type:
                opened.body = BodyTokens()
                state.tokens = opened.body.tokens
        opened.headers = client_headers(scope, response, target, state, headers_at)
        opened.chunks = response.content.iter_any()
        opened.length = response.content_length
        if status >= 400 and readable(response):
            # A translated answer's error is read by its translation.
            anthropic = conversion is None and scope["path"].startswith("/v1/messages")
            error, proper = await error_answer(
                response,
                target.endpoint_name,
                status,
                anthropic=anthropic,
                secrets=target.surface(path).headers,
            )
            # Masking may have shortened even a proper error: its length is new.
            out = [h for h in opened.headers if h[0] != b"content-length"]
            if not proper:
                opened.content_type = JSON_TYPE
                out = [h for h in out if h[0] not in TRANSLATED_AWAY]
                out.append((b"content-type", JSON_TYPE.encode()))
            out.append((b"content-length", str(len(error)).encode()))
            opened.headers, opened.chunks, opened.length = out, once(error), len(error)
        return opened

    async def _relay(
        self, send: Send, opened: Opened, relay: Relay, state: Exchange, target: Target
    ) -> int:
        """Start the client's response and send it every chunk of the endpoint's answer
        as soon as it is read, its usage read on the way; returns the status."""
        stream, body = opened.stream, opened.body
        headers = opened.headers
        if stream is not None and state.strip_usage:
            headers = [h for h in headers if h[0] != b"content-length"]
        await send({"type": "http.response.start", "status": opened.status, "headers": headers})
        state.started = True
        state.upstream_status = opened.status
        relay.start()
        # A body whose length is known ends with its last chunk: one send fewer, which
        # for a one-chunk JSON answer is a third of them.
        left = opened.length if stream is None else None
        ended = False
        clock = relay.clock
        # Per chunk only what must be done: usage looked for (a scan, see tokens.py),
        # the bytes sent on, the idle timer moved when it is due (a clock read).
        async for chunk in opened.chunks:
            if stream is not None:
                chunk = stream.feed(chunk)
            elif body is not None:
                body.feed(chunk)
            relay.last_chunk = chunk
            if chunk:
                if not state.first_byte_at:
                    state.first_byte_at = time.perf_counter()
                if left is not None:
                    left -= len(chunk)
                    ended = left <= 0
                if ended:
                    if body is not None:
                        body.finish()
                    state.finished = True
                await send({"type": "http.response.body", "body": chunk, "more_body": not ended})
                if ended:
                    return opened.status
            now = clock()
            if now > relay.move_after:
                relay.move(now)
        rest = b""
        if stream is not None:
            rest = stream.finish()  # what the stream held back, if any
            if stream.gave_up:
                self._metrics.usage_unread.inc()
                log.warning(
                    "usage of a stream from endpoint %r not counted: an event was longer "
                    "than max_event_bytes (%d)",
                    target.endpoint_name,
                    self._max_event,
                )
        elif body is not None:
            body.finish()
        state.finished = True
        await send({"type": "http.response.body", "body": rest})
        return opened.status

    async def _route_missing(self, target: Target, path: str, state: Exchange) -> bool:
        """Whether ``target``'s endpoint does not serve ``path`` at all: asked with an
        empty JSON object of relaygate's own (a route that exists refuses it 400 or 422,
        or asks for a key) after the client's request got 404 or 405, so that neither
        the client's content (an unknown id, model or item) nor its own key decides
        for every user of the endpoint. It goes with the request's upstream id (a UUID:
        some servers, llama.cpp's, refuse any other ``x-request-id``)."""
        try:
            async with self._http.post(
                URL(target.base_url + path, encoded=True),
                data=b"{}",
                headers=upstream_headers([], target.surface(path), state.upstream_id, self._via),
                timeout=aiohttp.ClientTimeout(total=min(10.0, target.timeouts.first_byte)),
                allow_redirects=False,
            ) as answer:
                return answer.status in (404, 405)
        except (TimeoutError, aiohttp.ClientError):
            return False  # not known: the client's own answer stands

    async def _relay_translated(
        self, send: Send, opened: Opened, relay: Relay, state: Exchange
    ) -> int:
        """Stream the endpoint's answer to the client through ``relay.reply`` (its answer
        in the client's API): the usage is read from the endpoint's own bytes, what the
        reply makes of them goes out as soon as it has some (a buffered reply: once
        whole), and the response starts with the first bytes. Returns the status the
        client got."""
        reply = relay.reply
        assert reply is not None
        stream, body = opened.stream, opened.body
        headers = [h for h in opened.headers if h[0] not in TRANSLATED_AWAY]
        relay.start()
        async for chunk in opened.chunks:
            if stream is not None:
                stream.feed(chunk)
            elif body is not None:
                body.feed(chunk)
            out = reply.feed(chunk)
            if out:
                await self._start_translated(send, reply, headers, state)
                await send({"type": "http.response.body", "body": out, "more_body": True})
            if reply.closed:
                break  # it ended the client's stream: read no more of the endpoint's
            relay.moved()
        if stream is not None:
            stream.finish()
        elif body is not None:
            body.finish()
        rest = reply.finish()
        state.finished = True
        await self._start_translated(send, reply, headers, state)
        await send({"type": "http.response.body", "body": rest})
        return reply.status

    @staticmethod
    async def _start_translated(
        send: Send, reply: Reply, headers: list[tuple[bytes, bytes]], state: Exchange
    ) -> None:
        if state.started:
            return
        start = [*headers, (b"content-type", reply.content_type), *reply.headers]
        await send({"type": "http.response.start", "status": reply.status, "headers": start})
        state.started = True
        state.upstream_status = reply.status
        state.first_byte_at = time.perf_counter()

    def _judge(
        self,
        status: int,
        response: Answer,
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
                raise TryNextTarget(UpstreamFailed(f"endpoint {name!r} answered HTTP {status}"))
            return
        health.succeeded(key, user)

    @staticmethod
    def _fail(error: RelaygateError, *, final: bool) -> NoReturn:
        """Raise ``error`` for the client (last target), or :class:`TryNextTarget` to fail over."""
        if final:
            raise error
        raise TryNextTarget(error)
