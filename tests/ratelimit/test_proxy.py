"""Rate limits as clients see them, through the official openai SDK: in one process, and
(when RELAYGATE_TEST_REDIS_URL is set) with the counters in Redis."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Upstream
from tests.support.gateway import Gateway
from tests.support.redis_store import REDIS_URL, UNREACHABLE_URL, needs_redis

API = "/admin/api/v1"
ABOUT_A_MINUTE = re.compile(r"1m0s|5[5-9](\.\d{1,3})?s")
"""A reset a minute away, give or take the few seconds a loaded machine takes."""
HELLO: list[Any] = [{"role": "user", "content": "hi"}]


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
def limited(
    request: pytest.FixtureRequest, tmp_path: Path, upstream: Upstream, redis_prefix: str
) -> Iterator[Gateway]:
    """relaygate serving ``gpt-test`` from the upstream, its counters in the process or in
    Redis under the test's own prefix."""
    shared = {"redis_url": REDIS_URL, "redis_prefix": redis_prefix}
    gateway = Gateway(tmp_path, **(shared if request.param == "redis" else {})).start()
    gateway.add_endpoint("up", upstream.url)
    yield gateway
    gateway.stop()


def key_for(gateway: Gateway, user: dict[str, Any] | None = None, **limits: int) -> str:
    fields: dict[str, Any] = {"user_id": user["id"]} if user else {}
    key: str = gateway.create_key(**fields, **limits)["key"]
    return key


def chat(gateway: Gateway, key: str) -> httpx.Headers:
    """One chat completion with ``key``; the response headers."""
    raw = gateway.openai(key=key).chat.completions.with_raw_response.create(
        model="gpt-test", messages=HELLO
    )
    assert raw.parse().choices[0].message.content == "hello from upstream"
    return raw.headers


def refused(gateway: Gateway, key: str) -> openai.RateLimitError:
    with pytest.raises(openai.RateLimitError) as raised:
        gateway.openai(key=key).chat.completions.create(model="gpt-test", messages=HELLO)
    return raised.value


