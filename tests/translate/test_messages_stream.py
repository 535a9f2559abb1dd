"""The Messages answer built from a chat completion's (:mod:`relaygate.translate.messages_stream`):
the whole Message, errors and streams, checked against the official ``anthropic`` SDK's own
types and its own stream reader."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from pydantic import TypeAdapter

from relaygate.translate import messages_stream as ms
from relaygate.translate.sse import EventReader

Json = dict[str, Any]

STREAM_EVENT: TypeAdapter[RawMessageStreamEvent] = TypeAdapter(RawMessageStreamEvent)
CALL = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}


# -- response ----------------------------------------------------------------------------


def completion(message: Json, finish: str | None = "stop", **fields: Any) -> Json:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
        ],
        **fields,
    }


USAGE = {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}

RESPONSES: list[tuple[str, Json, Json]] = [
    (
        "text",
        completion({"content": "Hello!"}, usage=USAGE),
        {
            "content": [{"type": "text", "text": "Hello!"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 120, "output_tokens": 30},
        },
    ),
    (
        "reasoning, text and a tool call",
        completion(
            {
                "reasoning_content": "Let me think.",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            "tool_calls",
        ),
        {
            "content": [
                {"type": "thinking", "thinking": "Let me think.", "signature": ""},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_9", "name": "weather", "input": {"city": "Oslo"}},
            ],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        },
    ),
    (
        "empty text omitted, unparsable arguments become {}, stop after tools is tool_use",
        completion(
            {
                "content": "",
                "reasoning": "r",
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
                ],
            }
        ),
        {
            "content": [
                {"type": "thinking", "thinking": "r", "signature": ""},
                {"type": "tool_use", "id": "c", "name": "f", "input": {}},
            ],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        },
    ),
    (
        "length, cached tokens counted apart",
        completion(
            {"content": "trunc"},
            "length",
            usage={**USAGE, "prompt_tokens_details": {"cached_tokens": 100}},
        ),
        {
            "content": [{"type": "text", "text": "trunc"}],
            "stop_reason": "max_tokens",
            "stop_sequence": None,
            "usage": {"input_tokens": 20, "output_tokens": 30, "cache_read_input_tokens": 100},
        },
    ),
    (
        "content_filter is a refusal",
        completion({"content": None}, "content_filter"),
        {
            "content": [],
            "stop_reason": "refusal",
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        },
    ),
    (
        "vLLM's matched stop string is the stop_sequence",
        {
            "id": "chatcmpl-2",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "a"},
                    "finish_reason": "stop",
                    "stop_reason": "END",
                }
            ],
        },
        {
            "content": [{"type": "text", "text": "a"}],
            "stop_reason": "stop_sequence",
            "stop_sequence": "END",
            "usage": {"input_tokens": 0, "output_tokens": 0},
        },
    ),
]


@pytest.mark.parametrize(
    ("body", "expected"), [case[1:] for case in RESPONSES], ids=[case[0] for case in RESPONSES]
)
def test_response(body: Json, expected: Json) -> None:
    """Each chat completion maps to the Message in the table, valid for the SDK's Message type."""
    out = ms.response(body, "claude-x")
    assert out == {
        "id": "msg_" + body["id"],
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        **expected,
    }
    Message.model_validate(out)


def test_response_without_id_or_choices() -> None:
    """An answer with no id and no choices still makes a valid, empty Message."""
    out = ms.response({}, "claude-x")
    assert out["id"].startswith("msg_") and out["content"] == []
    Message.model_validate(out)


def sdk(handler: Any) -> anthropic.Anthropic:
    transport = httpx2.MockTransport(handler)
    return anthropic.Anthropic(
        api_key="k", max_retries=0, http_client=httpx2.Client(transport=transport)
    )


def test_response_read_by_the_sdk() -> None:
    """The SDK's messages.create reads the translated answer, tool input included."""
    body = completion({"content": "Hi", "tool_calls": [CALL]}, "tool_calls", usage=USAGE)
    client = sdk(lambda _: httpx2.Response(200, json=ms.response(body, "claude-x")))
    message = client.messages.create(
        model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "x"}]
    )
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.stop_reason == "tool_use" and message.usage.output_tokens == 30


