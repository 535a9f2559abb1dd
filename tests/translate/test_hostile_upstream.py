"""What an endpoint says is never trusted: every translation reads malformed answers and
events (wrong types where objects, lists or strings belong) without an exception, and the
client still gets well-formed answers and events in its own API. What a client sends is
not trusted either: a malformed request is refused with a TranslationError, never another
exception."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from openai.types import ErrorObject
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from relaygate.errors import TranslationError
from relaygate.proxy.translation import JsonReply, StreamReply
from relaygate.translate import chat_to_messages, messages_to_chat, responses_to_chat
from relaygate.translate.base import GEMINI, OPENAI, SELF_HOSTED, Stream
from relaygate.translate.sse import Event, EventReader

Json = dict[str, Any]

WRONG: list[Any] = [None, 7, -1, 1.5, True, "x", "", [], [None], {}, [{}], {"a": 1}]
"""Values put where an object, a list, a string or a number is expected."""
MISSING = object()
"""Put in place of a field: the field is left out."""
HOSTILE: list[Any] = [
    *WRONG,
    MISSING,
    False,
    3.0,
    10**18,
    2**64 - 1,
    -(2**63),
    1e300,
    "[",
    [[]],
    {"type": "text"},
]
"""WRONG, and numbers too large, negative or fractional for a count or an index."""
CHAT_FIELDS = ["choices", "usage", "error", "id", "model"]
CHOICE_FIELDS = ["delta", "message", "finish_reason", "index"]
DELTA_FIELDS = ["content", "role", "tool_calls", "reasoning_content", "refusal"]
CALL_FIELDS = ["index", "id", "type", "function"]
FUNCTION_FIELDS = ["name", "arguments"]
ANTHROPIC_EVENTS = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "error",
    "ping",
]
REQUEST: Json = {"model": "m", "input": "hi", "tools": [{"type": "custom", "name": "apply_patch"}]}
"""The Responses request the Responses answers are made for (its custom tool included)."""

STREAM_EVENT: TypeAdapter[RawMessageStreamEvent] = TypeAdapter(RawMessageStreamEvent)
RESPONSE_EVENT: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)

# -- well-formed answers and streams in good shape, to break one field at a time ------------

CHAT_ANSWER: Json = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "up",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "hello",
                "reasoning_content": "think",
                "refusal": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "apply_patch", "arguments": '{"input":"p"}'},
                    },
                ],
            },
            "finish_reason": "tool_calls",
            "stop_reason": None,
        }
    ],
    "usage": {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 1},
    },
}
ANTHROPIC_ANSWER: Json = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude",
    "content": [
        {"type": "thinking", "thinking": "t", "signature": "s"},
        {"type": "text", "text": "hello"},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_read_input_tokens": 2,
        "cache_creation_input_tokens": 1,
    },
}


def delta_chunk(delta: Json, finish: str | None = None) -> Json:
    return {"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def call_fragment(index: int, arguments: str, call_id: str = "", name: str = "") -> Json:
    fragment: Json = {"index": index, "function": {"arguments": arguments}}
    if call_id:
        fragment |= {"id": call_id, "type": "function"}
        fragment["function"]["name"] = name
    return {"tool_calls": [fragment]}


CHAT_STREAM: list[Any] = [
    delta_chunk({"role": "assistant", "reasoning_content": "think"}),
    delta_chunk({"content": "hello"}),
    delta_chunk(call_fragment(0, '{"a"', "c1", "f")),
    delta_chunk(call_fragment(0, ":1}")),
    delta_chunk(call_fragment(1, '{"input":"p"}', "c2", "apply_patch")),
    delta_chunk({}, "tool_calls"),
    {"id": "c", "choices": [], "usage": CHAT_ANSWER["usage"]},
    "[DONE]",
]


def block_event(kind: str, index: int, **fields: Any) -> tuple[str, Json]:
    return kind, {"type": kind, "index": index, **fields}


ANTHROPIC_STREAM: list[tuple[str, Json]] = [
    (
        "message_start",
        {
            "type": "message_start",
            "message": {**ANTHROPIC_ANSWER, "content": [], "stop_reason": None},
        },
    ),
    block_event("content_block_start", 0, content_block={"type": "thinking", "thinking": ""}),
    block_event("content_block_delta", 0, delta={"type": "thinking_delta", "thinking": "t"}),
    block_event("content_block_stop", 0),
    block_event("content_block_start", 1, content_block={"type": "text", "text": ""}),
    block_event("content_block_delta", 1, delta={"type": "text_delta", "text": "hello"}),
    block_event("content_block_stop", 1),
    block_event(
        "content_block_start",
        2,
        content_block={"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
    ),
    block_event("content_block_delta", 2, delta={"type": "input_json_delta", "partial_json": "{"}),
    block_event("content_block_delta", 2, delta={"type": "input_json_delta", "partial_json": "}"}),
    block_event("content_block_stop", 2),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 5},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
]


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path (keys and indexes) of every field and element inside ``value``."""
    if not isinstance(value, dict | list):
        return
    children = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in children:
        yield (*prefix, key)
        yield from paths(child, (*prefix, key))


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of ``value`` with ``new`` at ``path`` (the field left out for MISSING)."""
    result = copy.deepcopy(value)
    parent = result
    for key in path[:-1]:
        parent = parent[key]
    if new is MISSING:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return result


def variants(value: Any) -> Iterator[Any]:
    """``value`` with one field or element at a time replaced by each HOSTILE value."""
    for path in paths(value):
        for new in HOSTILE:
            yield replaced(value, path, new)


# -- what well formed means in each client's API -------------------------------------------


def counts_only(usage: Any) -> None:
    """Every number of a ``usage`` object is an int from 0, as the SDKs type them."""
    for value in usage.values():
        if isinstance(value, dict):
            counts_only(value)
        else:
            assert type(value) is int and value >= 0, usage


def usage_counts(value: Any) -> None:
    """Every ``usage`` object anywhere in ``value`` holds counts only."""
    if isinstance(value, dict):
        for key, child in value.items():
            if key == "usage" and isinstance(child, dict):
                counts_only(child)
            else:
                usage_counts(child)
    elif isinstance(value, list):
        for child in value:
            usage_counts(child)


_VALID: set[tuple[int, bytes]] = set()


def sdk_valid(check: Callable[[Any], object], data: Any) -> None:
    """``check`` (an SDK type's validation) passes on ``data``; each distinct value once,
    as the hostile streams repeat most of their events."""
    key = (id(getattr(check, "__self__", check)), orjson.dumps(data, option=orjson.OPT_SORT_KEYS))
    if key not in _VALID:
        check(data)
        _VALID.add(key)


def client_events(out: bytes) -> list[Event]:
    reader = EventReader()
    return [*reader.feed(out), *reader.finish()]


def anthropic_stream(out: bytes) -> list[Json]:
    """A Messages client's stream: SDK-valid events, ``message_start`` first, blocks
    started, fed deltas of their type and stopped in order, then ``message_stop`` (or an
    error at any point) and nothing after."""
    events = [orjson.loads(event.data) for event in client_events(out)]
    assert events, "the stream must end in message_stop or an error"
    block: tuple[int, str] | None = None
    started = 0
    delta_types = {"text": {"text_delta"}, "thinking": {"thinking_delta", "signature_delta"}}
    delta_types["tool_use"] = {"input_json_delta"}
    for position, data in enumerate(events):
        usage_counts(data)
        kind = data["type"]
        if kind == "error":
            sdk_valid(ErrorResponse.model_validate, data)
            assert position == len(events) - 1
            continue
        sdk_valid(STREAM_EVENT.validate_python, data)
        assert (kind == "message_start") == (position == 0), events
        if kind == "content_block_start":
            assert block is None and data["index"] == started
            block, started = (started, data["content_block"]["type"]), started + 1
        elif kind == "content_block_delta":
            assert block is not None and data["index"] == block[0]
            assert data["delta"]["type"] in delta_types[block[1]]
        elif kind == "content_block_stop":
            assert block is not None and data["index"] == block[0]
            block = None
        elif kind in ("message_delta", "message_stop"):
            assert block is None
        assert kind != "message_stop" or position == len(events) - 1
    assert events[-1]["type"] in ("message_stop", "error")
    return events


def chat_stream(out: bytes) -> list[Json]:
    """A chat-completions client's stream: SDK-valid chunks whose tool calls each start
    with their id and name, at the next index, ending in one ``[DONE]`` or an error."""
    events = client_events(out)
    assert events and (events[-1].data == "[DONE]" or "error" in orjson.loads(events[-1].data))
    chunks: list[Json] = []
    calls = 0
    for position, event in enumerate(events):
        if event.data == "[DONE]":
            assert position == len(events) - 1
            continue
        data = orjson.loads(event.data)
        if "error" in data:
            sdk_valid(ErrorObject.model_validate, data["error"])
            assert position == len(events) - 1
            continue
        sdk_valid(ChatCompletionChunk.model_validate, data)
        usage_counts(data)
        for choice in data["choices"]:
            for call in choice["delta"].get("tool_calls") or []:
                assert call["index"] <= calls
                if call["index"] == calls:
                    assert isinstance(call["id"], str) and call["id"]
                    assert isinstance(call["function"]["name"], str)
                    calls += 1
        chunks.append(data)
    return chunks


def responses_stream(out: bytes) -> list[Json]:
    """A Responses client's stream: SDK-valid events numbered from 0, named by their type,
    ``response.created`` first and one final event (completed, incomplete or failed) last,
    every item added also done before a completion, which lists them all."""
    events = [orjson.loads(event.data) for event in client_events(out)]
    finals = ("response.completed", "response.incomplete", "response.failed")
    assert events and events[0]["type"] == "response.created"
    assert [e["type"] in finals for e in events].count(True) == 1
    assert events[-1]["type"] in finals
    added: set[int] = set()
    done: set[int] = set()
    for position, data in enumerate(events):
        sdk_valid(RESPONSE_EVENT.validate_python, data)
        usage_counts(data)
        assert data["sequence_number"] == position
        if data["type"] == "response.output_item.added":
            assert data["output_index"] == len(added)
            added.add(data["output_index"])
        elif data["type"] == "response.output_item.done":
            assert data["output_index"] in added - done
            done.add(data["output_index"])
    if events[-1]["type"] != "response.failed":
        assert added == done == set(range(len(events[-1]["response"]["output"])))
    return events


def openai_error(made: Json) -> None:
    ErrorObject.model_validate(made["error"])
    assert isinstance(made["error"]["type"], str) and made["error"]["message"]


def anthropic_error(made: Json) -> None:
    ErrorResponse.model_validate(made)
    assert made["error"]["message"]


def messages_answer(body: Json) -> Json:
    made: Json = messages_to_chat.response(body, "m")
    Message.model_validate(made)
    return made


def responses_answer(body: Json) -> Json:
    made: Json = responses_to_chat.response(
        body, "m", request=REQUEST, response_id="resp_1", created_at=1
    )
    Response.model_validate(made)
    return made


def chat_answer(body: Json) -> Json:
    made: Json = chat_to_messages.response(body, "m")
    ChatCompletion.model_validate(made)
    return made


class Api:
    """One direction as its client sees it: its stream, whole answer and error, each
    checked against the client's SDK."""

    def __init__(
        self,
        stream: Callable[[], Stream],
        read: Callable[[bytes], list[Json]],
        answer: Callable[[Json], Json],
        error: Callable[[int, Any], Json],
        error_valid: Callable[[Json], None],
    ) -> None:
        self.stream, self.read, self.answer = stream, read, answer
        self.error, self.error_valid = error, error_valid

    def run(self, events: list[Event]) -> list[Json]:
        """The client's stream (checked) for the endpoint's ``events``, then its end."""
        stream = self.stream()
        return self.read(b"".join(stream.event(event) for event in events) + stream.end())

    def whole(self, body: Any) -> None:
        """``body`` as a whole answer and as an error body, both checked."""
        self.error_valid(self.error(500, body))
        if isinstance(body, dict):
            usage_counts(self.answer(body))


APIS = {
    "messages": Api(
        lambda: messages_to_chat.Stream("m"),
        anthropic_stream,
        messages_answer,
        messages_to_chat.error,
        anthropic_error,
    ),
    "responses": Api(
        lambda: responses_to_chat.Stream("m", request=REQUEST, response_id="resp_1", created_at=1),
        responses_stream,
        responses_answer,
        responses_to_chat.error,
        openai_error,
    ),
    "chat": Api(
        lambda: chat_to_messages.Stream("m", include_usage=True),
        chat_stream,
        chat_answer,
        chat_to_messages.error,
        openai_error,
    ),
}
CHAT_UPSTREAM = ["messages", "responses"]
"""The directions whose endpoint speaks chat completions."""


def chat_events(chunks: list[Any]) -> list[Event]:
    return [Event(None, c if c == "[DONE]" else orjson.dumps(c).decode()) for c in chunks]


def anthropic_wire(events: list[tuple[str, Any]]) -> list[Event]:
    return [Event(name, orjson.dumps(data).decode()) for name, data in events]


# -- the tests ------------------------------------------------------------------------------


def chat_chunks() -> list[Any]:
    """OpenAI chat chunks with one field at a time replaced by a wrong value."""
    chunks: list[Any] = [*WRONG, "[DONE]"]
    for field in CHAT_FIELDS:
        chunks += [{field: value} for value in WRONG]
    for field in CHOICE_FIELDS:
        chunks += [{"choices": [{field: value}]} for value in WRONG]
    for field in DELTA_FIELDS:
        chunks += [{"choices": [{"delta": {field: value}}]} for value in WRONG]
    for field in CALL_FIELDS:
        chunks += [{"choices": [{"delta": {"tool_calls": [{field: v}]}}]} for v in WRONG]
    for field in FUNCTION_FIELDS:
        chunks += [
            {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {field: v}}]}}]}
            for v in WRONG
        ]
    return chunks


