"""The HTTP server's protocol, with the request head bounded on the socket.

uvicorn's httptools protocol hands each header to the application only once the whole
head is in, and puts no bound on it: a 200 MB header is read before anything can
refuse it (httptools itself keeps a header until its line ends).
:class:`BoundedHttpToolsProtocol` counts what arrives of a request head and answers
431 the moment it passes ``max_head_bytes``, so no more than the limit and one read
is ever held; and that
closes a connection whose request head is not complete ``head_timeout`` seconds
after it began (a client trickling a header a byte at a time, or opening a
connection and sending nothing), with 408.

It relies on uvicorn's ``HttpToolsProtocol`` (``data_received`` and the parser
callbacks ``on_message_begin``, ``on_headers_complete``, ``on_message_complete``),
stable since uvicorn 0.14; the tests exercise it on real sockets.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from relaygate.errors import ConfigError, error_body


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
    a request head (request line and headers) passes the config's ``max_head_bytes``, and
    408 ``request_timeout`` when a request head takes more than its ``head_timeout``
    seconds; both close the connection. Errors are OpenAI-shaped JSON."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._max_head = int(getattr(config, "max_head_bytes", 64 * 1024))
        self._head_timeout = float(getattr(config, "head_timeout", 10.0))
        self._head_bytes = 0
        self._head_done = False
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_done:
            super().data_received(data)
            return
        # httptools keeps a header's value until its line ends, so a head is bounded
        # here, by what has arrived of it: the parser never holds more than the limit
        # and one read.
        self._head_bytes += len(data)
        super().data_received(data)
        if (
            not self._head_done
            and self._head_bytes > self._max_head
            and not self.transport.is_closing()
        ):
            message = (
                f"request line and headers are larger than the limit of {self._max_head} bytes"
            )
            self.transport.write(
                _answer(
                    b"431 Request Header Fields Too Large",
                    message,
                    "request_header_fields_too_large",
                )
            )
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:
            # A next request's head is timed from its first byte; the keep-alive timeout
            # covers the idle wait before it.
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._head_done = True
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_done = False
        self._head_bytes = 0

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self._head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._head_done:
            return
        if self.cycle is None or self.cycle.response_complete:
            if self._head_bytes:
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