# -- errors ------------------------------------------------------------------------------

ERRORS: list[tuple[int, Any, str, str]] = [
    (
        400,
        {"error": {"message": "bad field", "type": "invalid_request_error"}},
        "invalid_request_error",
        "bad field",
    ),
    (401, {"error": "no key"}, "authentication_error", "no key"),
    (402, None, "billing_error", "the model endpoint answered HTTP 402"),
    (403, {"message": "forbidden"}, "permission_error", "forbidden"),
    (404, {"detail": "Not Found"}, "not_found_error", "Not Found"),
    (413, "too big", "request_too_large", "too big"),
    (422, {"detail": [{"loc": ["body", "x"], "msg": "bad"}]}, "invalid_request_error", '[{"loc":'),
    (429, {"error": {"message": "slow down"}}, "rate_limit_error", "slow down"),
    (500, {"error": {"message": ""}}, "api_error", "the model endpoint answered HTTP 500"),
    (502, [1, 2], "api_error", "the model endpoint answered HTTP 502"),
    (504, {}, "timeout_error", "the model endpoint answered HTTP 504"),
    (529, {"error": {"message": "busy"}}, "overloaded_error", "busy"),
]


@pytest.mark.parametrize(("status", "body", "kind", "message"), ERRORS)
def test_error(status: int, body: Any, kind: str, message: str) -> None:
    """The endpoint's error becomes Anthropic's error shape: type by status, message found."""
    out = ms.error(status, body)
    assert out["type"] == "error" and out["error"]["type"] == kind
    assert out["error"]["message"].startswith(message)
    if kind != "request_too_large":  # Documented, but absent from the SDK's union.
        ErrorResponse.model_validate(out)


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, anthropic.BadRequestError),
        (429, anthropic.RateLimitError),
        (529, anthropic.InternalServerError),
    ],
)
def test_error_read_by_the_sdk(status: int, exception: type[Exception]) -> None:
    """The SDK raises its own exception for the status, with the upstream's message."""
    body = ms.error(status, {"error": {"message": "upstream says no"}})
    client = sdk(lambda _: httpx2.Response(status, json=body))
    with pytest.raises(exception, match="upstream says no"):
        client.messages.create(
            model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )


# -- stream ------------------------------------------------------------------------------


def chunk(delta: Json | None = None, finish: str | None = None, **fields: Any) -> Json:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "chatcmpl-s", "object": "chat.completion.chunk", "choices": choices, **fields}


def call_delta(
    index: int | None, fragment: str, call_id: str | None = None, name: str | None = None
) -> Json:
    call: Json = {"function": {"arguments": fragment}}
    if index is not None:
        call["index"] = index
    if call_id is not None:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    return {"tool_calls": [call]}


def wire(chunks: Sequence[Json | str], done: bool = True, newline: bytes = b"\n") -> bytes:
    """OpenAI's stream of ``chunks`` (a str is sent as a raw data line)."""
    lines = [f"data: {c if isinstance(c, str) else json.dumps(c)}".encode() for c in chunks]
    if done:
        lines.append(b"data: [DONE]")
    return b"".join(line + newline + newline for line in lines)


def translate(raw: bytes, piece: int = 7) -> bytes:
    """``raw`` fed through EventReader in ``piece``-byte pieces and then through Stream."""
    reader, stream, out = EventReader(), ms.Stream("claude-x"), b""
    for start in range(0, len(raw), piece):
        for event in reader.feed(raw[start : start + piece]):
            out += stream.event(event)
    for event in reader.finish():
        out += stream.event(event)
    return out + stream.end()


def events(out: bytes) -> list[Json]:
    """The Anthropic events in ``out``, each checked against the SDK's types (stream events,
    or its error body) and its ``event:`` name against its ``type``."""
    parsed = []
    for event in EventReader().feed(out):
        data = json.loads(event.data)
        assert event.name == data["type"]
        if data["type"] == "error":
            ErrorResponse.model_validate(data)
        else:
            STREAM_EVENT.validate_python(data)
        parsed.append(data)
    return parsed


def final_message(out: bytes) -> Message:
    """The Message the SDK's own stream reader assembles from ``out``."""
    headers = {"content-type": "text/event-stream"}
    client = sdk(lambda _: httpx2.Response(200, headers=headers, content=out))
    with client.messages.stream(
        model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "x"}]
    ) as stream:
        return stream.get_final_message()


