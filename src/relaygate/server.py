"""The HTTP server's protocol, with the request head bounded on the socket.

uvicorn's httptools protocol hands each header to the application only once the whole
head is in, and puts no bound on it: a 200 MB header is read before anything can
refuse it. :class:`BoundedHttpToolsProtocol` counts the request line and
headers as the parser meets them (``llhttp`` passes slices of each read, so nothing
more is held) and answers 431 the moment they pass ``max_head_bytes``; and that
closes a connection whose request head is not complete ``head_timeout`` seconds
after it began (a client trickling a header a byte at a time, or opening a
connection and sending nothing), with 408.

It relies on uvicorn's ``HttpToolsProtocol`` parser callbacks (``on_url``,
``on_header``, ``on_headers_complete``, ``send_400_response``), stable since uvicorn
0.14; the tests exercise it on real sockets.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from relaygate.errors import ConfigError, error_body


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head past the limit."""


class ServerConfig(uvicorn.Config):
    """uvicorn's configuration plus the bounds :class:`BoundedHttpToolsProtocol` reads:
    ``max_head_bytes`` (request line and headers) and ``head_timeout`` (seconds)."""

    def __init__(
        self, app: Any, *, max_head_bytes: int, head_timeout: float, **options: Any
    ) -> None:
        super().__init__(app, http=BoundedHttpToolsProtocol, **options)
        self.max_head_bytes = max_head_bytes
        self.head_timeout = head_timeout


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol answering 431 ``request_header_fields_too_large`` once
    a request line and headers (each header counted as ``name: value\r\n``) pass the
    config's ``max_head_bytes``, and 408 ``request_timeout`` when a request head takes
    more than its ``head_timeout`` seconds; both close the connection. Errors are
    OpenAI-shaped JSON."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._max_head = int(getattr(config, "max_head_bytes", 64 * 1024))
        self._head_timeout = float(getattr(config, "head_timeout", 10.0))
        self._head_bytes = 0
        self._head_exceeded = False
        self._head_timer: asyncio.TimerHandle | None = None
        self.url = b""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        if self._head_timer is None:
            # A next request's head is timed from its first byte; the keep-alive timeout
            # covers the idle wait before it.
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp may call back with a header in pieces; each piece counts.
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if not self._head_exceeded:
            super().send_400_response(msg)
            return
        message = f"request line and headers are larger than the limit of {self._max_head} bytes"
        self.transport.write(
            _answer(
                b"431 Request Header Fields Too Large", message, "request_header_fields_too_large"
            )
        )
        self.transport.close()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self._max_head:
            self._head_exceeded = True
            raise _HeadTooLarge

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self._head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            if self._head_bytes or self.url:
                message = (
                    f"the request line and headers did not arrive within {self._head_timeout:g} s"
                )
                self.transport.write(_answer(b"408 Request Timeout", message, "request_timeout"))
            self.transport.close()


def _answer(status: bytes, message: str, code: str) -> bytes:
    """A whole HTTP/1.1 response with an OpenAI-shaped error body, closing the connection."""
    body = error_body(message, "invalid_request_error", code)
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (IPv6 when ``host`` has a colon), made
    before the server starts so that a port in use is one line, not a traceback after
    "startup complete". Raises :class:`ConfigError` saying what to fix."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = (
            "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
        )
        raise ConfigError(
            f"port {port} on {host} {reason}: stop what listens there or set "
            "RELAYGATE_PORT (or --port) to another port"
        ) from None
    sock.set_inheritable(True)
    return sock
