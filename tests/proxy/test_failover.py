"""Several targets per model: failing over before the first byte reaches the client."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import Upstream
from tests.support.gateway import Gateway


@pytest.fixture
def pooled(gateway: Gateway, upstream: Upstream, second_upstream: Upstream) -> Gateway:
    gateway.add_endpoint("first", upstream.url, pool="gpt")
    gateway.add_endpoint("second", second_upstream.url, pool="gpt")
    return gateway


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_error_status_fails_over(
    pooled: Gateway, upstream: Upstream, second_upstream: Upstream, status: int
) -> None:
    """5xx and 429 from one target are retried on the other; the client never sees them."""
    upstream.state.fail_status = status
    client = pooled.openai()
    for _ in range(4):
        raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=[])
        assert raw.headers["x-relaygate-endpoint"] == "second"
        assert raw.parse().choices[0].message.content == "hello from upstream"
    assert len(second_upstream.state.requests) == 4


def test_unreachable_target_fails_over_streaming_too(
    pooled: Gateway, upstream: Upstream, second_upstream: Upstream
) -> None:
    """A target that refuses connections is skipped, for streams as well."""
    upstream.stop()
    client = pooled.openai()
    for _ in range(3):
        chunks = list(client.chat.completions.create(model="gpt-test", messages=[], stream=True))
        assert [c.choices[0].delta.content for c in chunks] == ["c0 ", "c1 ", "c2 ", "c3 ", "c4 "]
    assert len(second_upstream.state.requests) == 3


def test_when_every_target_fails_the_last_answer_is_passed_on(
    pooled: Gateway, upstream: Upstream, second_upstream: Upstream
) -> None:
    """With every target failing, the client gets the last target's own error response."""
    upstream.state.fail_status = 503
    second_upstream.state.fail_status = 503
    with pytest.raises(openai.InternalServerError) as raised:
        pooled.openai().chat.completions.create(model="gpt-test", messages=[])
    assert raised.value.status_code == 503
    assert "is failing" in raised.value.message
    upstream.state.fail_status = second_upstream.state.fail_status = None
    reply = pooled.openai().chat.completions.create(model="gpt-test", messages=[])
    assert reply.choices[0].message.content == "hello from upstream"


def test_client_errors_are_not_retried(
    pooled: Gateway, upstream: Upstream, second_upstream: Upstream
) -> None:
    """A 4xx other than 429 is the client's problem: passed through, not retried."""
    upstream.state.fail_status = 400
    second_upstream.state.fail_status = 400
    with pytest.raises(openai.BadRequestError):
        pooled.openai().chat.completions.create(model="gpt-test", messages=[])
    assert len(upstream.state.requests) + len(second_upstream.state.requests) == 1
