"""An OpenAI chat-completions client in front of Anthropic's native Messages API.

So that ``openai`` SDK users reach Claude with full fidelity (tool use, images, thinking,
cache accounting) rather than through Anthropic's OpenAI-compatibility layer. Pages
followed, one per direction:

- request: https://platform.openai.com/docs/api-reference/chat/create →
  https://docs.anthropic.com/en/api/messages
- response: https://docs.anthropic.com/en/api/messages →
  https://platform.openai.com/docs/api-reference/chat/object
- stream: https://docs.anthropic.com/en/api/messages-streaming →
  https://platform.openai.com/docs/api-reference/chat/streaming
- error: https://docs.anthropic.com/en/api/errors → OpenAI's
  ``{"error": {"message", "type", "param", "code"}}``

Request, as a table (chat → Messages):

==========================================  ==============================================
``system``/``developer`` messages           top-level ``system`` string, blank-line joined
``user`` text / ``image_url`` parts         ``text`` / ``image`` (base64 or url source)
``assistant`` content, ``tool_calls``       ``text`` blocks, ``tool_use`` blocks
``tool`` messages                           ``tool_result`` blocks in a ``user`` turn
``max_completion_tokens``/``max_tokens``    ``max_tokens`` (else :data:`DEFAULT_MAX_TOKENS`)
``stop``                                    ``stop_sequences``
``temperature``                             ``temperature`` clamped to Anthropic's [0, 1]*
``top_p``, ``top_k``                        same*
``tools``, ``tool_choice``                  ``tools`` (``input_schema``), ``tool_choice``
``parallel_tool_calls: false``              ``tool_choice.disable_parallel_tool_use``
``reasoning_effort``                        ``thinking`` (see :func:`request`)
``user`` (else ``safety_identifier``)       ``metadata.user_id``
==========================================  ==============================================

(*) Not for models from Opus 4.7 on, nor with thinking: see :func:`request`. Turns of
the same role are merged, since Anthropic's turns alternate. Anything else the client sent
(``response_format``, ``logprobs``, ``seed``, penalties, ``logit_bias``…) is
left out and named in :attr:`Translated.dropped`.

The stream, and the stop-reason, usage and error mappings the whole answer shares with it,
are in :mod:`.chat_stream`; which Claude models take which thinking and sampling fields,
in :mod:`.claude_models`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from relaygate.errors import TranslationError
from relaygate.translate.base import Dialect, Json, Translated, array, obj, string
from relaygate.translate.chat_stream import Stream, error, finish_reason, tool_call_id, usage
from relaygate.translate.claude_models import apply_thinking, drop_refused_sampling

__all__ = ["DEFAULT_MAX_TOKENS", "Stream", "error", "request", "response"]

DEFAULT_MAX_TOKENS = 4096
"""The ``max_tokens`` sent when the client gave no cap: Anthropic requires one, OpenAI
does not. With thinking on, the thinking budget is added on top so the answer keeps it."""

# The chat fields this module translates; any other one the client set is named as dropped.
_HANDLED = frozenset(
    {"model", "messages", "n", "stream", "stream_options", "user", "safety_identifier"}
    | {"max_tokens", "max_completion_tokens", "stop", "temperature", "top_p", "top_k"}
    | {"tools", "tool_choice", "parallel_tool_calls", "functions", "function_call"}
    | {"reasoning_effort"}
)


def request(payload: Json, upstream_model: str, dialect: Dialect) -> Translated:
    """A chat-completions body (``/v1/chat/completions``) as a Messages body (``/v1/messages``).

    ``reasoning_effort`` (``minimal``/``low``/``medium``/``high``/``xhigh``; ``none`` is no
    thinking) becomes ``thinking``. On models from before adaptive thinking (Claude 3.x,
    Sonnet/Opus 4 to 4.5, Haiku 4.5) that is ``{"type": "enabled", "budget_tokens"}``
    with 1024/1024/4096/16384/32768 tokens, the budget capped below the client's cap (an
    OpenAI cap counts reasoning tokens, as Anthropic's does); on later models it is
    ``{"type": "adaptive", "display": "summarized"}`` with ``output_config.effort``. Thinking
    is left out (``reasoning_effort`` named in ``dropped``) when the client forces a tool
    call, when the last assistant turn called tools (Anthropic then wants that turn's
    signed thinking block back, which chat completions cannot carry) or when the cap
    leaves no room for the 1024-token minimum budget.

    ``temperature``, ``top_p`` and ``top_k`` are left out (and named) for models from Opus
    4.7 on, which refuse them; with thinking on, so are ``temperature``, ``top_k`` and a
    ``top_p`` below 0.95.

    Legacy ``functions``/``function_call`` are taken as tools; an assistant
    ``function_call`` becomes a ``tool_use`` with the id ``function_call_<i>`` (``i`` its
    message's index), which the next ``function`` message answers. An assistant's
    ``reasoning_content`` is not sent back: without its signature Anthropic refuses it. Raises
    :class:`TranslationError` naming the field for ``n`` > 1, audio or file parts,
    unparsable tool-call arguments and malformed fields. ``dialect`` is not used.
    """
    del dialect  # Anthropic's API is one dialect; the parameter keeps signatures uniform.
    n = payload.get("n")
    if n is not None and n != 1:
        raise TranslationError("n must be 1: Anthropic returns one choice", "n")
    system, messages = _conversation(payload.get("messages"))
    body: Json = {"model": upstream_model, "messages": messages}
    if system:
        body["system"] = system
    cap = _max_tokens(payload)
    body["max_tokens"] = DEFAULT_MAX_TOKENS if cap is None else cap
    body.update(_sampling(payload))
    body.update(_tooling(payload))
    user = payload.get("user") or payload.get("safety_identifier")
    if isinstance(user, str):
        body["metadata"] = {"user_id": user}
    if payload.get("stream") is not None:
        body["stream"] = bool(payload["stream"])
    dropped = [
        key
        for key, value in payload.items()
        if key not in _HANDLED and value is not None and value is not False
    ]
    dropped.extend(apply_thinking(payload.get("reasoning_effort"), body, cap))
    dropped.extend(drop_refused_sampling(body))
    return Translated(body=body, dropped=tuple(dropped))


def response(body: Json, model: str, *, created: int | None = None) -> Json:
    """An Anthropic ``message`` object as a ``chat.completion`` object for ``model``.

    Text blocks join into ``message.content`` (null when there are none), ``tool_use``
    blocks become ``tool_calls`` (arguments as compact JSON), ``thinking`` blocks join into
    ``message.reasoning_content``. ``usage.prompt_tokens`` counts input, cache writes and
    cache reads; the reads are also ``prompt_tokens_details.cached_tokens``. ``created``
    (Unix seconds) is 0 unless given: this module reads no clock.
    """
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[Json] = []
    for block in map(obj, array(body.get("content"))):
        kind = block.get("type")
        if kind == "text":
            texts.append(string(block.get("text")) or "")
        elif kind == "thinking":
            thoughts.append(string(block.get("thinking")) or "")
        elif kind == "tool_use":
            calls.append(_tool_call(block, len(calls)))
    content = "".join(texts) if texts else None
    message: Json = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if any(thoughts):
        message["reasoning_content"] = "".join(thoughts)
    reason = finish_reason(body.get("stop_reason"))
    choice = {"index": 0, "message": message, "finish_reason": reason, "logprobs": None}
    return {
        "id": f"chatcmpl-{string(body.get('id')) or ''}",
        "object": "chat.completion",
        "created": created or 0,
        "model": model,
        "choices": [choice],
        "usage": usage(body.get("usage")),
    }


@dataclass(slots=True)
class _Conversation:
    """Chat messages being folded into Anthropic's system prompt and alternating turns."""

    system: list[str] = field(default_factory=list)
    turns: list[Json] = field(default_factory=list)
    function_call_id: str | None = None  # the latest legacy function_call, for its answer

    def add(self, role: str, blocks: list[Json]) -> None:
        if not blocks:
            return  # Anthropic refuses empty turns
        if self.turns and self.turns[-1]["role"] == role:
            self.turns[-1]["content"].extend(blocks)
        else:
            self.turns.append({"role": role, "content": blocks})


def _conversation(messages: Any) -> tuple[str | None, list[Json]]:
    conversation = _Conversation()
    for i, message in enumerate(_list(messages, "messages")):
        if not isinstance(message, dict):
            raise TranslationError("a message must be an object", f"messages[{i}]")
        _message(conversation, message, i)
    if not conversation.turns:
        raise TranslationError("messages must hold a user or assistant message", "messages")
    return "\n\n".join(conversation.system) or None, conversation.turns


def _message(conversation: _Conversation, message: Json, i: int) -> None:
    where = f"messages[{i}]"
    role, content = message.get("role"), message.get("content")
    if role in ("system", "developer"):
        conversation.system.extend(_texts(content, f"{where}.content"))
    elif role == "user":
        conversation.add("user", _user_blocks(content, f"{where}.content"))
    elif role == "assistant":
        conversation.add("assistant", _assistant_blocks(conversation, message, i))
    elif role == "tool":
        call_id = _string(message.get("tool_call_id"), f"{where}.tool_call_id")
        conversation.add("user", [_tool_result(call_id, content, where)])
    elif role == "function":
        if conversation.function_call_id is None:
            raise TranslationError("a function message must follow a function_call", where)
        conversation.add("user", [_tool_result(conversation.function_call_id, content, where)])
    else:
        raise TranslationError(f"unknown message role {role!r}", f"{where}.role")


def _texts(content: Any, where: str) -> list[str]:
    """The non-empty texts of a string or of text (and assistant ``refusal``) parts."""
    if content is None or isinstance(content, str):
        return [content] if content else []
    texts: list[str] = []
    for j, part in enumerate(_list(content, where)):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("text", "refusal"):
            raise TranslationError(
                f"only text parts are allowed here, not {kind!r}", f"{where}[{j}]"
            )
        text = part.get(kind)
        if text:
            texts.append(_string(text, f"{where}[{j}].{kind}"))
    return texts


def _user_blocks(content: Any, where: str) -> list[Json]:
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[Json] = []
    for j, part in enumerate(_list(content, where)):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            text = part.get("text")
            if text:
                blocks.append({"type": "text", "text": _string(text, f"{where}[{j}].text")})
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url"), f"{where}[{j}].image_url"))
        elif kind in ("input_audio", "file"):
            message = f"{kind} parts cannot be sent to Anthropic's Messages API"
            raise TranslationError(message, f"{where}[{j}]")
        else:
            raise TranslationError(f"unknown content part type {kind!r}", f"{where}[{j}].type")
    return blocks


def _image(image_url: Any, where: str) -> Json:
    """An ``image_url`` part's URL (its ``detail`` has no Anthropic counterpart) as a block."""
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    url = _string(url, f"{where}.url")
    if url.startswith("data:"):
        header, comma, data = url[len("data:") :].partition(",")
        media_type, _, encoding = header.partition(";")
        if not comma or not media_type or encoding != "base64":
            message = "a data URL image must read data:<media type>;base64,<data>"
            raise TranslationError(message, f"{where}.url")
        source = {"type": "base64", "media_type": media_type, "data": data}
        return {"type": "image", "source": source}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise TranslationError("an image URL must be a data: or http(s) URL", f"{where}.url")


def _assistant_blocks(conversation: _Conversation, message: Json, i: int) -> list[Json]:
    where = f"messages[{i}]"
    blocks = [
        {"type": "text", "text": t} for t in _texts(message.get("content"), f"{where}.content")
    ]
    for j, call in enumerate(_list(message.get("tool_calls"), f"{where}.tool_calls")):
        at = f"{where}.tool_calls[{j}]"
        if not isinstance(call, dict):
            raise TranslationError("a tool call must be an object", at)
        call_id = _string(call.get("id"), f"{at}.id")
        blocks.append(_tool_use(call_id, call.get("function"), f"{at}.function"))
    if message.get("function_call") is not None:
        conversation.function_call_id = call_id = f"function_call_{i}"
        blocks.append(_tool_use(call_id, message["function_call"], f"{where}.function_call"))
    return blocks


def _tool_use(call_id: str, function: Any, where: str) -> Json:
    """A tool call's ``function`` (at ``where``) as a ``tool_use`` block."""
    if not isinstance(function, dict):
        raise TranslationError("a tool call must name a function", where)
    name = _string(function.get("name"), f"{where}.name")
    arguments = _arguments(function.get("arguments"), f"{where}.arguments")
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def _arguments(raw: Any, where: str) -> Json:
    """Tool-call arguments (a JSON text; empty means none) as Anthropic's ``input`` object."""
    if isinstance(raw, dict):
        return raw
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    try:
        value = orjson.loads(_string(raw, where))
    except orjson.JSONDecodeError as exc:
        raise TranslationError(f"arguments are not valid JSON: {exc}", where) from exc
    if not isinstance(value, dict):
        raise TranslationError("arguments must be a JSON object", where)
    return value


def _tool_result(call_id: str, content: Any, where: str) -> Json:
    block: Json = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif texts := _texts(content, f"{where}.content"):
        block["content"] = [{"type": "text", "text": t} for t in texts]
    return block


def _max_tokens(payload: Json) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = payload.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise TranslationError(f"{key} must be a positive integer", key)
        return value
    return None


def _sampling(payload: Json) -> Json:
    out: Json = {}
    stop = payload.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = [_string(s, f"stop[{k}]") for k, s in enumerate(stop)]
    elif stop is not None and stop != []:
        raise TranslationError("stop must be a string or a list of strings", "stop")
    temperature = payload.get("temperature")
    if temperature is not None:
        # OpenAI's range is [0, 2], Anthropic's [0, 1]: the hot end saturates.
        out["temperature"] = min(max(_number(temperature, "temperature"), 0.0), 1.0)
    for key in ("top_p", "top_k"):
        if payload.get(key) is not None:
            out[key] = _number(payload[key], key)
    return out


def _tooling(payload: Json) -> Json:
    tools = _tools(payload)
    if not tools:
        return {}  # Anthropic takes no tool_choice without tools
    choice = _tool_choice(payload.get("tool_choice", payload.get("function_call")))
    if payload.get("parallel_tool_calls") is False:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    return {"tools": tools, "tool_choice": choice} if choice else {"tools": tools}


def _tools(payload: Json) -> list[Json]:
    tools: list[Json] = []
    for i, tool in enumerate(_list(payload.get("tools"), "tools")):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise TranslationError(
                "only function tools can be sent to Anthropic", f"tools[{i}].type"
            )
        tools.append(_tool(tool.get("function"), f"tools[{i}].function"))
    for i, function in enumerate(_list(payload.get("functions"), "functions")):
        tools.append(_tool(function, f"functions[{i}]"))
    return tools


def _tool(function: Any, where: str) -> Json:
    if not isinstance(function, dict):
        raise TranslationError("a tool must hold a function object", where)
    tool: Json = {"name": _string(function.get("name"), f"{where}.name")}
    if function.get("description"):
        tool["description"] = _string(function["description"], f"{where}.description")
    tool["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
    return tool


def _tool_choice(choice: Any) -> Json | None:
    if choice is None:
        return None
    named = {"auto": "auto", "required": "any", "none": "none"}
    if isinstance(choice, str) and choice in named:
        return {"type": named[choice]}
    # {"type": "function", "function": {"name"}}, or legacy function_call's {"name"}
    function = choice.get("function", choice) if isinstance(choice, dict) else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return {"type": "tool", "name": function["name"]}
    raise TranslationError("tool_choice must be auto, required, none or a function", "tool_choice")


def _tool_call(block: Json, position: int) -> Json:
    """A ``tool_use`` block as a tool call; an id missing is made from its ``position``."""
    arguments = orjson.dumps(obj(block.get("input"))).decode()
    function = {"name": string(block.get("name")) or "", "arguments": arguments}
    call_id = string(block.get("id")) or tool_call_id(position)
    return {"id": call_id, "type": "function", "function": function}


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TranslationError(f"{where} must be a list", where)
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise TranslationError(f"{where} must be a string", where)
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TranslationError(f"{where} must be a number", where)
    return value
