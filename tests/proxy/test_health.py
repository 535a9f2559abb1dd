"""Passive health on its own, with a clock the test moves: cool-downs, growth, Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from relaygate.health import Health, parse_retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cooldown_starts_at_threshold_and_doubles_until_a_success() -> None:
    clock = Clock()
    health = Health(threshold=3, base=5, maximum=30, clock=clock)
    for _ in range(2):
        health.failed(1, "HTTP 500")
    assert health.usable(1) and health.state(1).state == "failing"
    health.failed(1, "HTTP 500")
    assert not health.usable(1) and health.state(1).state == "cooling_down"
    lengths = []
    for _ in range(4):  # each failed retry after a cool-down doubles the next one
        start = clock.now
        while not health.usable(1):
            clock.now += 0.5
        lengths.append(clock.now - start)
        health.failed(1, "HTTP 500")
    assert lengths == [5, 10, 20, 30]  # capped at the maximum
    health.succeeded(1)
    assert health.state(1).state == "healthy" and health.usable(1)
    health.failed(1, "HTTP 500")
    assert health.usable(1)  # the count started over


def test_retry_after_cools_down_at_once_for_that_long() -> None:
    clock = Clock()
    health = Health(threshold=3, base=5, maximum=300, clock=clock)
    health.failed(2, "HTTP 429", retry_after=42)
    assert not health.usable(2)
    assert health.retry_in([2]) == 42
    clock.now += 41.9
    assert not health.usable(2)
    clock.now += 0.2
    assert health.usable(2)
    health.failed(3, "HTTP 503", retry_after=10_000)
    assert health.retry_in([3]) == 300  # a Retry-After is honoured up to the maximum
    assert health.retry_in([3, 4]) == 0  # endpoint 4 has no failures


def test_partition_keeps_order_and_skips_cooling_endpoints() -> None:
    health = Health(threshold=1, clock=Clock())
    health.failed(2, "refused")
    assert health.partition((1, 2, 3, 2), lambda e: e) == [1, 3]


def test_retry_after_header_forms() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0
    for bad in (None, "", "soon", "-5", "1.5"):
        assert parse_retry_after(bad) is None
