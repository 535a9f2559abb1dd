"""The Responses API's answer built from a chat completion's: the Response object (whole,
for :func:`relaygate.translate.responses_to_chat.response`) and the stream of events a
Responses client reads (:class:`Stream`).

Shapes followed, checked against openai-python's ``openai.types.responses`` (the tests
validate every object and event with them):

- https://platform.openai.com/docs/api-reference/responses/object : the Response object,
  its output items and ``usage``;
- https://platform.openai.com/docs/api-reference/responses-streaming : the events;
- https://platform.openai.com/docs/api-reference/chat/object and
  https://platform.openai.com/docs/api-reference/chat/streaming : what comes in.

A stream, event by event (every event has ``type`` and ``sequence_number`` from 0)::

    response.created, response.in_progress
    per output item, in output order:
      reasoning     output_item.added, reasoning_summary_part.added,
                    reasoning_summary_text.delta…, reasoning_summary_text.done,
                    reasoning_summary_part.done, output_item.done
      message       output_item.added, content_part.added, output_text.delta…,
                    output_text.done, content_part.done, output_item.done
      function_call output_item.added, function_call_arguments.delta…,
                    function_call_arguments.done, output_item.done
      custom call   output_item.added, custom_tool_call_input.delta (once),
                    custom_tool_call_input.done, output_item.done
    response.completed | response.incomplete      (or, at any point, response.failed)

Chat endpoints' ``reasoning_content`` (or ``reasoning``) becomes a reasoning item's
*summary* text, which is what Responses clients (Codex) show. A custom tool's input
arrives as JSON arguments (``{"input": "…"}``, see :mod:`.responses_to_chat`), so its
text is known only when the call is whole: it is sent as one delta when the call closes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from relaygate.translate import sse
from relaygate.translate.base import Json, array, count, first, obj, string
from relaygate.translate.sse import Event, is_done, json_object

# ResponseError.code is an enumeration; an upstream's code outside it is reported as this.
_ERROR_CODES = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt"})


@dataclass(frozen=True, slots=True)
class Origin:
    """What every Response object of one request repeats: the public ``model`` name, the
    client's ``request`` body (its settings are echoed), ``response_id`` and
    ``created_at`` (Unix seconds)."""

    model: str
    request: Json
    response_id: str
    created_at: int

    def item_id(self, prefix: str, index: int) -> str:
        """A stable id for output item ``index``: ``msg_<response id suffix>_<index>``."""
        return f"{prefix}_{self.response_id.removeprefix('resp_')}_{index}"

    def custom_tools(self) -> frozenset[str]:
        """The names of the request's ``{"type": "custom"}`` tools."""
        tools = map(obj, array(self.request.get("tools")))
        return frozenset(
            name
            for tool in tools
            if tool.get("type") == "custom" and (name := string(tool.get("name"))) is not None
        )


def build(
    origin: Origin,
    status: str,
    output: list[Json],
    usage: Json | None = None,
    *,
    reason: str | None = None,
    error: Json | None = None,
) -> Json:
    """A Response object (``object: "response"``) with ``status``, ``output`` items and
    ``usage``; ``reason`` fills ``incomplete_details``, ``error`` is ``{code, message}``.
    The request's settings are echoed as the API does, with its defaults."""
    req = origin.request
    text = obj(req.get("text"))
    reasoning = obj(req.get("reasoning"))
    return {
        "id": origin.response_id,
        "object": "response",
        "created_at": origin.created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": {"reason": reason} if reason else None,
        "instructions": req.get("instructions"),
        "max_output_tokens": req.get("max_output_tokens"),
        "max_tool_calls": req.get("max_tool_calls"),
        "model": origin.model,
        "output": output,
        "parallel_tool_calls": _default(req.get("parallel_tool_calls"), True),
        "previous_response_id": req.get("previous_response_id"),
        "prompt_cache_key": req.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": req.get("safety_identifier"),
        "store": _default(req.get("store"), True),
        "temperature": req.get("temperature"),
        "text": {"format": {"type": "text"}, **text},
        "tool_choice": _default(req.get("tool_choice"), "auto"),
        "tools": req.get("tools") or [],
        "top_p": req.get("top_p"),
        "truncation": _default(req.get("truncation"), "disabled"),
        "usage": usage,
        "user": req.get("user"),
        "metadata": req.get("metadata") or {},
    }


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value


