"""Responses client → chat-completions endpoint, streaming: chat chunks in, Responses events out."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from relaygate.translate import responses_to_chat as rtc
from relaygate.translate import sse

Json = dict[str, Any]
EVENT = TypeAdapter(ResponseStreamEvent)
SHELL = {"type": "function", "name": "shell", "parameters": {"type": "object"}}
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "format": {"type": "text"}}
REQUEST: Json = {"model": "public", "input": "hi", "stream": True, "tools": [SHELL, APPLY_PATCH]}
USAGE = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}


def delta(finish: str | None = None, **fields: Any) -> Json:
    choice = {"index": 0, "delta": fields, "finish_reason": finish}
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up",
        "choices": [choice],
    }


def fragment(
    index: int, arguments: str, call_id: str | None = None, name: str | None = None
) -> Json:
    call: Json = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    return delta(tool_calls=[call])


def usage_chunk() -> Json:
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up",
        "choices": [],
        "usage": USAGE,
    }


def wire(chunks: list[Json], done: bool = True) -> bytes:
    """The endpoint's stream as bytes, with CRLF line ends to make the reader work."""
    body = b"".join(sse.encode(chunk) for chunk in chunks) + (sse.DONE if done else b"")
    return body.replace(b"\n", b"\r\n")


def run(
    raw: bytes, step: int = 7, request: Json = REQUEST, end: bool = True
) -> tuple[list[Json], rtc.Stream]:
    """Feeds ``raw`` to a Stream ``step`` bytes at a time; returns the events it sent, each
    validated against the openai SDK's ResponseStreamEvent, and the stream."""
    stream = rtc.Stream("public", request=request, response_id="resp_s1", created_at=50)
    reader = sse.EventReader()
    sent = b""
    for start in range(0, len(raw), step):
        for event in reader.feed(raw[start : start + step]):
            sent += stream.event(event)
    for event in reader.finish():
        sent += stream.event(event)
    if end:
        sent += stream.end()
    return parse(sent), stream


def parse(sent: bytes) -> list[Json]:
    events = []
    for event in sse.EventReader().feed(sent):
        data = json.loads(event.data)
        assert event.name == data["type"]
        EVENT.validate_python(data)
        events.append(data)
    return events


def types(events: list[Json]) -> list[str]:
    return [e["type"].removeprefix("response.") for e in events]


TEXT_EVENTS = [
    "created",
    "in_progress",
    "output_item.added",
    "content_part.added",
    "output_text.delta",
    "output_text.delta",
    "output_text.delta",
    "output_text.done",
    "content_part.done",
    "output_item.done",
    "completed",
]


@pytest.mark.parametrize("step", [1, 2, 5, 13, 4096])
def test_text(step: int) -> None:
    """A text answer, however the bytes are split, is one message item streamed as deltas,
    closed in order, then response.completed with the whole Response and its usage."""
    chunks = [
        delta(role="assistant", content=""),
        delta(content="Hel"),
        delta(content="lo, "),
        delta(content="wörld"),
        delta("stop"),
        usage_chunk(),
    ]
    events, stream = run(wire(chunks), step)
    assert types(events) == TEXT_EVENTS
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "Hello, wörld"
    added = events[2]
    assert added["item"] == {
        "type": "message",
        "id": "msg_s1_0",
        "role": "assistant",
        "status": "in_progress",
        "content": [],
    }
    for e in events[3:10]:
        assert e["output_index"] == 0
        assert e.get("item_id", e.get("item", {}).get("id")) == "msg_s1_0"
    assert events[7]["text"] == "Hello, wörld"
    completed = events[-1]["response"]
    assert completed["status"] == "completed"
    assert completed["usage"]["input_tokens"] == 12
    assert completed["usage"]["output_tokens"] == 7
    assert completed["usage"]["total_tokens"] == 19
    assert Response.model_validate(completed).output_text == "Hello, wörld"
    assert stream.result == completed


def test_created_in_progress() -> None:
    """The stream opens with response.created and response.in_progress, both carrying the
    in-progress Response with no output."""
    events, _ = run(wire([delta(content="x")]))
    for event in events[:2]:
        response = event["response"]
        assert response["status"] == "in_progress"
        assert response["output"] == []
        assert response["id"] == "resp_s1"
        assert response["model"] == "public"
        Response.model_validate(response)


def test_stream_result_matches_response() -> None:
    """The Response a stream completes with is the one response() builds from the same
    answer sent whole."""
    arguments = '{"cmd": "ls -la"}'
    chunks = [
        delta(reasoning_content="Think"),
        delta(content="Sure."),
        fragment(0, arguments[:5], "call_1", "shell"),
        fragment(0, arguments[5:]),
        delta("tool_calls"),
        usage_chunk(),
    ]
    _, stream = run(wire(chunks))
    message = {
        "role": "assistant",
        "content": "Sure.",
        "reasoning_content": "Think",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "shell", "arguments": arguments},
            }
        ],
    }
    body = {
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
        "usage": USAGE,
    }
    whole = rtc.response(body, "public", request=REQUEST, response_id="resp_s1", created_at=50)
    assert stream.result == whole


