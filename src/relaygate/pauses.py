"""Pauses of the background loops that end early when the server stops: every loop
sleeps through these, so a stop never waits out an interval."""

from __future__ import annotations

import asyncio
import contextlib


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Return after ``seconds``, or as soon as ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def wait_any(stop: asyncio.Event, wake: asyncio.Event, seconds: float | None) -> None:
    """Return after ``seconds`` (None: no limit), or as soon as ``stop`` or ``wake`` is
    set; neither event is cleared."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