def anthropic_events() -> list[tuple[str, Any]]:
    """Anthropic stream events with wrong values in each of their fields."""
    events: list[tuple[str, Any]] = []
    for name in ANTHROPIC_EVENTS:
        events += [(name, value) for value in WRONG]
        for field in ("message", "index", "content_block", "delta", "usage", "error"):
            events += [(name, {"type": name, field: value}) for value in WRONG]
        for field in ("type", "text", "partial_json", "thinking", "stop_reason"):
            events += [(name, {"type": name, "delta": {field: v}}) for v in WRONG]
            events += [(name, {"type": name, "content_block": {field: v}}) for v in WRONG]
    return events


def streams() -> list[tuple[str, list[Event]]]:
    garbage = [Event(None, "{not json"), Event("message_start", "}{")]
    chat = chat_events(chat_chunks()) + garbage
    anthropic = anthropic_wire(anthropic_events()) + garbage
    return [("messages", chat), ("responses", chat), ("chat", anthropic)]


@pytest.mark.parametrize("case", streams(), ids=lambda case: case[0])
def test_each_hostile_event_alone(case: tuple[str, list[Event]]) -> None:
    """Each malformed event, fed to a fresh stream, raises nothing and leaves the stream's
    output well formed in the client's API."""
    name, events = case
    for event in events:
        APIS[name].run([event])


