"""Real servers on loopback for tests: any ASGI app under uvicorn, in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _PromptServer(uvicorn.Server):
    """uvicorn's server, stopping as soon as it is told to: uvicorn's own looks at
    ``should_exit`` every 0.1 s and, stopping, sleeps 0.1 s and then polls its
    connections every 0.1 s; with a gateway and its upstreams stopped after every test
    that was about half of a test's teardown. Here :meth:`wake` ends the wait at once
    and the connections are polled every few milliseconds; what is done in between is
    uvicorn's (connections told to finish their response and close, the tasks awaited
    within ``timeout_graceful_shutdown``, then the lifespan's shutdown)."""

    POLL = 0.005

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._woken: asyncio.Event | None = None

    def wake(self, loop: asyncio.AbstractEventLoop) -> None:
        """Set ``should_exit`` and wake :meth:`main_loop` (from any thread)."""
        self.should_exit = True
        woken = self._woken
        if woken is not None:
            loop.call_soon_threadsafe(woken.set)

    async def main_loop(self) -> None:
        self._woken = woken = asyncio.Event()
        counter = 0  # on_tick updates the Date header at every tenth count
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), 1.0)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        state = self.server_state
        for connection in list(state.connections):
            connection.shutdown()
        try:
            async with asyncio.timeout(self.config.timeout_graceful_shutdown):
                while state.connections or state.tasks:
                    await asyncio.sleep(self.POLL)
                for server in self.servers:
                    await server.wait_closed()
        except TimeoutError:
            for task in state.tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        if not self.force_exit:
            await self.lifespan.shutdown()


class ServerThread:
    """Runs ``app`` with uvicorn on 127.0.0.1 in a background thread until :meth:`stop`;
    ``options`` go to ``uvicorn.Config`` (e.g. ``http="h11"``)."""

    def __init__(self, app: Any, port: int | None = None, **options: Any):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
            **options,
        )
        self.server = _PromptServer(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve())
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.loop is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                self.server.wake(self.loop)
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
