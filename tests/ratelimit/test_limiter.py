"""The rate limiter itself, on both backends: in this process, and in a real Redis."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from relaygate.errors import RateLimited
from relaygate.metrics import Metrics
from relaygate.ratelimit import UNLIMITED, RateLimiter, format_reset
from relaygate.snapshot import Principal, UserState
from tests.support.redis_store import REDIS_URL, UNREACHABLE_URL, keys_under, needs_redis

MakeLimiter = Callable[..., RateLimiter]
ABOUT_A_MINUTE = re.compile(r"1m0s|59(\.\d{1,3})?s")
"""A reset just after a window started (at most a few ms have passed)."""


def principal(
    key_id: int = 1,
    user_id: int = 1,
    *,
    key_rpm: int | None = None,
    key_tpm: int | None = None,
    user_rpm: int | None = None,
    user_tpm: int | None = None,
) -> Principal:
    return Principal(
        key_id, UserState(user_id, "user", user_rpm, user_tpm), None, None, key_rpm, key_tpm
    )


def header(pairs: tuple[tuple[bytes, bytes], ...], name: str) -> str:
    found = [value.decode() for key, value in pairs if key == name.encode()]
    assert len(found) == 1, (name, pairs)
    return found[0]


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
async def make_limiter(
    request: pytest.FixtureRequest, redis_prefix: str
) -> AsyncIterator[MakeLimiter]:
    """Builds limiters on one backend; on Redis they share the test's own prefix, as the
    replicas of one deployment do."""
    client = Redis.from_url(REDIS_URL) if request.param == "redis" and REDIS_URL else None

    def make(**options: object) -> RateLimiter:
        return RateLimiter(client, prefix=redis_prefix, **options)  # type: ignore[arg-type]

    yield make
    if client is not None:
        await client.aclose()


def test_reset_is_written_in_openai_duration_format() -> None:
    """Reset times read like OpenAI's: Go durations, rounded to the millisecond."""
    cases = {
        0: "0s",
        0.0004: "0s",
        0.012: "12ms",
        0.9994: "999ms",
        0.9996: "1s",
        1: "1s",
        6.5: "6.5s",
        59.3: "59.3s",
        59.999: "59.999s",
        60: "1m0s",
        61.25: "1m1.25s",
        360: "6m0s",
        3600: "1h0m0s",
        3723.5: "1h2m3.5s",
    }
    assert {seconds: format_reset(seconds) for seconds in cases} == cases


async def test_requests_are_admitted_up_to_the_limit(make_limiter: MakeLimiter) -> None:
    """Three requests pass a limit of 3 per minute, counting down; the fourth is refused
    with OpenAI's 429 shape and headers, and a refused request counts for nothing."""
    limiter = make_limiter()
    caller = principal(key_rpm=3)
    remaining = []
    for _ in range(3):
        admission = await limiter.admit(caller)
        assert admission.tokens is None
        assert admission.requests is not None and admission.requests.limit == 3
        assert 59 < admission.requests.reset <= 60
        remaining.append(header(admission.headers, "x-ratelimit-remaining-requests"))
    assert remaining == ["2", "1", "0"]
    for _ in range(2):
        with pytest.raises(RateLimited) as raised:
            await limiter.admit(caller)
        refused = raised.value
        assert (refused.status, refused.type, refused.code) == (
            429,
            "requests",
            "rate_limit_exceeded",
        )
        assert "this API key" in refused.message and "Limit 3, Used 3" in refused.message
        assert header(refused.headers, "retry-after") == "60"
        assert header(refused.headers, "x-ratelimit-limit-requests") == "3"
        assert header(refused.headers, "x-ratelimit-remaining-requests") == "0"
        assert ABOUT_A_MINUTE.fullmatch(header(refused.headers, "x-ratelimit-reset-requests"))
        assert not [name for name, _ in refused.headers if b"tokens" in name]


async def test_key_and_user_are_counted_together(make_limiter: MakeLimiter) -> None:
    """A request counts for its key and its user at once, and only when both admit it:
    the stricter limit refuses, and a request the key refuses costs the user nothing."""
    limiter = make_limiter()
    first = principal(1, 7, key_rpm=1, user_rpm=3)
    second = principal(2, 7, user_rpm=3)
    admission = await limiter.admit(first)
    assert admission.requests is not None
    assert (admission.requests.limit, admission.requests.remaining) == (1, 0)
    with pytest.raises(RateLimited) as raised:
        await limiter.admit(first)
    assert "this API key" in raised.value.message
    admission = await limiter.admit(second)
    assert admission.requests is not None
    assert (admission.requests.limit, admission.requests.remaining) == (3, 1)
    await limiter.admit(second)
    with pytest.raises(RateLimited) as raised:
        await limiter.admit(second)
    assert "your user" in raised.value.message
    assert header(raised.value.headers, "x-ratelimit-limit-requests") == "3"
    # Another user's key is counted apart.
    assert (await limiter.admit(principal(3, 8, user_rpm=3))).requests is not None


