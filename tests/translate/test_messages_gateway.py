"""The anthropic SDK through relaygate to an endpoint that serves only chat completions:
Messages translated both ways, streams event by event, tools, errors, token counts, usage,
and ``messages_api`` modes (``auto`` finding out, ``native``, ``translate``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from tests.conftest import Upstream
from tests.support.gateway import Gateway
from tests.support.polling import eventually
from tests.support.scripted import ScriptedUpstream, Turn
from tests.translate.conftest import MODEL, posts, usage_records, user_key

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture
def claude(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    """An anthropic SDK client of relaygate, with the admin's key."""
    client = gateway.anthropic()
    yield client
    client.close()


def found(gateway: Gateway, name: str) -> dict[str, Any]:
    """The endpoint's ``api_found`` once it has some (it is written off the request path)."""
    return eventually(lambda: gateway.endpoint(name)["api_found"], bool)


def test_auto_mode_probes_once_then_translates_until_the_next_sync(
    gateway: Gateway, scripted: ScriptedUpstream, claude: anthropic.Anthropic
) -> None:
    """In ``auto`` mode the first Messages request is tried natively; the endpoint's 404
    makes relaygate translate that same request, and every later one without asking again;
    the endpoint object shows what was found, and the next sync forgets it."""
    scripted.script.otherwise = Turn.say("Hello from a chat model")
    gateway.add_endpoint("local", scripted.url)
    ask = {"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}

    first = claude.messages.create(**ask)  # type: ignore[arg-type]
    assert first.content[0].type == "text" and first.content[0].text == "Hello from a chat model"
    assert first.model == MODEL and first.stop_reason == "end_turn"
    claude.messages.create(**ask)  # type: ignore[arg-type]
    # The client's request, then relaygate's own empty probe confirming the route is
    # missing (not just the client's content), then chat completions only.
    assert posts(scripted) == [
        ("POST", "/v1/messages"),
        ("POST", "/v1/messages"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/chat/completions"),
    ]
    assert scripted.script.requests[2].body == b"{}"
    assert found(gateway, "local") == {"messages": "translate"}
    assert not scripted.script.problems

    endpoint = gateway.endpoint("local")
    gateway.admin.post(f"/admin/api/v1/endpoints/{endpoint['id']}/sync").raise_for_status()
    assert gateway.endpoint("local")["api_found"] == {}
    claude.messages.create(**ask)  # type: ignore[arg-type]
    assert posts(scripted)[4:] == [
        ("POST", "/v1/messages"),
        ("POST", "/v1/messages"),
        ("POST", "/v1/chat/completions"),
    ]


def test_streamed_tool_use_round_trip(
    gateway: Gateway, scripted: ScriptedUpstream, claude: anthropic.Anthropic
) -> None:
    """A streamed answer that calls a tool arrives as Anthropic events (the tool's input
    as input_json_delta pieces the SDK joins); the tool_result sent back reaches the
    endpoint as a tool message answering that call, and the final text streams back."""
    script = scripted.script
    script.when(lambda r: bool(r.tool_outputs("get_weather")), Turn.say("It is sunny in Oslo."))
    script.then(Turn.call("get_weather", city="Oslo"))
    gateway.add_endpoint("local", scripted.url, messages_api="translate")
    history: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]

    with claude.messages.stream(
        model=MODEL,
        max_tokens=100,
        tools=[WEATHER],
        messages=history,  # type: ignore[list-item]
    ) as stream:
        kinds = [event.type for event in stream]
        message = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "input_json" in kinds  # the SDK's event for each input_json_delta
    call = message.content[-1]
    assert call.type == "tool_use" and call.name == "get_weather"
    assert call.input == {"city": "Oslo"}
    assert message.stop_reason == "tool_use"
    assert message.usage.output_tokens > 0

    history += [
        {"role": "assistant", "content": message.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}],
        },
    ]
    with claude.messages.stream(
        model=MODEL,
        max_tokens=100,
        tools=[WEATHER],
        messages=history,  # type: ignore[list-item]
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == "It is sunny in Oslo."
    sent = script.chat_requests()[-1]
    assert sent.tool_outputs("get_weather") == ["sunny"]
    assert sent.tool_names == ["get_weather"]
    assert sent.include_usage
    assert posts(scripted) == [("POST", "/v1/chat/completions")] * 2
    assert not script.problems


def test_whole_answers_tools_and_usage_records(
    gateway: Gateway, scripted: ScriptedUpstream, claude: anthropic.Anthropic
) -> None:
    """A non-streamed tool call comes back as a tool_use block; the usage record names the
    API the client spoke (/v1/messages) and the one the endpoint was sent
    (/chat/completions), with the endpoint's token counts."""
    scripted.script.then(Turn.call("get_weather", city="Bergen"))
    gateway.add_endpoint("local", scripted.url, messages_api="translate")
    message = claude.messages.create(
        model=MODEL,
        max_tokens=100,
        system="You are terse.",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "Weather in Bergen?"}],
    )
    [call] = [block for block in message.content if block.type == "tool_use"]
    assert call.input == {"city": "Bergen"}
    sent = scripted.script.chat_requests()[0].body
    assert sent["messages"][0] == {"role": "system", "content": "You are terse."}
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["max_tokens"] == 100

    records = eventually(lambda: usage_records(gateway), bool)
    [record] = records
    assert record["path"] == "/v1/messages"
    assert record["upstream_path"] == "/chat/completions"
    assert record["status"] == 200
    assert record["prompt_tokens"] == message.usage.input_tokens > 0
    assert record["completion_tokens"] == message.usage.output_tokens > 0


