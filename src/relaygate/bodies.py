"""Request bodies bounded in size and in time, on every route.

The proxy reads its bodies itself (:func:`relaygate.proxy.body.read_body`); the admin
API, the console and the ops routes read theirs through FastAPI, which would buffer a
body of any size for as long as a client takes to send it. :class:`BoundedReceive`
wraps such a request's ASGI ``receive``: a declared ``content-length`` over the limit
is refused before a byte is read, a body that grows past it as it arrives is refused
at that chunk, and a body that is not whole ``timeout`` seconds after its first read
is refused with 408; :class:`GuardedSend` answers the refusal in place of whatever
the app made of a body cut short.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

from relaygate.errors import PayloadTooLarge, RelaygateError, RequestTimeout, render

Receive = Any
Message = MutableMapping[str, Any]


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The request's ``content-length`` (None when absent or not a number)."""
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def too_large(limit: int, *, ended: bool = False) -> PayloadTooLarge:
    """The 413 for a body over ``limit`` bytes; ``ended``: its last part was read."""
    error = PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
    error.body_ended = ended
    return error


def timed_out(timeout: float) -> RequestTimeout:
    return RequestTimeout(f"the request body did not arrive within {timeout:g} s")


class BoundedReceive:
    """An ASGI ``receive`` that lets at most ``limit`` body bytes through, within
    ``timeout`` seconds from its first call. Past either it records the error to answer
    in ``refusal`` and tells the app the client left (so the app stops reading and its
    own answer is dropped by :class:`GuardedSend`). ``whole`` says whether the body was
    read to its end."""

    __slots__ = ("_deadline", "_limit", "_size", "_timeout", "raw", "refusal", "whole")

    def __init__(
        self, receive: Receive, headers: list[tuple[bytes, bytes]], limit: int, timeout: float
    ) -> None:
        self.raw = receive
        """The server's own ``receive``."""
        self._limit = limit
        self._timeout = timeout
        self._deadline: float | None = None
        self._size = 0
        self.refusal: RelaygateError | None = None
        declared = declared_length(headers)
        if declared is not None and declared > limit:
            self.refusal = too_large(limit)  # refused before a byte is read
        self.whole = not declared and not any(name == b"transfer-encoding" for name, _ in headers)

    async def __call__(self) -> Message:
        if self.refusal is not None:
            return {"type": "http.disconnect"}
        if self.whole:
            message: Message = await self.raw()
            return message
        loop = asyncio.get_running_loop()
        if self._deadline is None:
            self._deadline = loop.time() + self._timeout
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self.raw()
        except TimeoutError:
            self.refusal = timed_out(self._timeout)
            return {"type": "http.disconnect"}
        if message["type"] != "http.request":
            return message
        self._size += len(message.get("body", b""))
        if not message.get("more_body", False):
            self.whole = True  # nothing is left to drain, even when refused
        if self._size > self._limit:
            self.refusal = too_large(self._limit)
            return {"type": "http.disconnect"}
        return message


async def drain(receive: Receive, seconds: float) -> None:
    """Read and drop the rest of a request body for up to ``seconds`` (until its end or
    the client's disconnect)."""
    if seconds <= 0:
        return
    try:
        async with asyncio.timeout(seconds):
            while True:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
    except TimeoutError:
        return


async def answer_draining(
    send: Any, receive: Receive, start: Message, body: bytes, seconds: float
) -> None:
    """Send a whole answer (``start``, then ``body``) to a request whose body is still
    unread: the answer goes out at once, but its end waits while the rest of the body is
    read and dropped, for up to ``seconds``. A client that writes its whole body before
    reading (urllib, many HTTP/1.1 clients) then reads the answer, where closing on
    unread data would have reset the connection under it."""
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": True})
    await drain(receive, seconds)
    await send({"type": "http.response.body", "body": b""})


class GuardedSend:
    """The ``send`` of a request read through ``body`` (a :class:`BoundedReceive`): once
    ``body`` refused, the app's own answer (its error about a body it could not read) is
    dropped, and :meth:`finish` answers the refusal instead."""

    __slots__ = ("_body", "_send", "started")

    def __init__(self, send: Any, body: BoundedReceive) -> None:
        self._send = send
        self._body = body
        self.started = False

    async def __call__(self, message: Message) -> None:
        if self._body.refusal is not None and not self.started:
            return
        self.started = True
        await self._send(message)

    async def finish(self, seconds: float) -> None:
        """Answer the refusal, if any and nothing went out yet, draining the body."""
        refusal = self._body.refusal
        if refusal is None or self.started:
            return
        status, body = render(refusal)
        headers = [(b"content-type", b"application/json"), *refusal.headers]
        start = {"type": "http.response.start", "status": status, "headers": headers}
        # A body read to its end has nothing left to drop: waiting for more would hold
        # the answer for ``seconds``.
        drain = 0.0 if self._body.whole else seconds
        await answer_draining(self._send, self._body.raw, start, body, drain)
