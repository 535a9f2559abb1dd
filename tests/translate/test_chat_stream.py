"""Anthropic's stream as chat-completion chunks: the ``Stream`` of
:mod:`relaygate.translate.chat_stream`, taken from :mod:`.chat_to_messages` as the proxy
does. Chunks are checked against the openai SDK's own types and read back by its client."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from relaygate.translate import sse
from relaygate.translate.chat_to_messages import Stream


def compact(data: dict[str, Any]) -> str:
    """JSON as Anthropic writes it on the wire: no spaces."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def upstream_bytes(events: list[tuple[str, str]], newline: str = "\n") -> bytes:
    """Events as an upstream sends them: an ``event:`` line, a ``data:`` line, a blank one."""
    lines = [f"event: {name}{newline}data: {data}{newline}{newline}" for name, data in events]
    return "".join(lines).encode()


def block_delta(index: int, delta: dict[str, Any]) -> tuple[str, str]:
    data = {"type": "content_block_delta", "index": index, "delta": delta}
    return ("content_block_delta", compact(data))


def block_start(index: int, block: dict[str, Any]) -> tuple[str, str]:
    data = {"type": "content_block_start", "index": index, "content_block": block}
    return ("content_block_start", compact(data))


def block_stop(index: int) -> tuple[str, str]:
    return ("content_block_stop", compact({"type": "content_block_stop", "index": index}))


MESSAGE_STOP = ("message_stop", compact({"type": "message_stop"}))

DOCS_TEXT = [
    "Okay",
    ",",
    " let",
    "'s",
    " check",
    " the",
    " weather",
    " for",
    " San",
    " Francisco",
    ",",
    " CA",
    ":",
]
DOCS_JSON = [
    "",
    '{"location":',
    ' "San',
    " Francisc",
    "o,",
    ' CA"',
    ",",
    ' "unit": "fah',
    'renheit"}',
]

# Anthropic's own "Streaming request with tool use" example
# (https://docs.anthropic.com/en/api/messages-streaming), byte for byte.
TOOL_STREAM = upstream_bytes(
    [
        (
            "message_start",
            '{"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U",'
            '"type":"message","role":"assistant","model":"claude-opus-4-6","stop_sequence":null,'
            '"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}',
        ),
        block_start(0, {"type": "text", "text": ""}),
        ("ping", '{"type": "ping"}'),
        *[block_delta(0, {"type": "text_delta", "text": text}) for text in DOCS_TEXT],
        block_stop(0),
        block_start(
            1,
            {
                "type": "tool_use",
                "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                "name": "get_weather",
                "input": {},
            },
        ),
        *[block_delta(1, {"type": "input_json_delta", "partial_json": part}) for part in DOCS_JSON],
        block_stop(1),
        (
            "message_delta",
            '{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},'
            '"usage":{"output_tokens":89}}',
        ),
        MESSAGE_STOP,
    ]
)

# Thinking then text, with cache usage, CRLF line ends and text past ASCII.
THINKING_STREAM = upstream_bytes(
    [
        (
            "message_start",
            '{"type":"message_start","message":{"id":"msg_01think","type":"message",'
            '"role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,'
            '"usage":{"input_tokens":10,"cache_creation_input_tokens":20,'
            '"cache_read_input_tokens":300,"output_tokens":1}}}',
        ),
        block_start(0, {"type": "thinking", "thinking": ""}),
        block_delta(0, {"type": "thinking_delta", "thinking": "1071 = 2 * 462 + 147"}),
        block_delta(0, {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}),
        block_stop(0),
        block_start(1, {"type": "text", "text": ""}),
        block_delta(1, {"type": "text_delta", "text": "Le PGCD est **21** — voilà."}),
        block_stop(1),
        (
            "message_delta",
            '{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
            '"usage":{"output_tokens":42}}',
        ),
        MESSAGE_STOP,
    ],
    newline="\r\n",
)


def run_stream(raw: bytes, step: int, *, include_usage: bool) -> bytes:
    """Feeds ``raw`` through an EventReader ``step`` bytes at a time into a Stream."""
    reader = sse.EventReader()
    stream = Stream("claude-public", include_usage=include_usage, created=1700000000)
    out = b""
    for start in range(0, len(raw), step):
        for event in reader.feed(raw[start : start + step]):
            out += stream.event(event)
    for event in reader.finish():
        out += stream.event(event)
    return out + stream.end()


def client_events(out: bytes) -> list[Any]:
    """The client's events: each chunk's JSON, or the string ``[DONE]``."""
    events = sse.EventReader().feed(out)
    return [e.data if e.data == "[DONE]" else json.loads(e.data) for e in events]