def test_request_over_the_key_limit_is_openai_rate_limit_error(
    limited: Gateway, upstream: Upstream
) -> None:
    """With 3 requests a minute, three completions pass with x-ratelimit-* headers
    counting down; the fourth is the SDK's RateLimitError (429, type ``requests``, code
    ``rate_limit_exceeded``) with Retry-After, and is never forwarded."""
    key = key_for(limited, requests_per_minute=3)
    remaining = []
    for _ in range(3):
        headers = chat(limited, key)
        assert headers["x-ratelimit-limit-requests"] == "3"
        assert ABOUT_A_MINUTE.fullmatch(headers["x-ratelimit-reset-requests"])
        assert "x-ratelimit-limit-tokens" not in headers
        remaining.append(headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"]
    forwarded = len(upstream.state.requests)
    error = refused(limited, key)
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    body = error.body
    assert isinstance(body, dict)
    assert (body["type"], body["param"], body["code"]) == ("requests", None, "rate_limit_exceeded")
    assert body["message"].startswith(
        "rate limit reached for this API key on requests per min (RPM): Limit 3, Used 3. "
        "Please try again in "
    )
    headers = error.response.headers
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["x-ratelimit-limit-requests"] == "3"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert ABOUT_A_MINUTE.fullmatch(headers["x-ratelimit-reset-requests"])
    assert len(upstream.state.requests) == forwarded
    # Listing models is a request too, and is refused as well.
    with pytest.raises(openai.RateLimitError):
        limited.openai(key=key).models.list()


def test_stricter_of_key_and_user_limits_wins(limited: Gateway) -> None:
    """A user's limit is shared by all their keys; each key's own limit applies as well,
    and the headers show whichever is closer to refusing."""
    user = limited.create_user("dora")
    limited.admin.patch(f"{API}/users/{user['id']}", json={"requests_per_minute": 3})
    roomy = key_for(limited, user, requests_per_minute=10)
    tight = key_for(limited, user, requests_per_minute=1)
    headers = chat(limited, tight)
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == (
        "1",
        "0",
    )
    assert "this API key" in str(refused(limited, tight).body)
    headers = chat(limited, roomy)
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == (
        "3",
        "1",
    )
    chat(limited, roomy)
    error = refused(limited, roomy)
    assert "your user" in str(error.body)
    assert error.response.headers["x-ratelimit-limit-requests"] == "3"
    # Another user is not affected.
    chat(limited, key_for(limited, limited.create_user("erin"), requests_per_minute=1))


def test_tokens_per_minute_refuse_once_used_up(limited: Gateway) -> None:
    """The tokens of each answer (the upstream reports 3 prompt + 4 completion) count
    against the key's tokens per minute: they show in the next response's headers and,
    once the limit is reached, refuse the next request (type ``tokens``)."""
    key = key_for(limited, tokens_per_minute=10)
    idle = limited.resources()[1]
    headers = chat(limited, key)
    assert (headers["x-ratelimit-limit-tokens"], headers["x-ratelimit-remaining-tokens"]) == (
        "10",
        "10",
    )
    assert headers["x-ratelimit-reset-tokens"] == "0s"
    assert "x-ratelimit-limit-requests" not in headers
    limited.assert_settles(idle)  # tokens are counted just after the answer went out
    headers = chat(limited, key)
    assert headers["x-ratelimit-remaining-tokens"] == "3"
    assert ABOUT_A_MINUTE.fullmatch(headers["x-ratelimit-reset-tokens"])
    limited.assert_settles(idle)
    error = refused(limited, key)
    assert error.body["type"] == "tokens"  # type: ignore[index]
    assert "tokens per min (TPM): Limit 10, Used 14" in str(error.body)
    assert error.response.headers["x-ratelimit-remaining-tokens"] == "0"


def test_streamed_tokens_count_too(limited: Gateway) -> None:
    """A stream's tokens (from the usage chunk relaygate asked for) count as well."""
    key = key_for(limited, tokens_per_minute=20)
    client = limited.openai(key=key)
    idle = limited.resources()[1]
    list(client.chat.completions.create(model="gpt-test", messages=HELLO, stream=True))
    limited.assert_settles(idle)  # tokens are counted just after the answer went out
    headers = chat(limited, key)
    assert headers["x-ratelimit-remaining-tokens"] == "4"  # 20 - (11 + 5)


def test_limit_changes_apply_at_once_and_unlimited_keys_get_no_headers(
    limited: Gateway, upstream: Upstream
) -> None:
    """A key without limits gets the upstream's own headers untouched; PATCH limits it
    from the next request (the upstream's x-ratelimit-* replaced by relaygate's), and
    clearing the limit lifts it."""
    upstream.state.extra_headers = {"x-ratelimit-limit-requests": "5000"}
    created = limited.create_key(name="plain")
    key = created["key"]
    assert chat(limited, key)["x-ratelimit-limit-requests"] == "5000"
    changed = limited.admin.patch(f"{API}/keys/{created['id']}", json={"requests_per_minute": 1})
    assert changed.status_code == 200, changed.text
    headers = chat(limited, key)
    assert headers.get_list("x-ratelimit-limit-requests") == ["1"]
    refused(limited, key)
    cleared = limited.admin.patch(f"{API}/keys/{created['id']}", json={"requests_per_minute": None})
    assert cleared.json()["requests_per_minute"] is None
    assert chat(limited, key)["x-ratelimit-limit-requests"] == "5000"


def test_streamed_responses_carry_the_headers(limited: Gateway) -> None:
    """An event stream's response headers carry the x-ratelimit-* headers too."""
    key = key_for(limited, requests_per_minute=2)
    with limited.openai(key=key).chat.completions.with_streaming_response.create(
        model="gpt-test", messages=HELLO, stream=True
    ) as response:
        assert response.headers["x-ratelimit-remaining-requests"] == "1"
        assert list(response.iter_lines())


def test_unreachable_redis_does_not_fail_requests(tmp_path: Path, upstream: Upstream) -> None:
    """With Redis unreachable, requests are served (limits counted in the process), the
    outage is logged once and counted in /metrics."""
    gateway = Gateway(tmp_path, redis_url=UNREACHABLE_URL).start()
    try:
        gateway.add_endpoint("up", upstream.url)
        key = key_for(gateway, requests_per_minute=5)
        for expected in ("4", "3", "2"):
            assert chat(gateway, key)["x-ratelimit-remaining-requests"] == expected
        assert chat(gateway, gateway.admin_key)["x-relaygate-endpoint"] == "up"
        metrics = gateway.admin.get("/metrics").text
        errors = re.search(r"^relaygate_rate_limit_store_errors_total (\S+)$", metrics, re.M)
        assert errors is not None and float(errors.group(1)) >= 1
    finally:
        gateway.stop()
