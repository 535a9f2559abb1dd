"""Waiting for what relaygate writes off the request path (usage, budget settlement)
instead of sleeping a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(read: Callable[[], T], done: Callable[[T], bool], seconds: float = 5.0) -> T:
    """``read()`` once ``done`` holds of it (written off the request path), or the last
    value after ``seconds``."""
    deadline = time.monotonic() + seconds
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = read()
    return value