def outcome(finish_reason: Any) -> tuple[str, str | None]:
    """A chat ``finish_reason`` as a Response ``status`` and ``incomplete_details.reason``:
    ``length`` → incomplete (max_output_tokens), ``content_filter`` → incomplete
    (content_filter), anything else → completed."""
    if finish_reason == "length":
        return "incomplete", "max_output_tokens"
    if finish_reason == "content_filter":
        return "incomplete", "content_filter"
    return "completed", None


def usage(chat_usage: Any) -> Json | None:
    """Chat ``usage`` (prompt/completion tokens and their details) as a Response's
    (input/output tokens and theirs); None when the endpoint reported none."""
    if not isinstance(chat_usage, dict):
        return None
    prompt = _tokens(chat_usage.get("prompt_tokens"))
    completion = _tokens(chat_usage.get("completion_tokens"))
    prompt_details = obj(chat_usage.get("prompt_tokens_details"))
    completion_details = obj(chat_usage.get("completion_tokens_details"))
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": _tokens(prompt_details.get("cached_tokens")),
            "cache_write_tokens": _tokens(prompt_details.get("cache_write_tokens")),
        },
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": _tokens(completion_details.get("reasoning_tokens"))
        },
        "total_tokens": _tokens(chat_usage.get("total_tokens")) or prompt + completion,
    }


def _tokens(value: Any) -> int:
    """A token count, 0 when ``value`` is not one."""
    return count(value) or 0


def reasoning_text(message: Json) -> str:
    """A chat message's (or delta's) reasoning: ``reasoning_content`` (vLLM, llama.cpp),
    else ``reasoning`` (others); "" when there is none."""
    return string(message.get("reasoning_content")) or string(message.get("reasoning")) or ""


def text_part(text: str) -> Json:
    """An ``output_text`` content part."""
    return {"type": "output_text", "text": text, "annotations": []}


def message_item(item_id: str, content: list[Json], status: str = "completed") -> Json:
    """An assistant ``message`` output item."""
    return {
        "type": "message",
        "id": item_id,
        "role": "assistant",
        "status": status,
        "content": content,
    }


def reasoning_item(item_id: str, summary: list[Json]) -> Json:
    """A ``reasoning`` output item whose ``summary`` is a list of ``summary_text`` parts."""
    return {"type": "reasoning", "id": item_id, "summary": summary}


def call_item(
    item_id: str, call_id: str, name: str, arguments: str, *, custom: bool, done: bool = True
) -> Json:
    """A ``function_call`` item, or, for a custom tool (``custom``), a
    ``custom_tool_call`` whose ``input`` is read out of the JSON ``arguments``."""
    if custom:
        return {
            "type": "custom_tool_call",
            "id": item_id,
            "call_id": call_id,
            "name": name,
            "input": custom_input(arguments) if done else "",
        }
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments if done else "",
        "status": "completed" if done else "in_progress",
    }


def custom_input(arguments: str) -> str:
    """A custom tool's text out of the function arguments it was asked for as
    (``{"input": "…"}``); arguments that are not that object are taken as the text itself,
    as a model that ignored the schema meant them."""
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    if not isinstance(parsed, dict) or "input" not in parsed:
        return arguments
    value = parsed["input"]
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def failure(message: str, code: Any = None) -> Json:
    """A Response ``error``: ``{code, message}``, the code one the API defines."""
    known = string(code)
    return {"code": known if known in _ERROR_CODES else "server_error", "message": message}


@dataclass(slots=True)
class _Item:
    """An output item being streamed: its ``kind`` (message, reasoning, function_call,
    custom_tool_call), output ``index`` and id, and the text received so far."""

    kind: str
    index: int
    item_id: str
    parts: list[str] = field(default_factory=list)
    call_id: str = ""
    name: str = ""

    @property
    def text(self) -> str:
        return "".join(self.parts)