def test_upstream_errors_reach_the_sdk_in_anthropics_shape(
    gateway: Gateway, upstream: Upstream, claude: anthropic.Anthropic
) -> None:
    """An endpoint's OpenAI-shaped 429 reaches an anthropic SDK user as Anthropic's
    rate_limit_error with the endpoint's message, not as a JSON it cannot read."""
    upstream.state.models = [MODEL]
    gateway.add_endpoint("local", upstream.url, messages_api="translate")
    upstream.state.fail_status = 429
    with pytest.raises(anthropic.RateLimitError) as refused:
        claude.messages.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
        )
    assert refused.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "upstream is failing"},
    }


def test_fields_the_endpoint_cannot_take_are_named(
    gateway: Gateway, scripted: ScriptedUpstream, claude: anthropic.Anthropic
) -> None:
    """Extended thinking asked of a self-hosted endpoint (whose chat API has no reasoning
    setting) is left out and named in x-relaygate-dropped; the answer says which route the
    endpoint was sent."""
    gateway.add_endpoint("local", scripted.url, messages_api="translate")
    raw = claude.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "Think."}],
    )
    assert "thinking" in raw.headers["x-relaygate-dropped"]
    assert raw.headers["x-relaygate-translated"] == "/chat/completions"
    assert "reasoning_effort" not in scripted.script.chat_requests()[0].body


def test_count_tokens_estimates_without_a_tokenizer(
    gateway: Gateway, scripted: ScriptedUpstream, claude: anthropic.Anthropic
) -> None:
    """count_tokens on an endpoint with no tokenizer route answers a documented estimate
    (and says so); once the endpoint answered 404 for /tokenize it is not asked again."""
    gateway.add_endpoint("local", scripted.url, messages_api="translate")
    text = "word " * 400  # 2,000 characters: about 500 tokens by the estimate
    ask: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
    raw = claude.messages.with_raw_response.count_tokens(**ask)
    assert raw.headers["x-relaygate-token-count"] == "estimate"
    assert 450 <= raw.parse().input_tokens <= 600
    eventually(lambda: gateway.endpoint("local")["api_found"], bool)
    assert claude.messages.count_tokens(**ask).input_tokens == raw.parse().input_tokens
    assert posts(scripted) == [("POST", "/tokenize")]  # at the server's root, as vLLM's


def test_native_mode_forwards_messages_as_sent(
    gateway: Gateway, upstream: Upstream, claude: anthropic.Anthropic
) -> None:
    """``messages_api: native`` sends the Messages request to the endpoint's own
    /messages as it came (servers such as vLLM and llama.cpp serve it)."""
    upstream.state.models = [MODEL]
    gateway.add_endpoint("local", upstream.url, messages_api="native")
    claude.messages.with_raw_response.create(
        model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
    )
    [seen] = upstream.state.requests
    assert seen.path == "/v1/messages"
    assert seen.json["messages"] == [{"role": "user", "content": "Hi"}]


def test_translation_reaches_no_model_beyond_the_grant(
    gateway: Gateway, scripted: ScriptedUpstream
) -> None:
    """A user whose groups were not granted the endpoint cannot reach its model through
    the Messages translation either: 403 before anything goes upstream."""
    gateway.add_endpoint("private", scripted.url, messages_api="translate", groups=[])
    key = user_key(gateway, "mallory")
    client = gateway.anthropic(key)
    try:
        with pytest.raises(anthropic.PermissionDeniedError):
            client.messages.create(
                model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
            )
    finally:
        client.close()
    assert posts(scripted) == []


def test_an_untranslatable_body_is_a_clear_400(
    gateway: Gateway, scripted: ScriptedUpstream, claude: anthropic.Anthropic
) -> None:
    """A Messages body the chat API cannot carry (a PDF document block) is refused with a
    400 naming the field, and nothing reaches the endpoint."""
    gateway.add_endpoint("local", scripted.url, messages_api="translate")
    document = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
    }
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(
            model=MODEL,
            max_tokens=10,
            messages=[{"role": "user", "content": [document]}],  # type: ignore[list-item]
        )
    assert "messages[0].content[0]" in str(refused.value)
    assert posts(scripted) == []


def test_a_body_too_deep_to_translate_is_a_400(
    gateway: Gateway, scripted: ScriptedUpstream
) -> None:
    """A Messages body nested deeper than relaygate can write (in a tool's schema) is
    refused 400 saying so, not a bare 500, and nothing reaches the endpoint."""
    gateway.add_endpoint("local", scripted.url, messages_api="translate")
    nested: Any = {"type": "string"}
    for _ in range(300):
        nested = {"type": "array", "items": nested}
    tool = {"name": "deep", "input_schema": {"type": "object", "properties": {"a": nested}}}
    body = {
        "model": MODEL,
        "max_tokens": 5,
        "tools": [tool],
        "messages": [{"role": "user", "content": "hi"}],
    }
    response = gateway.admin.post("/v1/messages", json=body)
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["error"]["message"]
    assert posts(scripted) == []