TEXT_STREAM: list[Json | str] = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hel"}),
    chunk({"content": "lo, wörld"}),
    chunk({}, "stop"),
    chunk(usage={"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}),
]


@pytest.mark.parametrize("piece", [1, 5, 13, 4096])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_text_stream(piece: int, newline: bytes) -> None:
    """A text stream, however it is cut, becomes one text block, then the stop and usage."""
    out = translate(wire(TEXT_STREAM, newline=newline), piece)
    parsed = events(out)
    assert [e["type"] for e in parsed] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert parsed[0]["message"]["id"] == "msg_chatcmpl-s"
    assert parsed[0]["message"]["usage"] == {"input_tokens": 0, "output_tokens": 0}
    assert parsed[1]["content_block"] == {"type": "text", "text": ""}
    assert parsed[5] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"input_tokens": 11, "output_tokens": 3},
    }
    message = final_message(out)
    assert message.content[0].type == "text" and message.content[0].text == "Hello, wörld"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 3)


ARGUMENTS = ['{"ci', 'ty": "Pa', "ris", '", "days"', ": 3}"]

TOOL_STREAM: list[Json | str] = [
    chunk({"role": "assistant", "reasoning_content": "Think"}),
    chunk({"reasoning_content": "ing."}),
    chunk({"content": "Let me check."}),
    chunk(call_delta(0, "", "call_a", "weather")),
    *[chunk(call_delta(0, fragment)) for fragment in ARGUMENTS],
    chunk(call_delta(1, '{"city": "Rome"}', "call_b", "weather")),
    chunk({}, "tool_calls"),
    chunk(
        usage={
            "prompt_tokens": 50,
            "completion_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 40},
        }
    ),
]


def test_tool_stream() -> None:
    """Reasoning, text and two tool calls become four blocks in order; split arguments come
    out as one input_json_delta per fragment and reassemble to the call's input."""
    out = translate(wire(TOOL_STREAM), piece=3)
    parsed = events(out)
    starts = [e for e in parsed if e["type"] == "content_block_start"]
    assert [(e["index"], e["content_block"]["type"]) for e in starts] == [
        (0, "thinking"),
        (1, "text"),
        (2, "tool_use"),
        (3, "tool_use"),
    ]
    assert starts[0]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert starts[2]["content_block"] == {
        "type": "tool_use",
        "id": "call_a",
        "name": "weather",
        "input": {},
    }
    fragments = [
        e["delta"]["partial_json"]
        for e in parsed
        if e["type"] == "content_block_delta"
        and e["delta"]["type"] == "input_json_delta"
        and e["index"] == 2
    ]
    assert fragments == ARGUMENTS
    stops = [e["index"] for e in parsed if e["type"] == "content_block_stop"]
    assert stops == [0, 1, 2, 3]
    assert parsed[-2]["delta"]["stop_reason"] == "tool_use"
    assert parsed[-2]["usage"] == {
        "input_tokens": 10,
        "output_tokens": 20,
        "cache_read_input_tokens": 40,
    }

    message = final_message(out)
    thinking, text, first, second = message.content
    assert thinking.type == "thinking" and thinking.thinking == "Thinking."
    assert text.type == "text" and text.text == "Let me check."
    assert first.type == "tool_use" and first.input == {"city": "Paris", "days": 3}
    assert second.type == "tool_use" and (second.id, second.input) == ("call_b", {"city": "Rome"})
    assert message.stop_reason == "tool_use" and message.usage.cache_read_input_tokens == 40


def test_tool_calls_without_index() -> None:
    """Tool-call deltas without an index are matched by id, then follow the call under way."""
    stream = [
        chunk(call_delta(None, '{"a":', "call_x", "f")),
        chunk(call_delta(None, "1}")),
        chunk(call_delta(None, "{}", "call_y", "g")),
        chunk({}, "stop"),
    ]
    message = final_message(translate(wire(stream)))
    assert [
        (b.type, getattr(b, "id", None), getattr(b, "input", None)) for b in message.content
    ] == [
        ("tool_use", "call_x", {"a": 1}),
        ("tool_use", "call_y", {}),
    ]
    assert message.stop_reason == "tool_use"


