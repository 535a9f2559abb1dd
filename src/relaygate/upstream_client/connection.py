"""One connection of the hot path's upstream client (:mod:`relaygate.upstream_client`):
an asyncio protocol that writes nothing itself but reads the answer to the request
sent on it with httptools' parser (llhttp, Node.js's), hands the body on as it comes
(:class:`Answer`, reading paused while 256 KiB wait), and says whether the connection
may serve another request (RFC 9112 §9.3).

Bounds on an answer's head, as aiohttp's client had them: a header line of at most
``max_field`` bytes, at most ``max_headers`` headers, and 1 MiB in all. Its failures
are aiohttp's exceptions in aiohttp's wording (:mod:`relaygate.upstream_client.errors`).

References: RFC 9112 (HTTP/1.1), https://github.com/MagicStack/httptools."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import cast

import aiohttp
import httptools
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from relaygate.upstream_client.errors import (
    BadAnswer,
    broken_body,
    disconnected,
    request_info,
)

_READ_HIGH = 256 * 1024
"""Bytes of an answer buffered before the connection stops reading (aiohttp's
``read_bufsize``)."""
_MAX_HEAD = 1024 * 1024
"""The most bytes an answer's head may take, whatever its lines."""


class Answer:
    """An answer whose head came: ``status``, ``headers``, ``raw_headers`` (as sent),
    ``content_length`` (None: not given) and its body, read with
    ``answer.content.iter_any()`` (the shape of aiohttp's ``ClientResponse``)."""

    __slots__ = (
        "_chunks",
        "_conn",
        "_error",
        "_headers",
        "_size",
        "_waiter",
        "complete",
        "content_length",
        "raw_headers",
        "status",
    )

    def __init__(self, conn: Connection, status: int, raw: list[tuple[bytes, bytes]]) -> None:
        self._conn = conn
        self.status = status
        self.raw_headers = tuple(raw)
        self.content_length: int | None = None
        self.complete = False
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._headers: CIMultiDictProxy[str] | None = None
        for name, value in raw:
            if name.lower() == b"content-length" and value.strip().isdigit():
                self.content_length = int(value)

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The answer's headers, decoded (latin-1); made once, when first asked."""
        if self._headers is None:
            self._headers = CIMultiDictProxy(
                CIMultiDict((n.decode("latin-1"), v.decode("latin-1")) for n, v in self.raw_headers)
            )
        return self._headers

    @property
    def content(self) -> Answer:
        return self

    def iter_any(self) -> Answer:
        """The body's bytes as they come, each step all that is buffered."""
        return self

    def __aiter__(self) -> Answer:
        return self

    async def __anext__(self) -> bytes:
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self.complete:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        if self._size >= _READ_HIGH:
            self._conn.resume()
        self._size = 0
        return data

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size >= _READ_HIGH:
            self._conn.pause()
        self._wake()

    def _end(self, error: BaseException | None) -> None:
        if error is None:
            self.complete = True
        else:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Connection(asyncio.Protocol):
    """One connection to an endpoint: sends a request, parses its answer (httptools'
    callbacks ``on_header`` to ``on_message_complete``)."""

    def __init__(
        self,
        key: tuple[str, int, bool],
        forget: Callable[[Connection], None],
        max_field: int,
        max_headers: int,
    ) -> None:
        self.key = key
        self._forget = forget
        self._max_field = max_field
        self._max_headers = max_headers
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._url: URL | None = None
        self._method = ""
        self._raw: list[tuple[bytes, bytes]] = []
        self._head = 0
        self._head_done = False
        self._done = False
        self._body = 0
        self._chunked = False
        self._head_waiter: asyncio.Future[Answer] | None = None
        self.answer: Answer | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._forget(self)
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)
        if self._url is None:
            return  # idle: nothing was asked
        answer = self.answer
        if not self._head_done:
            self._fail(disconnected(exc))
        elif answer is not None and not answer.complete:
            length = answer.content_length
            if length is None and not self._chunked and exc is None:
                answer._end(None)  # a body read until the connection closes, and it did
            else:
                answer._end(
                    broken_body(chunked=self._chunked, got=self._body, length=length, exc=exc)
                )

    def eof_received(self) -> bool:
        return False  # close: an HTTP/1.1 answer never goes on after the server's end

    def pause_writing(self) -> None:
        self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._url is None or self._done:
            # Bytes nobody asked for: the connection cannot be trusted any more.
            self.reusable = False
            self.close()
            return
        if not self._head_done:
            self._head += len(data)
            if self._head > _MAX_HEAD:
                self._bad(f"Got more than {_MAX_HEAD} bytes of headers")
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._bad(str(cause) if isinstance(cause, BadAnswer) else str(exc))
        except httptools.HttpParserUpgrade:
            self._bad("Upgrade refused: relaygate's upstream client speaks only HTTP/1.1")
        except httptools.HttpParserError as exc:
            self._bad(str(exc) or type(exc).__name__)

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self._done:
            # A second answer to one request: nothing after it on this connection can
            # be matched to a request, so it is never used again.
            self.reusable = False
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._done:
            return
        limit = self._max_field
        if len(name) + len(value) > limit:
            raise BadAnswer(f"Got more than {limit} bytes when reading: {name[:100]!r}")
        if len(self._raw) >= self._max_headers:
            raise BadAnswer("Too many headers received")
        self._raw.append((name, value))

    def on_headers_complete(self) -> None:
        if self._done:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._raw = []  # an interim answer (100 Continue): the final one follows
            return
        self._head_done = True
        self._body = 0
        self._chunked = any(
            n.lower() == b"transfer-encoding" and b"chunked" in v.lower() for n, v in self._raw
        )
        self.answer = Answer(self, status, self._raw)
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(self.answer)

    def on_body(self, body: bytes) -> None:
        if self._done:
            return
        self._body += len(body)
        if self.answer is not None:
            self.answer._feed(body)

    def on_message_complete(self) -> None:
        if not self._head_done or self._done:
            return  # an interim answer's end, or one after the answer
        self._done = True
        self.reusable = self._parser.should_keep_alive()
        if self.answer is not None:
            self.answer._end(None)

    # the connection's use
    def begin(self, method: str, url: URL) -> asyncio.Future[Answer]:
        """Expect the answer to a request of ``method`` to ``url``; the future resolves
        with its head."""
        self._method, self._url = method, url
        self._raw, self._head, self._head_done, self.answer = [], 0, False, None
        self._done = False
        self.reusable = False
        self._head_waiter = asyncio.get_running_loop().create_future()
        return self._head_waiter

    async def drain(self) -> None:
        """Wait until the transport's write buffer is low again, or the connection ends."""
        drained = self._drained
        if drained is not None:
            await drained
        if self.closed:
            raise disconnected(None)

    def finish(self) -> None:
        """The exchange ended: ready for another request, or closed."""
        self._url = None
        self._head_waiter = None
        self.answer = None
        self._parser = httptools.HttpResponseParser(self)

    @property
    def paused(self) -> bool:
        """Whether reading is paused (an answer's reader fell behind)."""
        return self._paused

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _bad(self, message: str) -> None:
        assert self._url is not None
        self._fail(
            aiohttp.ClientResponseError(
                request_info(self._method, self._url), (), status=400, message=message
            )
        )
        self.close()

    def _fail(self, error: BaseException) -> None:
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        elif self.answer is not None and not self.answer.complete:
            self.answer._end(error)
