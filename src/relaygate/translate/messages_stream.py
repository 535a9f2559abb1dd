"""The Messages answer built from a chat completion's, for
:mod:`relaygate.translate.messages_to_chat`: the whole Message (:func:`response`), an error
(:func:`error`) and the stream of events a Messages client reads (:class:`Stream`).

Followed: https://platform.openai.com/docs/api-reference/chat/object ,
https://platform.openai.com/docs/api-reference/chat/streaming (what comes in),
https://docs.anthropic.com/en/api/messages , https://docs.anthropic.com/en/api/messages-streaming
and https://docs.anthropic.com/en/api/errors (what goes out).

Answer, chat → Anthropic::

    reasoning_content / reasoning    → a thinking block (empty signature)
    content                          → a text block
    tool_calls                       → tool_use blocks (arguments not a JSON object → {})
    finish_reason                    → stop_reason: stop → end_turn (stop_sequence where vLLM
                                       names the stop string), length → max_tokens,
                                       tool_calls → tool_use, content_filter → refusal
    usage                            → input_tokens (less cached ones), output_tokens,
                                       cache_read_input_tokens

The request side lives in :mod:`.messages_to_chat`, which re-exports what is here; this
module imports nothing from it, so the two never import each other.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import orjson

from relaygate.translate import sse
from relaygate.translate.base import Json, array, count, first, obj, string
from relaygate.translate.sse import Event, is_done, json_object

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}

ToolKey = int | str
"""How a streamed tool call is told apart: its ``index``, or its ``id`` where a server
sends no index or one already taken."""


# -- response ----------------------------------------------------------------------------


def response(body: Json, model: str) -> Json:
    """A chat completion (https://platform.openai.com/docs/api-reference/chat/object) as a
    Message (https://docs.anthropic.com/en/api/messages): the first choice's reasoning as
    a thinking block (empty signature), its text, then its tool calls as tool_use blocks.
    Arguments that are not a JSON object become ``{}``: Anthropic's ``input`` must be one,
    and the client's tool then reports what is missing rather than the whole answer failing.
    """
    choice = first(body.get("choices"))
    content = _content(obj(choice.get("message")))
    has_tools = any(block["type"] == "tool_use" for block in content)
    reason, sequence = _stop(choice.get("finish_reason"), choice.get("stop_reason"), has_tools)
    return {
        "id": _message_id(body.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": _usage(body.get("usage")),
    }


def _content(message: Json) -> list[Json]:
    blocks: list[Json] = []
    reasoning = _reasoning(message)
    if reasoning:
        blocks.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = string(message.get("content"))
    if text:
        blocks.append({"type": "text", "text": text})
    for call in map(obj, array(message.get("tool_calls"))):
        function = obj(call.get("function"))
        name, arguments = string(function.get("name")) or "", _arguments(function.get("arguments"))
        call_id = string(call.get("id")) or _new_id("toolu_")
        blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": arguments})
    return blocks


def _reasoning(message: Json) -> str:
    """The reasoning text: vLLM and llama.cpp say ``reasoning_content``, others ``reasoning``."""
    return string(message.get("reasoning_content")) or string(message.get("reasoning")) or ""


def _arguments(arguments: Any) -> Json:
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return {}
    return obj(arguments)


def _stop(finish: Any, matched: Any, has_tools: bool) -> tuple[str, str | None]:
    """The stop_reason and stop_sequence. vLLM names the stop string that ended the answer
    in the choice's ``stop_reason``; some servers say ``stop`` after tool calls."""
    if finish == "stop" and isinstance(matched, str):
        return "stop_sequence", matched
    reason = _STOP_REASONS.get(string(finish) or "", "end_turn")
    if reason == "end_turn" and has_tools:
        reason = "tool_use"
    return reason, None


def _usage(usage: Any) -> Json:
    """Chat usage as Anthropic's, where cached prompt tokens are counted apart from
    ``input_tokens`` (OpenAI counts them inside ``prompt_tokens``)."""
    usage = obj(usage)
    cached = _tokens(obj(usage.get("prompt_tokens_details")).get("cached_tokens"))
    prompt = _tokens(usage.get("prompt_tokens"))
    completion = _tokens(usage.get("completion_tokens"))
    out: Json = {"input_tokens": max(0, prompt - cached), "output_tokens": completion}
    if cached:
        out["cache_read_input_tokens"] = cached
    return out


def _tokens(value: Any) -> int:
    """A token count, 0 when ``value`` is not one."""
    return count(value) or 0


def _index(call: Json) -> int | None:
    return count(call.get("index"))


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def _message_id(chat_id: Any) -> str:
    return f"msg_{chat_id}" if isinstance(chat_id, str) and chat_id else _new_id("msg_")


# -- errors ------------------------------------------------------------------------------


def error(status: int, body: Any) -> Json:
    """The endpoint's error answer as Anthropic's ``{"type": "error", "error": {"type",
    "message"}}`` (https://docs.anthropic.com/en/api/errors): the type by status, the
    message from OpenAI's ``{"error": {"message"}}``, ``{"error": "…"}``, FastAPI's
    ``{"detail": …}`` or ``{"message"}``, else one naming the status."""
    kind = _ERROR_TYPES.get(status) or (
        "invalid_request_error" if 400 <= status < 500 else "api_error"
    )
    return {"type": "error", "error": {"type": kind, "message": _error_message(status, body)}}


def _error_message(status: int, body: Any) -> str:
    if isinstance(body, dict):
        inner = body.get("error")
        places = (obj(inner).get("message"), inner, body.get("detail"), body.get("message"))
        for found in places:
            if isinstance(found, str) and found:
                return found
            if isinstance(found, list) and found:  # FastAPI's validation errors
                return json.dumps(found, ensure_ascii=False)
    elif isinstance(body, str) and body:
        return body
    return f"the model endpoint answered HTTP {status}"


# -- stream ------------------------------------------------------------------------------


class Stream:
    """OpenAI chat chunks (https://platform.openai.com/docs/api-reference/chat/streaming)
    as Anthropic's stream (https://docs.anthropic.com/en/api/messages-streaming):
    ``message_start``; per block ``content_block_start``, its deltas (``thinking_delta``,
    ``text_delta``, ``input_json_delta``) and ``content_block_stop``; then ``message_delta``
    with the stop reason and usage, and ``message_stop``. A chunk carrying an error ends
    the stream with an ``error`` event. Implements :class:`relaygate.translate.base.Stream`.
    """

    def __init__(self, model: str) -> None:
        self._model = model
        self._started = False
        self._closed = False
        self._index = -1
        self._open: tuple[str, ToolKey | None] | None = None
        self._calls: dict[ToolKey, int | None] = {}
        self._ids: dict[str, ToolKey] = {}
        self._finish: str | None = None
        self._matched: str | None = None
        self._usage: Any = None

    def event(self, event: Event) -> bytes:
        """One chunk (or ``[DONE]``) as the Anthropic events it completes; data that is not
        a JSON object is ignored."""
        if self._closed:
            return b""
        if is_done(event):
            return self.end()
        chunk = json_object(event)
        if chunk is None:
            return b""
        if event.name == "error" or chunk.get("error") is not None:
            return self._error(chunk)
        out = [self._start(chunk)]
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for choice in map(obj, array(chunk.get("choices"))):
            if choice.get("index", 0) == 0:
                out.append(self._choice(choice))
        return b"".join(out)

    def end(self) -> bytes:
        """Closes the open block, then ``message_delta`` and ``message_stop``; b"" if the
        stream is already closed."""
        if self._closed:
            return b""
        out = [self._start({}), self._stop_block()]
        reason, sequence = _stop(self._finish, self._matched, bool(self._calls))
        usage = _usage(self._usage) if self._usage is not None else {"output_tokens": 0}
        delta = {"stop_reason": reason, "stop_sequence": sequence}
        out.append(
            sse.encode({"type": "message_delta", "delta": delta, "usage": usage}, "message_delta")
        )
        out.append(sse.encode({"type": "message_stop"}, "message_stop"))
        self._closed = True
        return b"".join(out)

    def fail(self, message: str) -> bytes:
        """An ``api_error`` event with ``message``; nothing follows it."""
        if self._closed:
            return b""
        self._closed = True
        body = {"type": "error", "error": {"type": "api_error", "message": message}}
        return sse.encode(body, "error")

    def _error(self, chunk: Json) -> bytes:
        code = count(obj(chunk.get("error")).get("code"))
        status = code if code is not None and 400 <= code < 600 else 500
        self._closed = True
        return sse.encode(error(status, chunk), "error")

    def _start(self, chunk: Json) -> bytes:
        if self._started:
            return b""
        self._started = True
        message = response({"id": chunk.get("id"), "usage": chunk.get("usage")}, self._model)
        message["stop_reason"] = None
        return sse.encode({"type": "message_start", "message": message}, "message_start")

    def _choice(self, choice: Json) -> bytes:
        delta = obj(choice.get("delta"))
        out: list[bytes] = []
        reasoning = _reasoning(delta)
        if reasoning:
            out.append(self._block(("thinking", None), {"thinking": "", "signature": ""}))
            out.append(self._delta({"type": "thinking_delta", "thinking": reasoning}))
        text = string(delta.get("content"))
        if text:
            out.append(self._block(("text", None), {"text": ""}))
            out.append(self._delta({"type": "text_delta", "text": text}))
        out.extend(self._tool(obj(call)) for call in array(delta.get("tool_calls")))
        if (finish := string(choice.get("finish_reason"))) is not None:
            self._finish = finish
        if (matched := string(choice.get("stop_reason"))) is not None:
            self._matched = matched
        return b"".join(out)

    def _tool(self, call: Json) -> bytes:
        key = self._tool_key(call)
        function = obj(call.get("function"))
        out = b""
        if key not in self._calls:
            self._calls[key] = _index(call)
            call_id = string(call.get("id")) or _new_id("toolu_")
            start: Json = {"id": call_id, "name": string(function.get("name")) or "", "input": {}}
            out = self._block(("tool_use", key), start)
        elif self._open != ("tool_use", key):
            # Anthropic blocks cannot reopen once stopped; no server known to us
            # interleaves the fragments of parallel calls.
            return b""
        arguments = string(function.get("arguments"))
        if arguments:
            out += self._delta({"type": "input_json_delta", "partial_json": arguments})
        return out

    def _tool_key(self, call: Json) -> ToolKey:
        """Which call a tool-call delta belongs to: the one its ``id`` names (a new id is a
        new call, even where a server numbers every call 0), else the call under way if the
        ``index`` is its own or absent, else the call at that ``index`` (or 0)."""
        index, call_id = _index(call), string(call.get("id"))
        if call_id:
            if call_id not in self._ids:
                fresh = index is not None and index not in self._calls
                self._ids[call_id] = index if fresh and index is not None else call_id
            return self._ids[call_id]
        under_way = self._open[1] if self._open else None
        if under_way is not None and index in (None, self._calls[under_way]):
            return under_way
        return 0 if index is None else index

    def _block(self, kind: tuple[str, ToolKey | None], start: Json) -> bytes:
        """Starts a block of ``kind`` unless it is the open one, stopping the open one."""
        if self._open == kind:
            return b""
        out = self._stop_block()
        self._open = kind
        self._index += 1
        block = {"type": kind[0], **start}
        event = {"type": "content_block_start", "index": self._index, "content_block": block}
        return out + sse.encode(event, "content_block_start")

    def _stop_block(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return sse.encode(
            {"type": "content_block_stop", "index": self._index}, "content_block_stop"
        )

    def _delta(self, delta: Json) -> bytes:
        event = {"type": "content_block_delta", "index": self._index, "delta": delta}
        return sse.encode(event, "content_block_delta")