def test_tool_calls_all_numbered_zero() -> None:
    """A server that numbers every call 0 still gives one tool_use per call id."""
    stream = [
        chunk(call_delta(0, '{"cmd":', "c1", "shell")),
        chunk(call_delta(0, '"ls"}')),
        chunk(call_delta(0, '{"cmd":"pwd"}', "c2", "shell")),
        chunk({}, "tool_calls"),
    ]
    message = final_message(translate(wire(stream)))
    assert [
        (b.type, getattr(b, "id", None), getattr(b, "input", None)) for b in message.content
    ] == [
        ("tool_use", "c1", {"cmd": "ls"}),
        ("tool_use", "c2", {"cmd": "pwd"}),
    ]


def test_interleaved_fragments_of_a_closed_call_are_ignored() -> None:
    """A fragment for a call whose block is already stopped is left out, never misplaced."""
    stream = [
        chunk(call_delta(0, '{"a":1}', "c1", "f")),
        chunk(call_delta(1, '{"b":2}', "c2", "g")),
        chunk(call_delta(0, "junk")),
        chunk({}, "tool_calls"),
    ]
    message = final_message(translate(wire(stream)))
    assert [getattr(b, "input", None) for b in message.content] == [{"a": 1}, {"b": 2}]


def test_tool_calls_without_ids() -> None:
    """Calls told apart by index alone get generated ids and their own blocks."""
    stream = [
        chunk({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": '{"x"'}}]}),
        chunk(call_delta(0, ":1}")),
        chunk({"tool_calls": [{"index": 1, "function": {"name": "g", "arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
    ]
    message = final_message(translate(wire(stream)))
    names = [(getattr(b, "name", None), getattr(b, "input", None)) for b in message.content]
    assert names == [("f", {"x": 1}), ("g", {})]
    assert all(getattr(b, "id", "").startswith("toolu_") for b in message.content)


def test_error_chunk_ends_the_stream() -> None:
    """A chunk carrying an error becomes an Anthropic error event and nothing follows it."""
    stream: list[Json | str] = [
        chunk({"content": "partial"}),
        {"error": {"message": "engine died", "type": "InternalServerError", "code": 503}},
        chunk({"content": "never"}),
    ]
    parsed = events(translate(wire(stream)))
    assert [e["type"] for e in parsed] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "error",
    ]
    assert parsed[-1] == {"type": "error", "error": {"type": "api_error", "message": "engine died"}}
    with pytest.raises(anthropic.APIStatusError, match="engine died"):
        final_message(translate(wire(stream)))


def test_non_json_lines_are_ignored() -> None:
    """Data lines that are not JSON objects (keep-alives, stray text) produce nothing."""
    stream: list[Json | str] = [
        "keep-alive",
        "[1, 2]",
        chunk({"content": "ok"}),
        chunk({}, "length"),
    ]
    message = final_message(translate(wire(stream)))
    assert message.content[0].type == "text" and message.content[0].text == "ok"
    assert message.stop_reason == "max_tokens"


def test_end_without_done_closes_once() -> None:
    """end() without [DONE] closes the open block and the message; a second end() adds nothing."""
    stream = ms.Stream("claude-x")
    out = b""
    for event in EventReader().feed(wire([chunk({"content": "cut"})], done=False)):
        out += stream.event(event)
    out += stream.end()
    assert [e["type"] for e in events(out)][-3:] == [
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert stream.end() == b""
    assert stream.fail("late") == b""


def test_empty_stream() -> None:
    """A stream of just [DONE] is still a whole Anthropic message, with no blocks."""
    parsed = events(translate(wire([])))
    assert [e["type"] for e in parsed] == ["message_start", "message_delta", "message_stop"]
    assert parsed[1]["usage"] == {"output_tokens": 0}


def test_fail() -> None:
    """fail() is an api_error event carrying the message, after which the stream is closed."""
    stream = ms.Stream("claude-x")
    out = stream.fail("upstream went away")
    assert events(out) == [
        {"type": "error", "error": {"type": "api_error", "message": "upstream went away"}}
    ]
    assert stream.end() == b""
