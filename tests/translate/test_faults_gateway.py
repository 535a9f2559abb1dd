"""An endpoint that fails mid-way through a translated answer: the client's SDK gets an
error in its own API's shape (never a garbled stream, never a bare 500), relaygate stays
up, and nothing leaks (connections, tasks)."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest

from tests.support.faults import MODEL, FaultServer
from tests.support.gateway import Gateway

ASK = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def faulty(gateway: Gateway) -> Iterator[FaultServer]:
    """A misbehaving chat endpoint, translated for Messages and Responses clients."""
    server = FaultServer().start()
    gateway.add_endpoint("faulty", server.url, messages_api="translate", responses_api="translate")
    yield server
    server.stop()


def test_a_cut_stream_ends_with_anthropics_error_event(
    gateway: Gateway, faulty: FaultServer
) -> None:
    """A chat stream that stops without its end reaches an anthropic SDK stream as the
    text so far, then an ``error`` event the SDK raises; the gateway keeps serving."""
    faulty.fault, faulty.chunks = "cut_stream", 3
    tasks = gateway.resources()[1]
    client = gateway.anthropic()
    try:
        with (
            pytest.raises(anthropic.APIStatusError) as broken,
            client.messages.stream(
                model=MODEL,
                max_tokens=10,
                messages=ASK,  # type: ignore[arg-type]
            ) as stream,
        ):
            for _ in stream:
                pass
        assert "broke off" in str(broken.value)
    finally:
        client.close()
    gateway.assert_settles(tasks)
    faulty.fault = "ok"
    assert gateway.openai().chat.completions.create(model=MODEL, messages=ASK)  # type: ignore[arg-type]


def test_a_cut_stream_ends_with_response_failed(gateway: Gateway, faulty: FaultServer) -> None:
    """The same cut reaches a Responses stream as ``response.failed``."""
    faulty.fault, faulty.chunks = "cut_stream", 3
    with gateway.openai().responses.stream(model=MODEL, input="Hi") as stream:
        kinds = [event.type for event in stream]
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.failed"


@pytest.mark.parametrize("fault", ["invalid_json", "large"])
def test_an_answer_that_cannot_be_translated_is_a_502_in_the_clients_shape(
    gateway: Gateway, faulty: FaultServer, fault: str
) -> None:
    """A 200 whose body is not JSON, or larger than a translated answer may be, reaches
    the anthropic SDK as a 502 api_error (it cannot be translated), not a bare 500."""
    faulty.fault, faulty.large_bytes = fault, 40 * 1024 * 1024
    client = gateway.anthropic()
    try:
        with pytest.raises(anthropic.APIStatusError) as refused:
            client.messages.create(model=MODEL, max_tokens=10, messages=ASK)  # type: ignore[arg-type]
    finally:
        client.close()
    assert refused.value.status_code == 502
    assert refused.value.body["error"]["type"] == "api_error"  # type: ignore[index]


def test_an_endpoint_error_status_reaches_responses_clients(
    gateway: Gateway, faulty: FaultServer
) -> None:
    """An endpoint's 400 reaches a Responses client as OpenAI's error shape with its
    message."""
    faulty.fault, faulty.status = "status", 400
    with pytest.raises(openai.BadRequestError) as refused:
        gateway.openai().responses.create(model=MODEL, input="Hi")
    assert refused.value.status_code == 400