def chunks_of(out: bytes) -> list[dict[str, Any]]:
    """The chunks of a whole stream, after checking it ends in one ``[DONE]`` and that each
    chunk is a valid ChatCompletionChunk."""
    events = client_events(out)
    assert events[-1] == "[DONE]"
    assert events.count("[DONE]") == 1
    chunks: list[dict[str, Any]] = events[:-1]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    return chunks


def deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [chunk["choices"][0]["delta"] for chunk in chunks if chunk["choices"]]


STEPS = [1, 2, 3, 7, 64, 1000, 1 << 20]


@pytest.mark.parametrize("step", STEPS)
def test_stream_tool_use(step: int) -> None:
    """Anthropic's documented tool-use stream, split at any byte, becomes chat chunks whose
    content and tool-call arguments reassemble exactly, finishing with tool_calls."""
    chunks = chunks_of(run_stream(TOOL_STREAM, step, include_usage=False))
    assert {c["id"] for c in chunks} == {"chatcmpl-msg_014p7gG3wDgGV9EUtLvnow3U"}
    assert {c["model"] for c in chunks} == {"claude-public"}
    assert all("usage" not in c for c in chunks)
    parts = deltas(chunks)
    assert parts[0] == {"role": "assistant", "content": ""}
    text = "".join(d.get("content") or "" for d in parts)
    assert text == "Okay, let's check the weather for San Francisco, CA:"
    calls = [call for d in parts for call in d.get("tool_calls", [])]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert all(set(c) == {"index", "function"} and c["index"] == 0 for c in calls[1:])
    arguments = "".join(c["function"]["arguments"] for c in calls)
    assert json.loads(arguments) == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    finishes = [c["choices"][0]["finish_reason"] for c in chunks]
    assert finishes == [None] * (len(chunks) - 1) + ["tool_calls"]
    assert parts[-1] == {}


@pytest.mark.parametrize("step", STEPS)
def test_stream_same_bytes_whatever_the_split(step: int) -> None:
    """How the upstream bytes were cut changes nothing in what the client receives."""
    whole = run_stream(TOOL_STREAM, 1 << 20, include_usage=True)
    assert run_stream(TOOL_STREAM, step, include_usage=True) == whole


def test_stream_usage_chunk_when_asked() -> None:
    """With include_usage, every chunk carries usage null and a last choice-less chunk
    carries the totals, input from message_start and output from message_delta."""
    chunks = chunks_of(run_stream(TOOL_STREAM, 5, include_usage=True))
    *body, last = chunks
    assert all(c["usage"] is None and len(c["choices"]) == 1 for c in body)
    assert last["choices"] == []
    assert last["usage"] == {
        "prompt_tokens": 472,
        "completion_tokens": 89,
        "total_tokens": 561,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


@pytest.mark.parametrize("step", [1, 4, 1 << 20])
def test_stream_thinking_and_cache(step: int) -> None:
    """thinking_delta becomes reasoning_content, signature_delta nothing, and the usage
    chunk counts cache writes and reads as prompt tokens."""
    chunks = chunks_of(run_stream(THINKING_STREAM, step, include_usage=True))
    parts = deltas(chunks)
    assert "".join(d.get("reasoning_content") or "" for d in parts) == "1071 = 2 * 462 + 147"
    assert "".join(d.get("content") or "" for d in parts) == "Le PGCD est **21** — voilà."
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 330,
        "completion_tokens": 42,
        "total_tokens": 372,
        "prompt_tokens_details": {"cached_tokens": 300},
    }


def _event(data: dict[str, Any]) -> sse.Event:
    return sse.Event(str(data["type"]), json.dumps(data))


START = _event(
    {
        "type": "message_start",
        "message": {"id": "msg_1", "usage": {"input_tokens": 5, "output_tokens": 1}},
    }
)


def test_stream_second_tool_call_gets_index_one() -> None:
    """Tool calls are numbered from 0 in the order their blocks start, whatever the
    Anthropic block index."""
    stream = Stream("m", include_usage=False)
    stream.event(START)
    for index, call_id in [(1, "toolu_a"), (3, "toolu_b")]:
        block = {"type": "tool_use", "id": call_id, "name": "f", "input": {}}
        stream.event(
            _event({"type": "content_block_start", "index": index, "content_block": block})
        )
    delta = {"type": "input_json_delta", "partial_json": "{}"}
    out = stream.event(_event({"type": "content_block_delta", "index": 3, "delta": delta}))
    (chunk,) = client_events(out)
    assert chunk["choices"][0]["delta"] == {
        "tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]
    }


