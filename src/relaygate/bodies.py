"""Request bodies bounded in size and in time, on every route.

The proxy reads its bodies itself (:func:`relaygate.proxy.body.read_body`); the admin
API, the console and the ops routes read theirs through FastAPI, which would buffer a
body of any size for as long as a client takes to send it. :class:`BoundedReceive`
wraps such a request's ASGI ``receive``: a declared ``content-length`` over the limit
is refused before a byte is read, a body that grows past it as it arrives is refused
at that chunk, and a body that is not whole ``timeout`` seconds after its first read
is refused with 408. The errors are :class:`RelaygateError`\\ s, raised inside the
route, so the app's one error mapping answers them.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

from relaygate.errors import ClientDisconnected, PayloadTooLarge, RequestTimeout

Receive = Any
Message = MutableMapping[str, Any]


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The request's ``content-length`` (None when absent or not a number)."""
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")


def timed_out(timeout: float) -> RequestTimeout:
    return RequestTimeout(f"the request body did not arrive within {timeout:g} s")


class BoundedReceive:
    """An ASGI ``receive`` that lets at most ``limit`` body bytes through, within
    ``timeout`` seconds from its first call; ``whole`` says whether the body was read to
    its end (so the caller knows whether to drain the rest after answering)."""

    __slots__ = ("_deadline", "_limit", "_refuse", "_size", "_timeout", "raw", "whole")

    def __init__(
        self, receive: Receive, headers: list[tuple[bytes, bytes]], limit: int, timeout: float
    ) -> None:
        self.raw = receive
        """The server's own ``receive``."""
        self._limit = limit
        self._timeout = timeout
        self._deadline: float | None = None
        declared = declared_length(headers)
        # A declared length over the limit is refused at the first read, before a byte.
        self._refuse = declared is not None and declared > limit
        self._size = 0
        self.whole = not declared and not any(name == b"transfer-encoding" for name, _ in headers)

    async def __call__(self) -> Message:
        if self.whole:
            message: Message = await self.raw()
            return message
        if self._refuse:
            raise too_large(self._limit)
        loop = asyncio.get_running_loop()
        if self._deadline is None:
            self._deadline = loop.time() + self._timeout
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self.raw()
        except TimeoutError:
            raise timed_out(self._timeout) from None
        if message["type"] != "http.request":
            return message
        self._size += len(message.get("body", b""))
        if self._size > self._limit:
            raise too_large(self._limit)
        if not message.get("more_body", False):
            self.whole = True
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
    except (TimeoutError, ClientDisconnected, PayloadTooLarge, RequestTimeout):
        return


class DrainingSend:
    """An ASGI ``send`` for a request whose body may be left unread (refused before it
    was read, e.g. 413): the answer goes out at once, but its end is held back while the
    rest of the body is read and dropped, for up to ``seconds``. A client that writes its
    whole body before reading (urllib, many HTTP/1.1 clients) then reads the answer,
    where closing on unread data would have reset the connection under it."""

    __slots__ = ("_body", "_seconds", "_send")

    def __init__(self, send: Any, body: BoundedReceive, seconds: float) -> None:
        self._send = send
        self._body = body
        self._seconds = seconds

    async def __call__(self, message: Message) -> None:
        if (
            message["type"] != "http.response.body"
            or message.get("more_body", False)
            or self._body.whole
        ):
            await self._send(message)
            return
        await self._send({**message, "more_body": True})
        await drain(self._body.raw, self._seconds)
        await self._send({"type": "http.response.body", "body": b""})
