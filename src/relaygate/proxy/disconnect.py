"""Watching for the client leaving while its request is upstream, so that the request
is dropped there too (its connection freed, the provider's generation stopped)."""

from __future__ import annotations

import asyncio
from typing import Any

from relaygate.proxy.accounting import Exchange

Receive = Any

WATCH_AFTER = 0.05
"""Seconds a request runs before its client is watched: most JSON answers are out
sooner, and a timer is far cheaper to set and cancel than a task is to run."""


class DisconnectWatch:
    """Cancels ``task`` (the request's upstream work) when its client goes away, unless
    the answer was already whole (``state.finished``). Watching starts ``after`` seconds
    (a timer until then, no task): a client gone earlier is noticed then, as ASGI's
    ``receive`` still reports the disconnect. Use :meth:`start`, then :meth:`stop` in a
    ``finally``; ``left`` says whether the client's leaving cancelled the task."""

    __slots__ = ("_handle", "_receive", "_state", "_task", "_watcher", "left")

    def __init__(self, receive: Receive, state: Exchange, task: asyncio.Task[Any] | None) -> None:
        self._receive = receive
        self._state = state
        self._task = task
        self._handle: asyncio.TimerHandle | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.left = False

    def start(self, after: float = WATCH_AFTER) -> None:
        """Begin watching ``after`` seconds from now."""
        self._handle = asyncio.get_running_loop().call_later(after, self._watch)

    def stop(self) -> None:
        """Stop watching (the request is over)."""
        if self._handle is not None:
            self._handle.cancel()
        if self._watcher is not None:
            self._watcher.cancel()

    def _watch(self) -> None:
        self._handle = None
        if not self._state.finished:
            self._watcher = asyncio.create_task(self._wait())

    async def _wait(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                if not self._state.finished and self._task is not None:
                    self.left = True
                    self._task.cancel()
                return