def test_stream_error_event_ends_without_done() -> None:
    """An upstream error event becomes an OpenAI error object and the stream ends there:
    no [DONE], and nothing for later events or end()."""
    stream = Stream("m", include_usage=True)
    stream.event(START)
    detail = {"type": "overloaded_error", "message": "Overloaded"}
    out = stream.event(_event({"type": "error", "error": detail}))
    assert client_events(out) == [
        {
            "error": {
                "message": "Overloaded",
                "type": "overloaded_error",
                "param": None,
                "code": None,
            }
        }
    ]
    assert stream.event(_event({"type": "message_stop"})) == b""
    assert stream.end() == b""


def test_stream_end_without_message_stop_still_finishes() -> None:
    """end() on a stream cut before message_delta sends a stop finish chunk, the usage
    chunk when asked and [DONE]; a second end() sends nothing."""
    stream = Stream("m", include_usage=True)
    out = stream.event(START)
    text = {"type": "text_delta", "text": "Hel"}
    out += stream.event(_event({"type": "content_block_delta", "index": 0, "delta": text}))
    out += stream.end()
    chunks = chunks_of(out)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]] == [
        None,
        None,
        "stop",
    ]
    assert chunks[-1]["usage"]["prompt_tokens"] == 5
    assert stream.end() == b""


def test_stream_end_after_message_delta_sends_one_finish() -> None:
    """end() after a message_delta but no message_stop does not repeat the finish chunk."""
    stream = Stream("m", include_usage=False)
    out = stream.event(START)
    stop = {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {}}
    out += stream.event(_event(stop)) + stream.end()
    finishes = [c["choices"][0]["finish_reason"] for c in chunks_of(out)]
    assert finishes == [None, "length"]


def test_stream_fail() -> None:
    """fail() sends an upstream_error with code stream_broken and closes the stream."""
    stream = Stream("m", include_usage=False)
    stream.event(START)
    assert client_events(stream.fail("connection reset")) == [
        {
            "error": {
                "message": "connection reset",
                "type": "upstream_error",
                "code": "stream_broken",
                "param": None,
            }
        }
    ]
    assert stream.end() == b""


def test_stream_event_not_json_fails_the_stream() -> None:
    """An event whose data is not JSON breaks the stream with an error rather than
    passing a corrupted answer on."""
    stream = Stream("m", include_usage=False)
    (event,) = client_events(stream.event(sse.Event("content_block_delta", "{oops")))
    assert event["error"]["code"] == "stream_broken"
    assert stream.end() == b""


def sdk_client(out: bytes) -> openai.OpenAI:
    """An openai SDK client whose every request is answered with the stream ``out``."""
    headers = {"content-type": "text/event-stream"}
    transport = httpx2.MockTransport(lambda _: httpx2.Response(200, content=out, headers=headers))
    http = httpx2.Client(transport=transport)
    return openai.OpenAI(
        api_key="sk-test", base_url="http://gateway/v1", max_retries=0, http_client=http
    )


def test_openai_sdk_reassembles_the_stream() -> None:
    """The openai SDK's own stream helper rebuilds the whole completion from the chunks:
    text, the tool call with its arguments, the finish reason and the usage."""
    client = sdk_client(run_stream(TOOL_STREAM, 7, include_usage=True))
    messages: list[Any] = [{"role": "user", "content": "Weather in SF?"}]
    with client.chat.completions.stream(model="claude-public", messages=messages) as stream:
        final = stream.get_final_completion()
    (choice,) = final.choices
    assert choice.message.content == "Okay, let's check the weather for San Francisco, CA:"
    assert choice.finish_reason == "tool_calls"
    (tool_call,) = choice.message.tool_calls or []
    assert tool_call.id == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert json.loads(tool_call.function.arguments) == {
        "location": "San Francisco, CA",
        "unit": "fahrenheit",
    }
    assert final.usage is not None and final.usage.total_tokens == 561


def test_openai_sdk_raises_on_the_error_event() -> None:
    """An upstream error mid-stream reaches openai SDK users as an APIError with its message."""
    stream = Stream("claude-public", include_usage=False)
    out = stream.event(START)
    detail = {"type": "overloaded_error", "message": "Overloaded"}
    out += stream.event(_event({"type": "error", "error": detail})) + stream.end()
    client = sdk_client(out)
    messages: list[Any] = [{"role": "user", "content": "Hi"}]
    with pytest.raises(openai.APIError, match="Overloaded"):
        for _ in client.chat.completions.create(
            model="claude-public", messages=messages, stream=True
        ):
            pass
