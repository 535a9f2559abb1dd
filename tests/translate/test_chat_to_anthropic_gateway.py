"""The openai SDK's chat completions through relaygate to an ``anthropic`` endpoint with
``chat_api: translate``: sent to Anthropic's native Messages API (``x-api-key``), answered
in OpenAI's shapes, streamed chunk by chunk with the usage chunk only when asked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.gateway import Gateway
from tests.support.polling import eventually
from tests.support.providers import AnthropicState, anthropic_model, make_anthropic
from tests.support.servers import ServerThread
from tests.translate.conftest import usage_records


@pytest.fixture
def claude_api() -> Iterator[tuple[AnthropicState, str]]:
    """A loopback stand-in for Anthropic's API serving ``claude-test``."""
    state = AnthropicState(models=[anthropic_model("claude-test")])
    server = ServerThread(make_anthropic(state)).start()
    yield state, server.url + "/v1"
    server.stop()


def test_chat_completion_reaches_the_messages_api(
    gateway: Gateway, claude_api: tuple[AnthropicState, str]
) -> None:
    """A chat completion (system message, max_tokens, stop) goes to /v1/messages with the
    endpoint's key as x-api-key and Anthropic's fields; the answer comes back as a
    chat.completion with the token usage Anthropic reported, and is recorded so."""
    state, url = claude_api
    gateway.add_endpoint(
        "claude", url, type="anthropic", api_key=state.api_key, chat_api="translate"
    )
    reply = gateway.openai().chat.completions.create(
        model="claude-test",
        messages=[
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "Hello"},
        ],
        max_tokens=64,
        stop=["END"],
    )
    assert reply.choices[0].message.content == "Hi from Claude"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (5, 4)
    [seen] = state.requests
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == state.api_key
    assert "authorization" not in seen.headers
    assert seen.json["system"] == "Be kind."
    assert seen.json["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hello"}]}
    ]
    assert (seen.json["max_tokens"], seen.json["stop_sequences"]) == (64, ["END"])
    [record] = eventually(lambda: usage_records(gateway), bool)
    assert (record["path"], record["upstream_path"]) == ("/v1/chat/completions", "/messages")
    assert (record["prompt_tokens"], record["completion_tokens"]) == (5, 4)


@pytest.mark.parametrize("include_usage", [False, True])
def test_streamed_chat_completion_from_anthropic_events(
    gateway: Gateway, claude_api: tuple[AnthropicState, str], include_usage: bool
) -> None:
    """Anthropic's stream comes back as chat.completion.chunk events with the text in
    order and a finish reason; the usage chunk is there only when the client asked for
    it, yet relaygate counts the tokens either way."""
    state, url = claude_api
    gateway.add_endpoint(
        "claude", url, type="anthropic", api_key=state.api_key, chat_api="translate"
    )
    chunks = list(
        gateway.openai().chat.completions.create(
            model="claude-test",
            messages=[{"role": "user", "content": "Hello"}],
            stream=True,
            stream_options={"include_usage": True} if include_usage else None,  # type: ignore[arg-type]
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from Claude"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == (1 if include_usage else 0)
    [record] = eventually(lambda: usage_records(gateway), bool)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (5, 3)
    assert state.requests[0].json["stream"] is True


def test_default_keeps_anthropics_openai_layer(
    gateway: Gateway, claude_api: tuple[AnthropicState, str]
) -> None:
    """Without ``chat_api: translate`` a chat completion still goes to Anthropic's
    OpenAI-compatible layer, with Bearer, as before."""
    state, url = claude_api
    gateway.add_endpoint("claude", url, type="anthropic", api_key=state.api_key)
    reply = gateway.openai().chat.completions.create(
        model="claude-test", messages=[{"role": "user", "content": "Hello"}]
    )
    assert reply.choices[0].message.content == "Claude via OpenAI surface"
    assert state.requests[0].path == "/v1/chat/completions"
