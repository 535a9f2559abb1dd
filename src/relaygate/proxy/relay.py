"""An endpoint's answer on its way to the client: what its headers said
(:class:`Opened`), the timer that runs while it flows (:class:`Relay`), what a failure
of it is called (:func:`failure_of`, :func:`error_for`), and how an answer that broke
off after it started is ended (:func:`end_broken`)."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator

import aiohttp
import orjson

from relaygate.errors import RelaygateError, UpstreamFailed, UpstreamTimeout
from relaygate.proxy.accounting import Exchange
from relaygate.proxy.asgi import Scope, Send
from relaygate.proxy.replies import Reply
from relaygate.proxy.tokens import BodyTokens, StreamTokens
from relaygate.proxy.upstream_errors import once
from relaygate.targets import Target, Timeouts
from relaygate.upstream_client import Answer


class Opened:
    """The endpoint's answer once its headers came: ``status``, ``content_type``, the
    client's ``headers``, the body's ``chunks`` and ``length`` (None: unknown), and the
    reader of its usage (``stream`` for an event stream, ``body`` for JSON)."""

    __slots__ = ("body", "chunks", "content_type", "headers", "length", "status", "stream")

    def __init__(self, status: int, content_type: str) -> None:
        self.status = status
        self.content_type = content_type
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: AsyncIterator[bytes] = once(b"")
        self.length: int | None = None
        self.stream: StreamTokens | None = None
        self.body: BodyTokens | None = None


class Relay:
    """The timing of one attempt's answer, and what ending it broken needs. Until the
    response starts, ``timer`` runs to the first byte; from then on it is moved once per
    ``slack`` seconds of flowing chunks, not on every chunk, so it fires after ``idle``
    to ``idle + slack`` seconds of silence, or at the ``deadline`` (loop time).

    Per chunk the relay loop only compares ``clock()`` with ``move_after`` and calls
    :meth:`move` when it is past: one call into the event loop's clock, no allocation."""

    __slots__ = ("clock", "deadline", "idle", "last_chunk", "move_after", "reply", "slack", "timer")

    def __init__(self, idle: float, deadline: float) -> None:
        self.idle = idle
        self.deadline = deadline
        self.slack = min(1.0, idle / 20)
        self.clock = asyncio.get_running_loop().time
        self.move_after = math.inf
        """Loop time past which a chunk moves the timer (infinity: never again)."""
        self.timer: asyncio.Timeout | None = None
        self.reply: Reply | None = None
        self.last_chunk = b""
        """The last chunk sent (an event stream broken mid-event gets no error event)."""

    def start(self) -> None:
        """The response started: from now on the idle timeout runs."""
        self.move(self.clock())

    def move(self, now: float) -> None:
        """Move the timer to ``idle + slack`` after ``now`` (loop time), or the deadline."""
        assert self.timer is not None
        due = now + self.idle + self.slack
        if due >= self.deadline:
            due, self.move_after = self.deadline, math.inf
        else:
            self.move_after = due - self.idle
        self.timer.reschedule(due)

    def moved(self) -> None:
        """A chunk came: move the idle timer, when it is due to move."""
        now = self.clock()
        if now > self.move_after:
            self.move(now)


def failure_of(
    exc: TimeoutError | aiohttp.ClientError, timeouts: Timeouts, at_deadline: bool, state: Exchange
) -> tuple[str, str]:
    """The kind of an attempt's failure (its ``relaygate_upstream_errors_total`` label)
    and the reason an operator reads."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        refused = isinstance(exc.os_error, ConnectionRefusedError)
        return "connect", "connection refused" if refused else "cannot connect"
    if not isinstance(exc, TimeoutError):
        return "broken", f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connect_timeout", f"no connection within {timeouts.connect:g} s"
    if at_deadline:
        return "total_timeout", f"not finished within the total timeout of {timeouts.total:g} s"
    if state.started:
        return "idle_timeout", f"silent for {timeouts.idle:g} s or more (idle timeout)"
    return "first_byte_timeout", f"no response within {timeouts.first_byte:g} s"


def error_for(kind: str, reason: str, endpoint: str) -> RelaygateError:
    """The client's error for a failure of ``kind`` before the response started."""
    if kind == "connect":
        return UpstreamFailed(f"endpoint {endpoint!r} is unreachable ({reason})")
    if kind.endswith("timeout"):
        return UpstreamTimeout(f"endpoint {endpoint!r} failed: {reason}")
    return UpstreamFailed(f"endpoint {endpoint!r} failed: {reason}")


async def end_broken(
    scope: Scope,
    send: Send,
    response: Answer | None,
    relay: Relay,
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
    reply, last_chunk = relay.reply, relay.last_chunk
    if reply is not None:
        event = reply.fail(message)  # a translated stream goes out in whole events
    elif last_chunk and not last_chunk.endswith((b"\n\n", b"\r\n\r\n")):
        event = b""  # mid-event: an error event would be garbled, so only end
    elif scope["path"].startswith("/v1/messages"):
        error = {"type": "error", "error": {"type": "api_error", "message": message}}
        event = b"event: error\ndata: " + orjson.dumps(error) + b"\n\n"
    else:
        error = {"error": {"message": message, "type": "upstream_error", "code": "stream_broken"}}
        event = b"data: " + orjson.dumps(error) + b"\n\n"
    with contextlib.suppress(Exception):
        await send({"type": "http.response.body", "body": event})