def test_arguments_split_across_many_chunks() -> None:
    """A tool call's arguments sent a character at a time are streamed as one delta per
    fragment and reassembled exactly in the done event and the item."""
    arguments = json.dumps({"cmd": "grep -rn 'x' src/ | head", "timeout": 10})
    chunks = [fragment(0, "", "call_9", "shell")]
    chunks += [fragment(0, ch) for ch in arguments]
    chunks += [delta("tool_calls"), usage_chunk()]
    events, stream = run(wire(chunks), 3)
    assert types(events) == [
        "created",
        "in_progress",
        "output_item.added",
        *["function_call_arguments.delta"] * len(arguments),
        "function_call_arguments.done",
        "output_item.done",
        "completed",
    ]
    added = events[2]["item"]
    assert added == {
        "type": "function_call",
        "id": "fc_s1_0",
        "call_id": "call_9",
        "name": "shell",
        "arguments": "",
        "status": "in_progress",
    }
    deltas = [e["delta"] for e in events if e["type"].endswith("arguments.delta")]
    assert "".join(deltas) == arguments
    assert events[-3]["arguments"] == arguments
    assert events[-2]["item"]["arguments"] == arguments
    assert events[-2]["item"]["status"] == "completed"
    assert stream.result is not None
    assert stream.result["output"][0]["call_id"] == "call_9"


def test_parallel_tool_calls() -> None:
    """Two calls in one answer are two function_call items, each with its own output_index,
    item id and arguments."""
    chunks = [
        delta(content="Two."),
        fragment(0, '{"cmd":', "c1", "shell"),
        fragment(0, '"ls"}'),
        fragment(1, '{"cmd":', "c2", "shell"),
        fragment(1, '"pwd"}'),
        delta("tool_calls"),
        usage_chunk(),
    ]
    events, stream = run(wire(chunks))
    assert types(events) == [
        "created",
        "in_progress",
        "output_item.added",
        "content_part.added",
        "output_text.delta",
        "output_text.done",
        "content_part.done",
        "output_item.done",
        "output_item.added",
        "function_call_arguments.delta",
        "function_call_arguments.delta",
        "output_item.added",
        "function_call_arguments.delta",
        "function_call_arguments.delta",
        "function_call_arguments.done",
        "output_item.done",
        "function_call_arguments.done",
        "output_item.done",
        "completed",
    ]
    done = {
        e["item"]["call_id"]: e
        for e in events
        if e["type"] == "response.output_item.done" and e["item"]["type"] == "function_call"
    }
    assert done["c1"]["output_index"] == 1 and done["c1"]["item"]["id"] == "fc_s1_1"
    assert done["c2"]["output_index"] == 2 and done["c2"]["item"]["id"] == "fc_s1_2"
    assert done["c1"]["item"]["arguments"] == '{"cmd":"ls"}'
    assert done["c2"]["item"]["arguments"] == '{"cmd":"pwd"}'
    assert stream.result is not None
    assert [i["type"] for i in stream.result["output"]] == [
        "message",
        "function_call",
        "function_call",
    ]


def test_calls_all_numbered_zero() -> None:
    """A server that numbers every call 0 still gives one item per call id."""
    chunks = [
        fragment(0, '{"cmd":"ls"}', "c1", "shell"),
        fragment(0, '{"cmd":"pwd"}', "c2", "shell"),
        delta("tool_calls"),
    ]
    _, stream = run(wire(chunks))
    assert stream.result is not None
    calls = [(i["call_id"], i["arguments"]) for i in stream.result["output"]]
    assert calls == [("c1", '{"cmd":"ls"}'), ("c2", '{"cmd":"pwd"}')]


def test_custom_tool_call() -> None:
    """A call to a custom tool streams as a custom_tool_call item whose raw input is sent
    once, when the call is whole."""
    patch = "*** Begin Patch\n*** Add File: a\n+x\n*** End Patch"
    arguments = json.dumps({"input": patch})
    chunks = [
        fragment(0, arguments[:9], "p1", "apply_patch"),
        fragment(0, arguments[9:]),
        delta("tool_calls"),
        usage_chunk(),
    ]
    events, stream = run(wire(chunks))
    assert types(events) == [
        "created",
        "in_progress",
        "output_item.added",
        "custom_tool_call_input.delta",
        "custom_tool_call_input.done",
        "output_item.done",
        "completed",
    ]
    assert events[2]["item"] == {
        "type": "custom_tool_call",
        "id": "ctc_s1_0",
        "call_id": "p1",
        "name": "apply_patch",
        "input": "",
    }
    assert events[3]["delta"] == patch
    assert events[4]["input"] == patch
    assert stream.result is not None
    assert stream.result["output"][0]["input"] == patch


