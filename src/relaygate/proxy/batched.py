"""Batch requests on the proxy's own path: one request of a batch goes through the same
routing, access checks, failover, rate limits, budgets and accounting as a live one,
but outside the live path's capacity (it takes no slot of ``max_concurrent_requests``
nor of its key's concurrency) and at most ``batch_concurrency`` at once per endpoint
(:class:`EndpointSlots`). Its answer is gathered whole (:class:`Gathered`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import orjson

from relaygate.errors import Conflict
from relaygate.health import parse_retry_after
from relaygate.proxy.asgi import Message, Scope

WITHDRAWN = "batch_withdrawn"
"""The error code of a batch request withdrawn before it was sent (its batch was
cancelled or expired while it waited for a slot)."""


class EndpointSlots:
    """How many batch requests each endpoint is sent at once: ``limits`` per endpoint id,
    ``default`` for the others. :meth:`slot` waits for one; a request of a batch in
    ``withdrawn`` (cancelled or expired meanwhile) stops waiting."""

    def __init__(self, default: int) -> None:
        self.default = default
        self.limits: dict[int, int] = {}
        self.withdrawn: frozenset[str] = frozenset()
        self._used: dict[int, int] = {}
        self._freed = asyncio.Condition()

    def limit(self, endpoint_id: int) -> int:
        return self.limits.get(endpoint_id, self.default)

    def busy(self, endpoint_id: int) -> int:
        """Batch requests at ``endpoint_id`` now."""
        return self._used.get(endpoint_id, 0)

    async def set_limits(self, limits: dict[int, int]) -> None:
        """Take new per-endpoint ``limits`` (waiters re-check theirs)."""
        self.limits = limits
        async with self._freed:
            self._freed.notify_all()

    async def withdraw(self, batch_ids: frozenset[str]) -> None:
        """Stop the requests of ``batch_ids`` that wait for a slot (and any later one)."""
        if batch_ids == self.withdrawn:
            return
        self.withdrawn = batch_ids
        async with self._freed:
            self._freed.notify_all()

    @asynccontextmanager
    async def slot(self, endpoint_id: int, batch_id: str) -> AsyncIterator[None]:
        """Hold one of ``endpoint_id``'s slots for the block, waiting for one. Raises
        :class:`Conflict` (code :data:`WITHDRAWN`) when the batch ``batch_id`` is
        withdrawn before one is free."""
        async with self._freed:
            await self._freed.wait_for(
                lambda: (
                    batch_id in self.withdrawn or self.busy(endpoint_id) < self.limit(endpoint_id)
                )
            )
            if batch_id in self.withdrawn:
                raise Conflict(
                    "the batch was cancelled or expired before this request was sent",
                    code=WITHDRAWN,
                )
            self._used[endpoint_id] = self.busy(endpoint_id) + 1
        try:
            yield
        finally:
            self._used[endpoint_id] -= 1
            async with self._freed:
                self._freed.notify_all()


@dataclass(frozen=True, slots=True)
class Ticket:
    """What a batch request carries through the proxy: the per-endpoint ``slots`` and
    the id of its batch."""

    slots: EndpointSlots
    batch_id: str


@dataclass(frozen=True, slots=True)
class Answer:
    """What one batch request got: the ``status``, the response ``body`` (empty when it
    was larger than the bound), the ``request_id`` it went by, whether it was ``sent``
    and refused ``withdrawn`` before it was, the endpoint's
    ``retry_after`` in seconds (None: not said), and its tokens and cost (None: not
    reported)."""

    status: int
    body: bytes
    request_id: str
    sent: bool
    """Whether an endpoint answered (else the answer is relaygate's own refusal)."""
    withdrawn: bool
    retry_after: float | None
    code: str | None
    """The error code of an error answer."""
    prompt_tokens: int | None
    completion_tokens: int | None
    cost: float | None
    too_large: bool = False


def batch_scope(path: str, body: bytes, request_id: str) -> Scope:
    """The ASGI scope of a batch request: ``POST path`` with the JSON ``body``."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()),
        ],
    }


class Gathered:
    """The ``receive`` and ``send`` of a batch request: ``receive`` gives the body once
    and then waits (the client never leaves); ``send`` keeps the status, the
    ``Retry-After`` and up to ``limit`` bytes of the answer."""

    def __init__(self, body: bytes, limit: int) -> None:
        self._body: bytes | None = body
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self.status = 0
        self.retry_after: float | None = None
        self.too_large = False

    async def receive(self) -> Message:
        body, self._body = self._body, None
        if body is not None:
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Future()  # never done: the waiter is cancelled when the request ends
        raise AssertionError("unreachable")

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            for name, value in message.get("headers", ()):
                if name.lower() == b"retry-after":
                    self.retry_after = parse_retry_after(value.decode("latin-1"))
            return
        chunk = message.get("body", b"")
        if not chunk or self.too_large:
            return
        self._size += len(chunk)
        if self._size > self._limit:
            self.too_large = True
            self._parts.clear()
            return
        self._parts.append(chunk)

    @property
    def body(self) -> bytes:
        return b"".join(self._parts)

    def code(self) -> str | None:
        """The ``code`` of an OpenAI-shaped error answer (None for any other)."""
        if self.status < 400 or b'"code"' not in self.body:
            return None
        try:
            error = orjson.loads(self.body).get("error")
        except (orjson.JSONDecodeError, AttributeError):
            return None
        code = error.get("code") if isinstance(error, dict) else None
        return code if isinstance(code, str) else None

    @property
    def withdrawn(self) -> bool:
        """Whether the answer is the refusal of a request withdrawn before it was sent."""
        return self.status == Conflict.status and self.code() == WITHDRAWN
