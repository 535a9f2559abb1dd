"""The ASGI types the proxy and the app around it are written against, and answering
with JSON or an error over them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from relaygate.bodies import answer_draining
from relaygate.errors import RelaygateError, render

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON_HEADERS = [(b"content-type", b"application/json")]


async def send_json(
    send: Send, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    """Answer ``status`` with the JSON ``body`` (already encoded) and ``headers``."""
    out = [*_JSON_HEADERS, *headers] if headers else _JSON_HEADERS
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send, exc: RelaygateError, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    """Answer with ``exc`` as an OpenAI-shaped error, with the headers it calls for
    (``Retry-After``, ``Allow``) and ``extra`` ones."""
    status, body = render(exc)
    await send_json(send, status, body, exc.headers + extra if extra else exc.headers)


async def send_error_draining(
    send: Send,
    receive: Receive,
    exc: RelaygateError,
    extra: tuple[tuple[bytes, bytes], ...],
    seconds: float,
) -> None:
    """:func:`send_error` for a request whose body is still unread (see
    :func:`relaygate.bodies.answer_draining`)."""
    status, body = render(exc)
    headers = [*_JSON_HEADERS, *exc.headers, *extra]
    start = {"type": "http.response.start", "status": status, "headers": headers}
    await answer_draining(send, receive, start, body, seconds)


def has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the request declared a body (a content-length above 0, or chunked)."""
    for name, value in headers:
        if (name == b"content-length" and value not in (b"0", b"")) or name == b"transfer-encoding":
            return True
    return False