def test_reasoning() -> None:
    """Reasoning deltas stream as a reasoning item's summary text, closed before the
    answer's message item opens."""
    chunks = [
        delta(reasoning_content="Let me "),
        delta(reasoning="think."),
        delta(content="42"),
        delta("stop"),
    ]
    events, stream = run(wire(chunks))
    assert types(events) == [
        "created",
        "in_progress",
        "output_item.added",
        "reasoning_summary_part.added",
        "reasoning_summary_text.delta",
        "reasoning_summary_text.delta",
        "reasoning_summary_text.done",
        "reasoning_summary_part.done",
        "output_item.done",
        "output_item.added",
        "content_part.added",
        "output_text.delta",
        "output_text.done",
        "content_part.done",
        "output_item.done",
        "completed",
    ]
    assert events[6]["text"] == "Let me think."
    assert events[8]["item"] == {
        "type": "reasoning",
        "id": "rs_s1_0",
        "summary": [{"type": "summary_text", "text": "Let me think."}],
    }
    assert events[9]["output_index"] == 1
    assert stream.result is not None
    assert stream.result["usage"] is None


def test_length_is_incomplete() -> None:
    """A stream cut by the output cap ends with response.incomplete, reason
    max_output_tokens, and that Response is the result."""
    events, stream = run(wire([delta(content="Hel"), delta("length"), usage_chunk()]))
    assert types(events)[-1] == "incomplete"
    response = events[-1]["response"]
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert stream.result == response


def test_error_chunk() -> None:
    """A chunk carrying an error ends the stream with response.failed and nothing more,
    not even at [DONE] or end()."""
    chunks = [
        delta(content="Hi"),
        {"error": {"message": "model crashed", "code": 500}},
        delta(content="more"),
    ]
    events, stream = run(wire(chunks))
    assert types(events) == [
        "created",
        "in_progress",
        "output_item.added",
        "content_part.added",
        "output_text.delta",
        "failed",
    ]
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "model crashed"}
    assert stream.result is None
    assert stream.fail("again") == b""


def test_fail() -> None:
    """fail() after a broken-off stream sends response.failed with code server_error; the
    stream then stays silent."""
    stream = rtc.Stream("public", request=REQUEST, response_id="resp_s1", created_at=50)
    first = stream.event(sse.Event(None, json.dumps(delta(content="partial"))))
    events = parse(first + stream.fail("upstream connection reset"))
    assert types(events)[-1] == "failed"
    assert events[-1]["response"]["error"] == {
        "code": "server_error",
        "message": "upstream connection reset",
    }
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert stream.end() == b""
    assert stream.result is None


def test_end_without_done() -> None:
    """end() completes a stream whose endpoint never sent [DONE]; a second end() sends
    nothing."""
    events, stream = run(wire([delta(content="ok"), delta("stop")], done=False), end=False)
    assert types(events)[-1] == "output_text.delta"
    closing = parse(stream.end())
    assert types(closing) == [
        "output_text.done",
        "content_part.done",
        "output_item.done",
        "completed",
    ]
    assert closing[0]["sequence_number"] == events[-1]["sequence_number"] + 1
    assert stream.result is not None and stream.result["status"] == "completed"
    assert stream.end() == b""


def test_done_then_end() -> None:
    """[DONE] completes the response; end() afterwards adds nothing."""
    events, stream = run(wire([delta(content="ok")]), end=False)
    assert types(events)[-1] == "completed"
    assert stream.end() == b""


def test_empty_stream() -> None:
    """An endpoint stream with no chunks at all still gives a well-formed, empty completed
    Response."""
    events, stream = run(sse.DONE)
    assert types(events) == ["created", "in_progress", "completed"]
    assert stream.result is not None and stream.result["output"] == []


def test_openai_sdk_reads_the_stream() -> None:
    """The openai SDK's responses.stream() accumulates the events into the final Response:
    reasoning, text, parallel function calls and a custom tool call, with usage."""
    chunks = [delta(reasoning_content="hm"), delta(content="Two."),
              fragment(0, '{"cmd":', "c1", "shell"), fragment(0, '"ls"}'),
              fragment(1, '{"cmd":"pwd"}', "c2", "shell"),
              fragment(2, '{"input":"*** Begin Patch"}', "p1", "apply_patch"),
              delta("tool_calls"), usage_chunk()]  # fmt: skip

    def endpoint(request: httpx.Request) -> httpx.Response:
        stream = rtc.Stream(
            "public", request=json.loads(request.content), response_id="resp_k", created_at=9
        )
        reader = sse.EventReader()
        sent = b"".join(stream.event(e) for e in [*reader.feed(wire(chunks)), *reader.finish()])
        headers = {"content-type": "text/event-stream"}
        return httpx.Response(200, content=sent + stream.end(), headers=headers)

    transport = httpx.MockTransport(endpoint)
    with (
        httpx.Client(transport=transport) as http,
        openai.OpenAI(api_key="k", base_url="http://relaygate.test/v1", http_client=http) as client,
        client.responses.stream(model="public", input="hi", tools=[SHELL, APPLY_PATCH]) as stream,
    ):
        final = stream.get_final_response()
    assert final.id == "resp_k"
    assert final.output_text == "Two."
    calls = [(o.type, getattr(o, "call_id", None)) for o in final.output[2:]]
    assert calls == [("function_call", "c1"), ("function_call", "c2"), ("custom_tool_call", "p1")]
    assert final.usage is not None and final.usage.total_tokens == 19