class Stream:
    """Chat-completion chunks (server-sent ``data:`` events ending with ``data: [DONE]``)
    as Responses streaming events (``event: <type>`` + ``data: <json>``), see the module
    docstring for the sequence. ``result`` is the final Response once the stream completed
    (None before, and after a failure); the proxy stores it."""

    def __init__(self, model: str, *, request: Json, response_id: str, created_at: int) -> None:
        self._origin = Origin(model, request, response_id, created_at)
        self._custom = self._origin.custom_tools()
        self._seq = 0
        self._started = False
        self._finished = False
        self._block: _Item | None = None  # the open message or reasoning item
        self._calls: dict[int, _Item] = {}  # open tool calls by the chunks' tool-call index
        self._output: dict[int, Json] = {}  # closed items by output index
        self._next_index = 0
        self._finish_reason: str | None = None
        self._usage: Json | None = None
        self.result: Json | None = None

    def event(self, event: Event) -> bytes:
        """One chat-completions event; returns the Responses events it makes."""
        if self._finished:
            return b""
        if is_done(event):
            return self._complete()
        chunk = json_object(event)
        if chunk is None:
            return b""
        if chunk.get("error") is not None:
            return self._failed(*_error_of(chunk["error"]))
        out: list[bytes] = []
        self._prelude(out)
        self._chunk(chunk, out)
        return b"".join(out)

    def end(self) -> bytes:
        """The endpoint's stream ended: completes the response if ``[DONE]`` did not."""
        return b"" if self._finished else self._complete()

    def fail(self, message: str) -> bytes:
        """The endpoint's stream broke off: ``response.failed`` (code ``server_error``)."""
        return b"" if self._finished else self._failed(message, "server_error")

    def _emit(self, out: list[bytes], kind: str, fields: Json) -> None:
        out.append(sse.encode({"type": kind, "sequence_number": self._seq, **fields}, kind))
        self._seq += 1

    def _prelude(self, out: list[bytes]) -> None:
        if self._started:
            return
        self._started = True
        response = build(self._origin, "in_progress", [])
        self._emit(out, "response.created", {"response": response})
        self._emit(out, "response.in_progress", {"response": response})

    def _chunk(self, chunk: Json, out: list[bytes]) -> None:
        if isinstance(chunk.get("usage"), dict):
            self._usage = usage(chunk["usage"])
        choice = first(chunk.get("choices"))
        delta = obj(choice.get("delta"))
        reasoning = reasoning_text(delta)
        if reasoning:
            self._text("reasoning", reasoning, out)
        for key in ("content", "refusal"):
            if text := string(delta.get(key)):
                self._text("message", text, out)
        for position, fragment in enumerate(array(delta.get("tool_calls"))):
            if isinstance(fragment, dict):
                self._call(position, fragment, out)
        if reason := string(choice.get("finish_reason")):
            self._finish_reason = reason

    def _open(self, kind: str, prefix: str) -> _Item:
        item = _Item(kind, self._next_index, self._origin.item_id(prefix, self._next_index))
        self._next_index += 1
        return item

    def _text(self, kind: str, text: str, out: list[bytes]) -> None:
        block = self._block
        if block is None or block.kind != kind:
            self._close_all(out)
            block = self._block = self._open(kind, "msg" if kind == "message" else "rs")
            self._open_block(block, out)
        block.parts.append(text)
        where = {"item_id": block.item_id, "output_index": block.index}
        if kind == "message":
            fields = {**where, "content_index": 0, "delta": text, "logprobs": []}
            self._emit(out, "response.output_text.delta", fields)
        else:
            fields = {**where, "summary_index": 0, "delta": text}
            self._emit(out, "response.reasoning_summary_text.delta", fields)

    def _open_block(self, block: _Item, out: list[bytes]) -> None:
        where = {"item_id": block.item_id, "output_index": block.index}
        if block.kind == "message":
            item = message_item(block.item_id, [], "in_progress")
            kind, part = "content_part", {"content_index": 0, "part": text_part("")}
        else:
            item = reasoning_item(block.item_id, [])
            summary = {"type": "summary_text", "text": ""}
            kind, part = "reasoning_summary_part", {"summary_index": 0, "part": summary}
        self._emit(out, "response.output_item.added", {"item": item, "output_index": block.index})
        self._emit(out, f"response.{kind}.added", {**where, **part})

    def _close_block(self, out: list[bytes]) -> None:
        block, self._block = self._block, None
        if block is None:
            return
        where = {"item_id": block.item_id, "output_index": block.index}
        text = block.text
        if block.kind == "message":
            part = text_part(text)
            fields = {**where, "content_index": 0, "text": text, "logprobs": []}
            self._emit(out, "response.output_text.done", fields)
            self._emit(
                out, "response.content_part.done", {**where, "content_index": 0, "part": part}
            )
            item = message_item(block.item_id, [part])
        else:
            summary = {"type": "summary_text", "text": text}
            fields = {**where, "summary_index": 0, "text": text}
            self._emit(out, "response.reasoning_summary_text.done", fields)
            part = {**where, "summary_index": 0, "part": summary}
            self._emit(out, "response.reasoning_summary_part.done", part)
            item = reasoning_item(block.item_id, [summary])
        self._done(block.index, item, out)

    def _done(self, index: int, item: Json, out: list[bytes]) -> None:
        self._output[index] = item
        self._emit(out, "response.output_item.done", {"item": item, "output_index": index})

    def _call(self, position: int, fragment: Json, out: list[bytes]) -> None:
        index = count(fragment.get("index"))
        key = position if index is None else index
        function = obj(fragment.get("function"))
        call_id = string(fragment.get("id"))
        call = self._calls.get(key)
        if call is not None and call_id and call.call_id and call_id != call.call_id:
            # A server that numbers every call 0: a new id is a new call.
            self._close_call(self._calls.pop(key), out)
            call = None
        if call is None:
            self._close_block(out)
            call = self._calls[key] = self._open_call(call_id, function.get("name"), out)
        elif (name := string(function.get("name"))) and not call.name:
            call.name = name
        arguments = string(function.get("arguments"))
        if arguments:
            call.parts.append(arguments)
            if call.kind == "function_call":
                fields = {"item_id": call.item_id, "output_index": call.index, "delta": arguments}
                self._emit(out, "response.function_call_arguments.delta", fields)

    def _open_call(self, call_id: str | None, name: Any, out: list[bytes]) -> _Item:
        name = string(name) or ""
        custom = name in self._custom
        call = self._open(
            "custom_tool_call" if custom else "function_call", "ctc" if custom else "fc"
        )
        call.name = name
        call.call_id = call_id or f"call_{call.item_id}"
        item = call_item(call.item_id, call.call_id, name, "", custom=custom, done=False)
        self._emit(out, "response.output_item.added", {"item": item, "output_index": call.index})
        return call

    def _close_call(self, call: _Item, out: list[bytes]) -> None:
        custom = call.kind == "custom_tool_call"
        item = call_item(call.item_id, call.call_id, call.name, call.text, custom=custom)
        where = {"item_id": call.item_id, "output_index": call.index}
        if custom:
            if item["input"]:
                self._emit(
                    out, "response.custom_tool_call_input.delta", {**where, "delta": item["input"]}
                )
            self._emit(
                out, "response.custom_tool_call_input.done", {**where, "input": item["input"]}
            )
        else:
            fields = {**where, "arguments": call.text}
            self._emit(out, "response.function_call_arguments.done", fields)
        self._done(call.index, item, out)

    def _close_all(self, out: list[bytes]) -> None:
        self._close_block(out)
        for call in sorted(self._calls.values(), key=lambda c: c.index):
            self._close_call(call, out)
        self._calls.clear()

    def _output_items(self) -> list[Json]:
        return [self._output[i] for i in sorted(self._output)]

    def _complete(self) -> bytes:
        out: list[bytes] = []
        self._prelude(out)
        self._close_all(out)
        status, reason = outcome(self._finish_reason)
        response = build(self._origin, status, self._output_items(), self._usage, reason=reason)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        self._emit(out, kind, {"response": response})
        self._finished = True
        self.result = response
        return b"".join(out)

    def _failed(self, message: str, code: Any) -> bytes:
        out: list[bytes] = []
        self._prelude(out)
        error = failure(message, code)
        response = build(self._origin, "failed", self._output_items(), self._usage, error=error)
        self._emit(out, "response.failed", {"response": response})
        self._finished = True
        return b"".join(out)


def _error_of(error: Any) -> tuple[str, Any]:
    """An error chunk's ``error`` (an object with ``message``/``code``, or a string) as
    (message, code)."""
    message = string(obj(error).get("message")) or string(error)
    return message or "upstream error", obj(error).get("code")