async def test_tokens_refuse_once_the_limit_is_reached(make_limiter: MakeLimiter) -> None:
    """Tokens counted after responses refuse the next request once they reach the key's
    limit (type ``tokens``); they count for the user too."""
    limiter = make_limiter()
    caller = principal(1, 5, key_tpm=10, user_tpm=100)
    admission = await limiter.admit(caller)
    assert admission.requests is None
    assert header(admission.headers, "x-ratelimit-remaining-tokens") == "10"
    assert header(admission.headers, "x-ratelimit-reset-tokens") == "0s"
    await limiter.add_tokens(caller, 6)
    admission = await limiter.admit(caller)
    assert header(admission.headers, "x-ratelimit-limit-tokens") == "10"
    assert header(admission.headers, "x-ratelimit-remaining-tokens") == "4"
    assert ABOUT_A_MINUTE.fullmatch(header(admission.headers, "x-ratelimit-reset-tokens"))
    await limiter.add_tokens(caller, 6)
    with pytest.raises(RateLimited) as raised:
        await limiter.admit(caller)
    assert (raised.value.type, raised.value.code) == ("tokens", "rate_limit_exceeded")
    assert "tokens per min (TPM): Limit 10, Used 12" in raised.value.message
    assert header(raised.value.headers, "x-ratelimit-remaining-tokens") == "0"
    other_key = await limiter.admit(principal(2, 5, user_tpm=100))
    assert header(other_key.headers, "x-ratelimit-remaining-tokens") == "88"


async def test_windows_end_and_start_again(make_limiter: MakeLimiter) -> None:
    """When its window ends a counter starts from zero (a short window here)."""
    limiter = make_limiter(window=0.3)
    caller = principal(key_rpm=1, key_tpm=5)
    await limiter.admit(caller)
    await limiter.add_tokens(caller, 50)
    with pytest.raises(RateLimited) as raised:
        await limiter.admit(caller)
    assert header(raised.value.headers, "retry-after") == "1"
    await asyncio.sleep(0.35)
    admission = await limiter.admit(caller)
    assert header(admission.headers, "x-ratelimit-remaining-requests") == "0"
    assert header(admission.headers, "x-ratelimit-remaining-tokens") == "5"


async def test_callers_without_limits_cost_nothing() -> None:
    """No limit, no counting: neither admit nor add_tokens reaches the store (here an
    unreachable Redis, which would count an error)."""
    metrics = Metrics()
    client = Redis.from_url(UNREACHABLE_URL)
    try:
        limiter = RateLimiter(client, metrics=metrics)
        assert await limiter.admit(principal()) is UNLIMITED
        await limiter.add_tokens(principal(), 100)
        await limiter.add_tokens(principal(key_rpm=5), 100)  # no token limit: nothing to count
        errors = metrics.registry.get_sample_value("relaygate_rate_limit_store_errors_total")
        assert errors == 0
    finally:
        await client.aclose()


async def test_unreachable_redis_fails_open_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    """With Redis unreachable requests are not failed: one warning for the outage, the
    errors counted in the metric, and the limits counted in the process meanwhile."""
    metrics = Metrics()
    client = Redis.from_url(UNREACHABLE_URL)
    caller = principal(key_rpm=3, key_tpm=1000)
    try:
        limiter = RateLimiter(client, metrics=metrics)
        with caplog.at_level(logging.INFO, logger="relaygate.ratelimit"):
            for _ in range(3):
                await limiter.admit(caller)
                await limiter.add_tokens(caller, 10)
            with pytest.raises(RateLimited):
                await limiter.admit(caller)
    finally:
        await client.aclose()
    warnings = [r for r in caplog.records if r.name == "relaygate.ratelimit"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "Redis failed" in warnings[0].getMessage()
    errors = metrics.registry.get_sample_value("relaygate_rate_limit_store_errors_total")
    assert errors is not None and errors >= 1


@needs_redis
async def test_replicas_sharing_redis_admit_exactly_the_limit(redis_prefix: str) -> None:
    """Two limiters (as two replicas) admitting 40 requests at once against a limit of 25
    admit exactly 25: the check and the count are one atomic script."""
    assert REDIS_URL
    clients = [Redis.from_url(REDIS_URL), Redis.from_url(REDIS_URL)]
    try:
        limiters = [RateLimiter(c, prefix=redis_prefix) for c in clients]
        caller = principal(4, 9, key_rpm=100, user_rpm=25)
        results = await asyncio.gather(
            *(limiters[i % 2].admit(caller) for i in range(40)), return_exceptions=True
        )
    finally:
        for client in clients:
            await client.aclose()
    assert sum(not isinstance(r, BaseException) for r in results) == 25
    assert all(isinstance(r, RateLimited) for r in results if isinstance(r, BaseException))
    stored = keys_under(redis_prefix)
    assert stored == {
        f"{redis_prefix}:ratelimit:{{user:9}}:key:4": {"r": "25"},
        f"{redis_prefix}:ratelimit:{{user:9}}": {"r": "25"},
    }


async def test_a_reused_key_id_counts_for_its_new_user(make_limiter: MakeLimiter) -> None:
    """SQLite reuses the id of a deleted key: the same id with the same limits but
    another user must count on that user's counters, not on the first user's."""
    limiter = make_limiter()
    first = principal(key_id=7, user_id=1, user_rpm=1)
    await limiter.admit(first)
    with pytest.raises(RateLimited):
        await limiter.admit(first)
    reused = principal(key_id=7, user_id=2, user_rpm=1)
    admission = await limiter.admit(reused)
    assert header(admission.headers, "x-ratelimit-remaining-requests") == "0"
