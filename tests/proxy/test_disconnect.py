"""Watching for the client leaving (relaygate.proxy.disconnect): a timer first, a task
reading ASGI's receive only once the request has run a while."""

from __future__ import annotations

import asyncio
from typing import Any

from relaygate.proxy.accounting import Exchange
from relaygate.proxy.disconnect import DisconnectWatch


class Client:
    """ASGI's receive as a server gives it once the body was read: it blocks until the
    client leaves, then says so."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self.reads = 0

    async def receive(self) -> dict[str, Any]:
        self.reads += 1
        await self.gone.wait()
        return {"type": "http.disconnect"}


async def _upstream_work(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "answered"


def test_quick_request_never_reads_receive() -> None:
    """A request over before the watch starts costs a timer: receive is never called."""

    async def main() -> int:
        client = Client()
        watch = DisconnectWatch(client.receive, Exchange(0.0, "r"), asyncio.current_task())
        watch.start(after=0.05)
        await _upstream_work(0.0)
        watch.stop()
        await asyncio.sleep(0.1)  # the timer would have fired by now
        return client.reads

    assert asyncio.run(main()) == 0


def test_client_gone_early_cancels_once_watched() -> None:
    """A client that left before the watch started is noticed when it starts, and the
    request's upstream work is cancelled."""

    async def main() -> tuple[bool, bool]:
        client = Client()
        client.gone.set()  # left at once
        state = Exchange(0.0, "r")
        work = asyncio.create_task(_upstream_work(10))
        watch = DisconnectWatch(client.receive, state, work)
        watch.start(after=0.02)
        try:
            await asyncio.wait_for(work, 5)
        except asyncio.CancelledError:
            return watch.left, True
        finally:
            watch.stop()
        return watch.left, False

    assert asyncio.run(main()) == (True, True)


def test_finished_answer_is_not_cancelled() -> None:
    """A client that leaves once its answer is whole cancels nothing."""

    async def main() -> tuple[bool, str]:
        client = Client()
        state = Exchange(0.0, "r")
        work = asyncio.create_task(_upstream_work(0.1))
        watch = DisconnectWatch(client.receive, state, work)
        watch.start(after=0.0)
        await asyncio.sleep(0.02)
        state.finished = True
        client.gone.set()
        result = await work
        watch.stop()
        return watch.left, result

    assert asyncio.run(main()) == (False, "answered")