@pytest.mark.parametrize("case", streams(), ids=lambda case: case[0])
def test_every_hostile_event_in_one_stream(case: tuple[str, list[Event]]) -> None:
    """All malformed events in one stream, one after another, raise nothing and the
    output stays well formed in the client's API to its end."""
    name, events = case
    APIS[name].run(events)


@pytest.mark.parametrize("name", CHAT_UPSTREAM)
def test_any_field_of_a_chat_stream_broken(name: str) -> None:
    """A good chat stream with any one field of any chunk replaced by a hostile value (or
    left out) still makes a well-formed stream in the client's API."""
    api = APIS[name]
    assert api.run(chat_events(CHAT_STREAM))  # the stream as it should be
    for position, chunk in enumerate(CHAT_STREAM[:-1]):
        for broken in variants(chunk):
            chunks = [*CHAT_STREAM[:position], broken, *CHAT_STREAM[position + 1 :]]
            api.run(chat_events(chunks))


def test_any_field_of_an_anthropic_stream_broken() -> None:
    """A good Anthropic stream with any one field of any event replaced by a hostile value
    (or left out) still makes a well-formed chat-completions stream."""
    api = APIS["chat"]
    assert api.run(anthropic_wire(ANTHROPIC_STREAM))
    for position, (name, data) in enumerate(ANTHROPIC_STREAM):
        for broken in variants(data):
            events = [*ANTHROPIC_STREAM[:position], (name, broken)]
            api.run(anthropic_wire(events + ANTHROPIC_STREAM[position + 1 :]))


