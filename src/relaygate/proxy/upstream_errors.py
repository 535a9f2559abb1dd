"""An endpoint's error answer on its way to the client: passed through when it is a
proper OpenAI or Anthropic error, otherwise (empty, not JSON, or JSON of another shape
such as FastAPI's ``{"detail": "Not Found"}``) wrapped in an error of the client's API
that names the endpoint and its status, so that an SDK user learns which endpoint
failed and how."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson

from relaygate.errors import error_body
from relaygate.translate import messages_stream
from relaygate.upstream_client import Answer

MAX_ERROR_BYTES = 64 * 1024
"""The most of an error answer read to judge it; a longer one is wrapped (its start
quoted)."""
_EXCERPT_CHARS = 200
_HIDDEN = "…".encode()


def readable(response: Answer) -> bool:
    """Whether relaygate can read ``response``'s body as sent (not content-encoded: the
    HTTP client leaves bodies compressed, and an encoded error passes as it came)."""
    return response.headers.get("content-encoding", "identity").lower() in ("", "identity")


async def error_answer(
    response: Answer,
    endpoint: str,
    status: int,
    *,
    anthropic: bool,
    secrets: Iterable[tuple[bytes, bytes]] = (),
) -> tuple[bytes, bool]:
    """The error answer ``response`` (``status``, 4xx or 5xx, from the endpoint named
    ``endpoint``) stands for, read whole (bounded), and whether it is the endpoint's own:
    a proper OpenAI or Anthropic error (:func:`is_proper`) passes as it came; anything
    else is :func:`wrapped`, in Anthropic's shape for an ``anthropic`` (Messages) client.
    Either way the values of the auth headers the request was sent with (``secrets``,
    as (name, value) pairs) are :func:`masked` first: an upstream may echo the provider
    key, which no client may see. Raises what reading raises."""
    body, whole = await read_error(response)
    body = masked(body, secrets)
    if whole and is_proper(body):
        return body, True
    return wrapped(endpoint, status, body, whole, anthropic=anthropic), False


def masked(body: bytes, secrets: Iterable[tuple[bytes, bytes]]) -> bytes:
    """``body`` with each header value of ``secrets``, and the key after its scheme
    (``Bearer sk-…``), replaced by ``…``, as the sync's error messages are
    (:func:`relaygate.providers.base.mask`)."""
    for _, value in secrets:
        for secret in sorted({value, value.rpartition(b" ")[2]}, key=len, reverse=True):
            if len(secret) >= 4:
                body = body.replace(secret, _HIDDEN)
    return body


async def once(body: bytes) -> AsyncIterator[bytes]:
    """``body`` as an answer's only chunk."""
    yield body


async def read_error(response: Answer) -> tuple[bytes, bool]:
    """Read ``response``'s body, up to :data:`MAX_ERROR_BYTES`; returns the bytes read
    and whether they are the whole body. Raises what reading raises (the client's errors,
    or the caller's timeout)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        parts.append(chunk)
        size += len(chunk)
        if size > MAX_ERROR_BYTES:
            return b"".join(parts)[:MAX_ERROR_BYTES], False
    return b"".join(parts), True


def is_proper(body: bytes) -> bool:
    """Whether ``body`` is an error object an OpenAI or Anthropic SDK reads: JSON with an
    ``error`` object holding a string ``message`` (OpenAI's ``{"error": {"message", …}}``,
    Anthropic's ``{"type": "error", "error": {"type", "message"}}``; Gemini's OpenAI
    surface answers the same)."""
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    if isinstance(parsed, list) and len(parsed) == 1:  # Gemini wraps its error in a list
        parsed = parsed[0]
    if not isinstance(parsed, dict):
        return False
    error = parsed.get("error")
    return isinstance(error, dict) and isinstance(error.get("message"), str)


def wrapped(endpoint: str, status: int, body: bytes, whole: bool, *, anthropic: bool) -> bytes:
    """An error answer naming ``endpoint`` and its HTTP ``status``, quoting the start of
    the ``body`` it sent (``whole``: all of it was read), as Anthropic's error object
    (``anthropic``: a Messages client) or OpenAI's (``type`` ``upstream_error``, ``code``
    ``upstream_http_<status>``)."""
    message = f"endpoint {endpoint!r} answered HTTP {status} {_described(body, whole)}"
    if anthropic:
        return orjson.dumps(messages_stream.error(status, {"error": {"message": message}}))
    return error_body(message, "upstream_error", f"upstream_http_{status}")


def _described(body: bytes, whole: bool) -> str:
    """What the endpoint's error body was, for a message: nothing, or its start."""
    text = " ".join(body.decode("utf-8", "replace").split())
    if not text:
        return "with an empty body"
    cut = len(text) > _EXCERPT_CHARS or not whole
    return f"without an error object: {text[:_EXCERPT_CHARS]}{'…' if cut else ''}"
