"""Anthropic's answer as the chat-completions client reads it: the stream
(:class:`Stream`), and the mappings it shares with
:func:`relaygate.translate.chat_to_messages.response`: stop reason (:func:`finish_reason`),
usage (:func:`usage`) and error (:func:`error`).

Pages followed:

- https://docs.anthropic.com/en/api/messages-streaming →
  https://platform.openai.com/docs/api-reference/chat/streaming
- https://docs.anthropic.com/en/api/errors → OpenAI's
  ``{"error": {"message", "type", "param", "code"}}``
"""

from __future__ import annotations

from typing import Any

import orjson

from relaygate.translate import sse
from relaygate.translate.base import Json, count, obj, string
from relaygate.translate.sse import Event

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_STATUS_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def error(status: int, body: Any) -> Json:
    """An Anthropic error answer (``{"type": "error", "error": {"type", "message"}}``) as
    OpenAI's ``{"error": {"message", "type", "param": null, "code": null}}``.

    ``type`` keeps Anthropic's error type (``rate_limit_error``, ``overloaded_error``…), so
    nothing is lost; ``code`` is null, as Anthropic has no finer code. A body of another
    shape gives its ``error``/``message`` string, else a message naming the status, and
    the type Anthropic documents for that status.
    """
    message: Any = None
    kind: Any = None
    if isinstance(body, dict):
        detail = body.get("error")
        if isinstance(detail, dict):
            message, kind = detail.get("message"), detail.get("type")
        else:
            message = detail if isinstance(detail, str) else body.get("message")
    elif isinstance(body, str):
        message = body.strip()
    if not isinstance(kind, str) or not kind:
        default = "api_error" if status >= 500 else "invalid_request_error"
        kind = _STATUS_ERROR_TYPES.get(status, default)
    if not isinstance(message, str) or not message:
        message = f"the Anthropic endpoint answered HTTP {status}"
    return _error_object(message, kind)