@pytest.mark.parametrize("name", ["messages", "chat", "responses"])
def test_hostile_whole_answers_and_errors(name: str) -> None:
    """A whole answer or an error body with wrong values anywhere translates without an
    exception into an answer or error the client's SDK reads."""
    bodies: list[Any] = [*WRONG]
    for field in [*CHAT_FIELDS, "content", "stop_reason", "type"]:
        bodies += [{field: value} for value in WRONG]
    for field in CHOICE_FIELDS:
        bodies += [{"choices": [{field: value}]} for value in WRONG]
    for field in ("content", "tool_calls", "reasoning_content"):
        bodies += [{"choices": [{"message": {field: value}}]} for value in WRONG]
    bodies += [{"content": [{"type": "tool_use", "input": v}]} for v in WRONG]
    for field in ("message", "type", "code", "param"):
        bodies += [{"error": {"message": "bad", field: v}} for v in WRONG]
    for body in bodies:
        APIS[name].whole(body)


@pytest.mark.parametrize("name", ["messages", "chat", "responses"])
def test_any_field_of_a_whole_answer_broken(name: str) -> None:
    """A good whole answer with any one field replaced by a hostile value (or left out)
    still translates into an answer the client's SDK reads."""
    good = ANTHROPIC_ANSWER if name == "chat" else CHAT_ANSWER
    api = APIS[name]
    api.whole(good)
    for body in variants(good):
        api.whole(body)
        api.whole({"error": body, "detail": body})


BAD_COUNTS: list[Any] = [1.5, 3.0, -4, True, "12", None, [3], {"n": 1}, 10**18, 2**64 - 1]
"""Token counts no endpoint should send: fractions, floats, negatives, booleans, strings,
and numbers too large to be one."""


@pytest.mark.parametrize("bad", BAD_COUNTS, ids=repr)
def test_usage_counts_that_are_not_counts_read_as_none(bad: Any) -> None:
    """A usage count that is not a non-negative integer of sane size counts as 0 (absent)
    in the client's usage, whole or streamed, and the good counts beside it are kept."""
    chat_usage = {
        "prompt_tokens": 10,
        "completion_tokens": bad,
        "total_tokens": bad,
        "prompt_tokens_details": {"cached_tokens": bad},
        "completion_tokens_details": {"reasoning_tokens": bad},
    }
    body = {**CHAT_ANSWER, "usage": chat_usage}
    assert messages_answer(body)["usage"] == {"input_tokens": 10, "output_tokens": 0}
    assert responses_answer(body)["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 0,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 10,
    }
    anthropic_usage = {
        "input_tokens": 10,
        "output_tokens": bad,
        "cache_read_input_tokens": bad,
        "cache_creation_input_tokens": bad,
    }
    assert chat_answer({**ANTHROPIC_ANSWER, "usage": anthropic_usage})["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 0,
        "total_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    chunks = [*CHAT_STREAM[:-2], {"id": "c", "choices": [], "usage": chat_usage}, "[DONE]"]
    last = APIS["messages"].run(chat_events(chunks))[-2]
    assert last["type"] == "message_delta" and last["usage"]["output_tokens"] == 0
    final = APIS["responses"].run(chat_events(chunks))[-1]["response"]["usage"]
    assert final["output_tokens"] == 0 and final["total_tokens"] == 10
    events = copy.deepcopy([*ANTHROPIC_STREAM[:-2], ("message_delta", {"type": "message_delta"})])
    events[0][1]["message"]["usage"] = anthropic_usage
    events += [("message_delta", {"type": "message_delta", "usage": anthropic_usage})]
    usage_chunk = APIS["chat"].run(anthropic_wire([*events, ANTHROPIC_STREAM[-1]]))[-1]
    assert usage_chunk["usage"]["completion_tokens"] == 0
    assert usage_chunk["usage"]["prompt_tokens"] == 10


ARGUMENTS: list[Any] = [None, 7, 1.5, True, [1], {"a": 1}, ""]


@pytest.mark.parametrize("arguments", ARGUMENTS, ids=repr)
def test_tool_call_arguments_that_are_not_strings(arguments: Any) -> None:
    """Tool-call arguments that are not a JSON text become the client's arguments as an
    object's JSON (an object as it is, anything else as none), whole or streamed."""
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    body = replaced(CHAT_ANSWER, ("choices", 0, "message", "tool_calls"), [call])
    (tool_use,) = [b for b in messages_answer(body)["content"] if b["type"] == "tool_use"]
    assert tool_use["input"] == (arguments if isinstance(arguments, dict) else {})
    (item,) = [i for i in responses_answer(body)["output"] if i["type"] == "function_call"]
    expected = orjson.dumps(arguments).decode() if isinstance(arguments, dict) else "{}"
    assert item["arguments"] == (arguments if arguments == "" else expected)
    fragment = {"index": 0, "id": "c1", "type": "function", "function": call["function"]}
    chunks = [delta_chunk({"tool_calls": [fragment]}), delta_chunk({}, "tool_calls"), "[DONE]"]
    starts = [e for e in APIS["messages"].run(chat_events(chunks)) if "content_block" in e]
    assert [e["content_block"]["name"] for e in starts] == ["f"]
    events = APIS["responses"].run(chat_events(chunks))
    assert events[-1]["response"]["output"][0]["arguments"] == ""


def test_tool_call_arguments_past_what_json_readers_keep() -> None:
    """Arguments holding a number past 64 bits, or nested deeper than a parser goes, are
    read as an object or as none, never as something the encoder then refuses."""
    for text in ['{"n": 1' + "0" * 30 + "}", "[" * 100_000 + "]" * 100_000, '{"n": 1e999}']:
        call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": text}}
        body = replaced(CHAT_ANSWER, ("choices", 0, "message", "tool_calls"), [call])
        orjson.dumps(messages_answer(body))
        orjson.dumps(responses_answer(body))
        fragment = {"index": 0, **call}
        chunks = [delta_chunk({"tool_calls": [fragment]}), "[DONE]"]
        for name in CHAT_UPSTREAM:
            APIS[name].run(chat_events(chunks))
    huge = Event(None, '{"choices": [{"index": 0, "delta": {"content": "hi"}}], "id": 1' + "0" * 30)
    for name in CHAT_UPSTREAM:
        APIS[name].run([huge, Event(None, "[DONE]")])


@pytest.mark.parametrize("index", [5, 10**18, 2**64 - 1, -1, 1.0, "2", [2], {"i": 2}], ids=repr)
def test_input_json_delta_for_a_block_never_started(index: Any) -> None:
    """Arguments for a block index no tool_use started (unknown, huge, negative or not a
    number) are left out, and the call under way keeps its own arguments."""
    stray = block_event(
        "content_block_delta", 2, delta={"type": "input_json_delta", "partial_json": "XX"}
    )
    stray[1]["index"] = index
    events = [*ANTHROPIC_STREAM[:9], stray, *ANTHROPIC_STREAM[9:]]
    chunks = APIS["chat"].run(anthropic_wire(events))
    arguments = [
        call["function"]["arguments"]
        for chunk in chunks
        for choice in chunk["choices"]
        for call in choice["delta"].get("tool_calls") or []
    ]
    assert "".join(arguments) == "{}"


@pytest.mark.parametrize("index", [10**18, 2**64 - 1, -(2**63), 2**53], ids=repr)
def test_huge_tool_call_indexes(index: int) -> None:
    """A tool-call or block index far past any real count is taken as an index or as
    none, never allocated for, and the calls still reach the client whole."""
    chunks = [
        delta_chunk({"tool_calls": [{"index": index, "id": "c1", "function": {"name": "f"}}]}),
        delta_chunk({"tool_calls": [{"index": index, "function": {"arguments": "{}"}}]}),
        delta_chunk({"tool_calls": [{"index": 0, "id": "c2", "function": {"name": "g"}}]}),
        delta_chunk({}, "tool_calls"),
        "[DONE]",
    ]
    starts = [e for e in APIS["messages"].run(chat_events(chunks)) if "content_block" in e]
    assert [e["content_block"]["name"] for e in starts] == ["f", "g"]
    final = APIS["responses"].run(chat_events(chunks))[-1]["response"]
    assert [(i["name"], i["arguments"]) for i in final["output"]] == [("f", "{}"), ("g", "")]
    events = list(ANTHROPIC_STREAM)
    for position in (7, 8, 9, 10):
        name, data = events[position]
        events[position] = (name, {**data, "index": index})
    chunks_out = APIS["chat"].run(anthropic_wire(events))
    calls = [
        c
        for chunk in chunks_out
        for ch in chunk["choices"]
        for c in ch["delta"].get("tool_calls") or []
    ]
    assert calls[0]["index"] == 0 and calls[0]["function"]["name"] == "f"


@pytest.mark.parametrize("name", list(APIS))
@pytest.mark.parametrize(
    "wire",
    [
        b"event: message_stop\n\n",
        b"event: ping\ndata:\n\n",
        b"event: error\ndata:\n\n",
        b"event: message_stop\ndata:\n\n",
        b"event: content_block_delta\ndata: \n\n",
        b"event:\ndata:\n\n",
    ],
)
def test_an_event_with_a_name_but_no_data(name: str, wire: bytes) -> None:
    """An event that has a name but no data, or empty data, raises nothing, wherever it
    comes in a stream, and the client's stream stays well formed."""
    good = anthropic_wire(ANTHROPIC_STREAM) if name == "chat" else chat_events(CHAT_STREAM)
    stray = client_events(wire)
    for position in range(len(good) + 1):
        APIS[name].run([*good[:position], *stray, *good[position:]])


def test_an_anthropic_event_with_empty_data_is_known_by_its_name() -> None:
    """An Anthropic event with empty data is read by its name: a ping does nothing and the
    stream goes on, a message_stop ends it as a message_stop does."""
    events = anthropic_wire(ANTHROPIC_STREAM[:6])
    ping, stop = Event("ping", ""), Event("message_stop", "")
    chunks = APIS["chat"].run([*events[:3], ping, *events[3:], stop])
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("code", [[], {}, ["server_error"], 500, "server_error", None])
def test_error_chunk_codes_of_any_type(code: Any) -> None:
    """An error chunk whose code is of any type fails a Responses stream with a code the
    API defines, and ends a Messages stream with an error the SDK reads."""
    chunk = {"error": {"message": "boom", "code": code, "type": code, "param": code}}
    failed = APIS["responses"].run(chat_events([chunk]))[-1]["response"]["error"]
    assert failed == {"code": "server_error", "message": "boom"}
    (error,) = APIS["messages"].run(chat_events([chunk]))
    assert error["error"]["message"] == "boom"


# -- the client's side: a malformed request is a TranslationError -----------------------------

MESSAGES_REQUEST: Json = {
    "model": "m",
    "max_tokens": 100,
    "system": [{"type": "text", "text": "be brief"}],
    "messages": [
        {"role": "system", "content": "first"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "AA"},
                },
                {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "t", "signature": "s"},
                {"type": "text", "text": "calling"},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "ok"}, {"type": "image"}],
                    "is_error": True,
                },
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"},
            ],
        },
        {"role": "system", "content": [{"type": "text", "text": "later"}]},
        {"role": "user", "content": "go on"},
    ],
    "tools": [
        {"name": "f", "description": "d", "input_schema": {"type": "object", "$schema": "x"}},
        {"type": "web_search_20250305", "name": "web_search"},
    ],
    "tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
    "stop_sequences": ["END"],
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 5,
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "metadata": {"user_id": "u"},
    "stream": True,
}
CHAT_REQUEST: Json = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": [{"type": "text", "text": "dev"}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                {"type": "image_url", "image_url": "https://x/y.png"},
            ],
        },
        {
            "role": "assistant",
            "content": "calling",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "ok"}]},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "x"}, {"type": "refusal", "refusal": "no"}],
            "function_call": {"name": "f", "arguments": {"a": 1}},
        },
        {"role": "function", "name": "f", "content": "done"},
        {"role": "user", "content": "go on"},
    ],
    "max_completion_tokens": 2000,
    "max_tokens": 1000,
    "stop": ["END"],
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 5,
    "tools": [
        {"type": "function", "function": {"name": "f", "description": "d", "parameters": {}}}
    ],
    "functions": [{"name": "g", "parameters": {"type": "object"}}],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "parallel_tool_calls": False,
    "reasoning_effort": "high",
    "user": "u",
    "n": 1,
    "stream": True,
    "stream_options": {"include_usage": True},
}
RESPONSES_ITEMS: list[Json] = [
    {"type": "message", "role": "developer", "content": "dev"},
    {
        "type": "message",
        "role": "user",
        "content": [
            {"type": "input_text", "text": "hi"},
            {"type": "input_image", "image_url": "data:image/png;base64,AA", "detail": "low"},
        ],
    },
    {"type": "reasoning", "id": "rs_1", "summary": []},
    {
        "type": "message",
        "role": "assistant",
        "content": [
            {"type": "output_text", "text": "calling"},
            {"type": "refusal", "refusal": "no"},
        ],
    },
    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a":1}'},
    {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "patch"},
    {
        "type": "function_call_output",
        "call_id": "c1",
        "output": [
            {"type": "input_text", "text": "ok"},
            {"type": "input_image", "image_url": "https://x/y.png"},
        ],
    },
    {"type": "custom_tool_call_output", "call_id": "c2", "output": "done"},
]
RESPONSES_REQUEST: Json = {
    "model": "m",
    "instructions": "be brief",
    "input": RESPONSES_ITEMS,
    "tools": [
        {"type": "function", "name": "f", "description": "d", "parameters": {}, "strict": True},
        {
            "type": "custom",
            "name": "apply_patch",
            "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"},
        },
        {"type": "web_search"},
    ],
    "tool_choice": {"type": "function", "name": "f"},
    "parallel_tool_calls": True,
    "text": {
        "format": {"type": "json_schema", "name": "n", "schema": {}, "strict": True},
        "verbosity": "low",
    },
    "reasoning": {"effort": "high", "summary": "auto"},
    "max_output_tokens": 100,
    "temperature": 0.5,
    "top_p": 0.9,
    "user": "u",
    "safety_identifier": "s",
    "stream": True,
    "store": True,
    "metadata": {"k": "v"},
}