def finish_reason(stop_reason: Any) -> str:
    """Anthropic's ``stop_reason`` as OpenAI's ``finish_reason`` (``stop`` when unknown)."""
    return _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def usage(usage: Any) -> Json:
    """Anthropic's usage as OpenAI's: cache writes and reads are prompt tokens too."""
    counts = _counts(usage)
    cached = counts.get("cache_read_input_tokens", 0)
    prompt = counts.get("input_tokens", 0) + counts.get("cache_creation_input_tokens", 0) + cached
    completion = counts.get("output_tokens", 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def tool_call_id(position: int) -> str:
    """The id given a tool call whose ``tool_use`` block has none: from its position among
    the answer's calls (OpenAI's tool calls need one to be answered)."""
    return f"toolu_{position}"


def _counts(usage: Any) -> dict[str, int]:
    """The fields of an Anthropic ``usage`` that are counts (the others are left out)."""
    return {k: n for k, v in obj(usage).items() if (n := count(v)) is not None}


class Stream:
    """Anthropic's stream events as ``chat.completion.chunk`` events, ending in ``[DONE]``.

    ``message_start`` gives a first chunk with ``delta: {"role": "assistant", "content": ""}``;
    ``text_delta`` → ``delta.content``; ``thinking_delta`` → ``delta.reasoning_content``; a
    ``tool_use`` block → ``delta.tool_calls[{index, id, type, function: {name, arguments:
    ""}}]`` (``index`` counting tool calls from 0) and its ``input_json_delta`` →
    ``delta.tool_calls[{index, function: {arguments}}]``; ``message_delta`` → a chunk with
    ``delta: {}`` and the ``finish_reason``; ``message_stop`` → the usage chunk
    (``choices: []``) when ``include_usage``, then ``[DONE]``. With ``include_usage`` every
    other chunk carries ``usage: null``, as OpenAI's do. An ``error`` event becomes
    ``data: {"error": {...}}`` and ends the stream without ``[DONE]``. ``ping``,
    ``content_block_stop`` and ``signature_delta`` give nothing.
    """

    def __init__(self, model: str, *, include_usage: bool, created: int | None = None) -> None:
        self._model = model
        self._include_usage = include_usage
        self._created = created or 0
        self._id = "chatcmpl-"
        self._started = False
        self._finished = False
        self._closed = False
        # Anthropic block index (None when it sent none) → OpenAI tool call index
        self._tool_calls: dict[int | None, int] = {}
        self._counts: dict[str, int] = {}  # Anthropic usage counts, the latest value of each

    def event(self, event: Event) -> bytes:
        """One Anthropic event; returns the chunks it makes, as bytes."""
        if self._closed:
            return b""
        try:
            # An event without data (a bare ``data:`` line) is told by its name alone.
            data = orjson.loads(event.data) if event.data.strip() else {}
        except orjson.JSONDecodeError:
            return self.fail("the Anthropic endpoint sent an event that is not JSON")
        if not isinstance(data, dict):
            return b""
        kind = string(data.get("type")) or event.name
        if kind == "message_start":
            return self._message_start(data.get("message"))
        if kind == "content_block_start":
            return self._block_start(count(data.get("index")), data.get("content_block"))
        if kind == "content_block_delta":
            return self._block_delta(count(data.get("index")), data.get("delta"))
        if kind == "message_delta":
            return self._message_delta(data)
        if kind == "message_stop":
            return self._close()
        if kind == "error":  # the same shape as an error answer's body
            self._closed = True
            return sse.encode(error(500, data))
        return b""

    def end(self) -> bytes:
        """The upstream stream ended: a finish chunk if none was sent, the usage chunk when
        asked for, and ``[DONE]``; nothing if the stream was already closed."""
        return b"" if self._closed else self._close()

    def fail(self, message: str) -> bytes:
        """An error event (type ``upstream_error``, code ``stream_broken``) for a stream
        that broke off; it closes the stream."""
        if self._closed:
            return b""
        self._closed = True
        return sse.encode(_error_object(message, "upstream_error", code="stream_broken"))

    def _message_start(self, message: Any) -> bytes:
        if self._started or not isinstance(message, dict):
            return b""
        if message_id := string(message.get("id")):
            self._id = f"chatcmpl-{message_id}"
        self._count(message.get("usage"))
        return self._ensure_started()

    def _block_start(self, index: int | None, block: Any) -> bytes:
        out = self._ensure_started()
        if not isinstance(block, dict):
            return out
        kind = block.get("type")
        if kind == "tool_use":
            call = len(self._tool_calls)
            self._tool_calls[index] = call
            function = {"name": string(block.get("name")) or "", "arguments": ""}
            call_id = string(block.get("id")) or tool_call_id(call)
            delta = {"index": call, "id": call_id, "type": "function", "function": function}
            return out + self._chunk({"tool_calls": [delta]})
        if kind == "text" and (text := string(block.get("text"))):
            return out + self._chunk({"content": text})
        if kind == "thinking" and (thinking := string(block.get("thinking"))):
            return out + self._chunk({"reasoning_content": thinking})
        return out

    def _block_delta(self, index: int | None, delta: Any) -> bytes:
        out = self._ensure_started()
        if not isinstance(delta, dict):
            return out
        kind = delta.get("type")
        if kind == "text_delta" and (text := string(delta.get("text"))):
            return out + self._chunk({"content": text})
        if kind == "thinking_delta" and (thinking := string(delta.get("thinking"))):
            return out + self._chunk({"reasoning_content": thinking})
        call = self._tool_calls.get(index)
        partial = string(delta.get("partial_json"))
        if kind == "input_json_delta" and call is not None and partial:
            arguments = {"index": call, "function": {"arguments": partial}}
            return out + self._chunk({"tool_calls": [arguments]})
        return out

    def _message_delta(self, data: Json) -> bytes:
        # message_delta's usage is cumulative, and may correct the input counts too.
        self._count(data.get("usage"))
        reason = finish_reason(obj(data.get("delta")).get("stop_reason"))
        return self._ensure_started() + self._finish(reason)

    def _close(self) -> bytes:
        out = self._ensure_started() + self._finish("stop")
        if self._include_usage:
            out += sse.encode({**self._envelope(), "choices": [], "usage": usage(self._counts)})
        self._closed = True
        return out + sse.DONE

    def _finish(self, reason: str) -> bytes:
        if self._finished:
            return b""
        self._finished = True
        return self._chunk({}, reason)

    def _ensure_started(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return self._chunk({"role": "assistant", "content": ""})

    def _count(self, usage: Any) -> None:
        self._counts.update(_counts(usage))

    def _envelope(self) -> Json:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
        }

    def _chunk(self, delta: Json, finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        chunk = {**self._envelope(), "choices": [choice]}
        if self._include_usage:
            chunk["usage"] = None
        return sse.encode(chunk)


def _error_object(message: str, kind: str, code: str | None = None) -> Json:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}