def translate_request(name: str, payload: Any, history: Any, upstream: str, dialect: Any) -> Any:
    if name == "messages":
        messages_to_chat.estimate_tokens(payload)
        return messages_to_chat.request(payload, upstream, dialect)
    if name == "responses":
        return responses_to_chat.request(payload, upstream, dialect, history)
    return chat_to_messages.request(payload, upstream, dialect)


def client_cases() -> Iterator[tuple[str, Json, list[Json]]]:
    """Each direction's rich good request, also without the parts that turn branches off
    (a forced tool choice, tools in the last turn), and with a history for Responses."""
    yield "messages", MESSAGES_REQUEST, []
    yield "messages", {**MESSAGES_REQUEST, "tool_choice": {"type": "auto"}}, []
    yield "chat", CHAT_REQUEST, []
    chat = {**CHAT_REQUEST, "messages": CHAT_REQUEST["messages"][:3], "tool_choice": "auto"}
    yield "chat", chat, []
    yield "chat", {**chat, "max_tokens": None, "max_completion_tokens": None}, []
    yield "responses", RESPONSES_REQUEST, []
    yield "responses", {**RESPONSES_REQUEST, "input": "go on"}, RESPONSES_ITEMS


CLIENT_CASES = list(client_cases())


@pytest.mark.parametrize("case", CLIENT_CASES, ids=[case[0] for case in CLIENT_CASES])
def test_hostile_client_requests_raise_only_translation_errors(
    case: tuple[str, Json, list[Json]],
) -> None:
    """A client's request with any one field, message, item or part replaced by a wrong
    value (or left out) translates or is refused with a TranslationError, nothing else."""
    name, good, history = case
    broken = [(payload, history) for payload in variants(good)]
    broken += [(good, past) for past in variants(history)]
    # Anthropic's model names choose the thinking and sampling fields; the others, dialects.
    upstreams = ["claude-sonnet-4-5", "claude-opus-4-7"] if name == "chat" else ["local"]
    dialects = [SELF_HOSTED] if name == "chat" else [SELF_HOSTED, OPENAI, GEMINI]
    for upstream in upstreams:
        for dialect in dialects:
            orjson.dumps(translate_request(name, good, history, upstream, dialect).body)
            for payload, past in broken:
                try:
                    translated = translate_request(name, payload, past, upstream, dialect)
                except TranslationError:
                    continue
                orjson.dumps(translated.body)


def test_the_proxy_ends_a_stream_it_cannot_translate_in_the_clients_api() -> None:
    """Should a translation ever raise on an endpoint's event, the reply ends the
    client's stream with its API's error event instead of breaking the response."""

    class Broken:
        def event(self, event: Event) -> bytes:
            raise KeyError("surprise")

        def end(self) -> bytes:
            return b""

        def fail(self, message: str) -> bytes:
            return b"event: error\ndata: " + orjson.dumps({"message": message}) + b"\n\n"

    reply = StreamReply(200, Broken(), 1024)
    out = reply.feed(b"data: {}\n\n")
    assert out.startswith(b"event: error") and b"could not translate" in out
    assert reply.feed(b"data: {}\n\n") == b"" and reply.finish() == b""

    def convert(status: int, body: Any) -> tuple[int, dict[str, Any]]:
        if status == 200:
            raise TypeError("surprise")
        return status, {"error": {"message": "bad"}}

    whole = JsonReply(200, convert, 1024)
    whole.feed(b"{}")
    assert orjson.loads(whole.finish()) == {"error": {"message": "bad"}}
    assert whole.status == 502
