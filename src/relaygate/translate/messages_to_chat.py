"""An Anthropic Messages client in front of an endpoint that serves only OpenAI chat
completions (Claude Code on vLLM, llama.cpp, Ollama…).

Followed: https://docs.anthropic.com/en/api/messages ,
https://docs.anthropic.com/en/api/messages-streaming , https://docs.anthropic.com/en/api/errors ,
https://platform.openai.com/docs/api-reference/chat/create and
https://platform.openai.com/docs/api-reference/chat/streaming .

Request, Anthropic → chat::

    model                            → the endpoint's model name
    system (string or text blocks)   → a first {"role": "system"} message
    a "system" message in messages   → {"role": "system", "content": its text} where it is;
      (string or text blocks)          before any user/assistant turn: joined to the first
    text block                       → text (a user turn of only text: one string)
    image, source base64 / url       → {"type": "image_url", "image_url": {"url": data: or url}}
    assistant tool_use               → tool_calls [{id, type: function, function: {name,
                                       arguments: JSON text of input}}]
    user tool_result                 → one {"role": "tool"} message each, before the rest of
                                       the turn; is_error → content prefixed "Error: "
    thinking / redacted_thinking     → left out (the endpoint cannot check their signatures)
    tools (custom)                   → {"type": "function", "function": {name, description,
                                       parameters: input_schema less a top-level $schema}};
                                       server tools are dropped
    tool_choice auto/any/tool/none   → "auto" / "required" / {"type": "function", …} / "none"
    disable_parallel_tool_use        → parallel_tool_calls: false
    max_tokens                       → the dialect's max_tokens or max_completion_tokens
    stop_sequences                   → stop
    temperature, top_p / top_k       → as is / only where the dialect takes it
    thinking.budget_tokens           → reasoning_effort low (<4096) / medium (<16384) / high
    thinking adaptive (or no budget) → reasoning_effort medium
    metadata.user_id                 → user
    stream                           → stream, stream_options.include_usage

Any other field (``output_config``, ``context_management``, ``container``…) is not
forwarded, nor is a tool's ``defer_loading``. Text blocks of one turn are joined with a
newline; ``cache_control`` is ignored everywhere.

System messages inside ``messages`` (Claude Code's ``mid-conversation-tool-changes`` beta
sends them, e.g. after a user turn of tool results or as the last message) stay where the
client put them: chat completions take a system message anywhere, and OpenAI, and
self-hosted servers with Llama 3 or Qwen templates, read it in place. Some self-hosted chat
templates honour only a leading system message: DeepSeek's gathers them all to the front,
and role-alternation checks (Gemma's, some Mistral ones) can refuse a later one, an error
that reaches the client as the endpoint's 400. So the system messages that come before the
first user or assistant turn are joined, with a blank line, to the top-level ``system`` as
one first message: the order and the meaning are the same, and such templates then see a
single leading system prompt. Later ones are not moved, which would change what the model
reads after what.

The answer side (:func:`response`, :func:`error`, :class:`Stream`) is in
:mod:`.messages_stream` and re-exported here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from relaygate.errors import TranslationError
from relaygate.translate.base import Dialect, Json, Translated, array, obj, string
from relaygate.translate.messages_stream import Stream, error, response

__all__ = ["Stream", "error", "estimate_tokens", "request", "response"]

_SILENT = frozenset({"thinking", "redacted_thinking"})
"""History blocks left out without a word: only Anthropic can verify their signatures."""

_TOOL_CHOICE = {"auto": "auto", "any": "required", "none": "none"}

# -- request -----------------------------------------------------------------------------


def request(payload: Json, upstream_model: str, dialect: Dialect) -> Translated:
    """A Messages request body (https://docs.anthropic.com/en/api/messages) as a chat
    completions one (https://platform.openai.com/docs/api-reference/chat/create), per the
    table in this module's docstring. ``payload`` is not mutated. ``dropped`` names what the
    endpoint cannot take: ``tools[<type>]`` for server tools, ``top_k``, ``thinking`` and
    ``tool_result images``. Raises :class:`TranslationError` naming the field at fault."""
    dropped: list[str] = []
    messages = _system(payload.get("system")) + _messages(payload.get("messages"), dropped)
    body: Json = {"model": upstream_model, "messages": _leading_system(messages)}
    _tools(payload, body, dropped)
    _sampling(payload, body, dialect, dropped)
    _thinking(payload.get("thinking"), body, dialect, dropped)
    if isinstance(user := obj(payload.get("metadata")).get("user_id"), str):
        body["user"] = user
    if payload.get("stream") is True:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return Translated(body, tuple(dropped))


def _drop(dropped: list[str], name: str) -> None:
    if name not in dropped:
        dropped.append(name)


def _unsupported(at: str, kind: str) -> TranslationError:
    return TranslationError(f"{at}.type {kind!r} cannot be sent to this endpoint", f"{at}.type")


def _blocks(content: list[Any], where: str) -> Iterator[tuple[str, str, Json]]:
    """Each block of ``content`` as (its path, its type, the block); raises on a non-block."""
    for j, block in enumerate(content):
        at = f"{where}[{j}]"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise TranslationError(f"{at} must be a content block with a type", at)
        yield at, block["type"], block


def _texts(content: Any, where: str, dropped: list[str] | None = None) -> str:
    """A string, or text blocks joined with newlines. Where ``dropped`` is given (tool
    results), images are left out and named in it; elsewhere they are an error."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise TranslationError(f"{where} must be a string or a list of text blocks", where)
    texts = []
    for at, kind, block in _blocks(content, where):
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "image" and dropped is not None:
            _drop(dropped, "tool_result images")
        else:
            raise _unsupported(at, kind)
    return "\n".join(texts)


def _system(system: Any, where: str = "system") -> list[Json]:
    """The top-level ``system``, or a system message's content, as a system message; none
    if it has no text."""
    text = "" if system is None else _texts(system, where)
    return [{"role": "system", "content": text}] if text else []


def _leading_system(messages: list[Json]) -> list[Json]:
    """The system messages before the first other one joined into one (see the module's
    docstring); the rest as they are."""
    lead = 0
    while lead < len(messages) and messages[lead]["role"] == "system":
        lead += 1
    if lead < 2:
        return messages
    text = "\n\n".join(message["content"] for message in messages[:lead])
    return [{"role": "system", "content": text}, *messages[lead:]]


def _messages(messages: Any, dropped: list[str]) -> list[Json]:
    if not isinstance(messages, list):
        raise TranslationError("messages must be a list", "messages")
    out: list[Json] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise TranslationError(f"{where} must be an object", where)
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        elif not isinstance(content, list):
            raise TranslationError(
                f"{where}.content must be a string or a list of blocks", f"{where}.content"
            )
        role = message.get("role")
        if role == "user":
            out.extend(_user(content, f"{where}.content", dropped))
        elif role == "assistant":
            out.append(_assistant(content, f"{where}.content"))
        elif role == "system":
            out.extend(_system(content, f"{where}.content"))
        else:
            raise TranslationError(
                f"{where}.role must be 'user', 'assistant' or 'system'", f"{where}.role"
            )
    return out


def _user(content: list[Any], where: str, dropped: list[str]) -> list[Json]:
    """A user turn: its tool results first (chat wants them right after the assistant's
    tool_calls), then one user message with the rest, if there is any."""
    results: list[Json] = []
    parts: list[Json] = []
    for at, kind, block in _blocks(content, where):
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text") or "")})
        elif kind == "image":
            parts.append(_image(block, at))
        elif kind == "tool_result":
            results.append(_tool_result(block, at, dropped))
        elif kind not in _SILENT:
            raise _unsupported(at, kind)
    if results and not parts:
        return results
    if all(part["type"] == "text" for part in parts):
        return [*results, {"role": "user", "content": "\n".join(p["text"] for p in parts)}]
    return [*results, {"role": "user", "content": parts}]


def _image(block: Json, at: str) -> Json:
    source = obj(block.get("source"))
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise TranslationError(f"{at}.source must be a base64 or url source", f"{at}.source")
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result(block: Json, at: str, dropped: list[str]) -> Json:
    """A tool_result as a tool message. Chat has no error flag, so a failed call's content
    is prefixed ``Error: `` for the model to see. Chat tool messages carry text only."""
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str):
        raise TranslationError(f"{at}.tool_use_id must be a string", f"{at}.tool_use_id")
    text = _texts(block.get("content", ""), f"{at}.content", dropped)
    if block.get("is_error") is True:
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _assistant(content: list[Any], where: str) -> Json:
    texts: list[str] = []
    calls: list[Json] = []
    for at, kind, block in _blocks(content, where):
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use":
            calls.append(_tool_call(block, at))
        elif kind not in _SILENT:
            raise _unsupported(at, kind)
    message: Json = {
        "role": "assistant",
        "content": "\n".join(texts) if texts or not calls else None,
    }
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_call(block: Json, at: str) -> Json:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input") or {}
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise TranslationError(f"{at} needs a string id and name", at)
    text = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}


def _tools(payload: Json, body: Json, dropped: list[str]) -> None:
    tools = payload.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list):
        raise TranslationError("tools must be a list", "tools")
    functions: list[Json] = []
    for i, tool in enumerate(tools):
        at = f"tools[{i}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise TranslationError(f"{at} must be a tool with a name", at)
        kind = tool.get("type") or "custom"
        if kind != "custom":
            _drop(dropped, f"tools[{kind}]")
            continue
        function: Json = {"name": tool["name"]}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        function["parameters"] = _parameters(tool.get("input_schema"))
        functions.append({"type": "function", "function": function})
    # tool_choice and parallel_tool_calls are refused by OpenAI without tools.
    if functions:
        body["tools"] = functions
        _tool_choice(payload.get("tool_choice"), body)


def _parameters(schema: Any) -> Json:
    """A tool's input schema as a function's parameters, without ``$schema``: it only names
    the JSON Schema dialect, and Gemini refuses it as an unknown field."""
    if not isinstance(schema, dict) or not schema:
        return {"type": "object", "properties": {}}
    return {key: value for key, value in schema.items() if key != "$schema"}


def _tool_choice(choice: Any, body: Json) -> None:
    if choice is None:
        return
    choice = obj(choice)
    kind = string(choice.get("type"))
    if kind in _TOOL_CHOICE:
        body["tool_choice"] = _TOOL_CHOICE[kind]
    elif kind == "tool" and isinstance(choice.get("name"), str):
        body["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise TranslationError("tool_choice must be auto, any, tool or none", "tool_choice.type")
    if choice.get("disable_parallel_tool_use") is True:
        body["parallel_tool_calls"] = False


def _sampling(payload: Json, body: Json, dialect: Dialect, dropped: list[str]) -> None:
    if payload.get("max_tokens") is not None:
        body[dialect.max_tokens_field] = payload["max_tokens"]
    if isinstance(stop := payload.get("stop_sequences"), list) and stop:
        body["stop"] = list(stop)
    for name in ("temperature", "top_p"):
        if payload.get(name) is not None:
            body[name] = payload[name]
    if payload.get("top_k") is not None:
        if dialect.top_k:
            body["top_k"] = payload["top_k"]
        else:
            _drop(dropped, "top_k")


def _thinking(thinking: Any, body: Json, dialect: Dialect, dropped: list[str]) -> None:
    """Extended thinking as a reasoning effort. ``adaptive`` thinking, which has no budget,
    is taken as medium."""
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive"):
        return
    if not dialect.reasoning_effort:
        _drop(dropped, "thinking")
        return
    budget = thinking.get("budget_tokens")
    budget = budget if isinstance(budget, int) else 4096
    body["reasoning_effort"] = "low" if budget < 4096 else "medium" if budget < 16384 else "high"


# -- count_tokens ------------------------------------------------------------------------

_CHARS_PER_TOKEN = 4
_MESSAGE_TOKENS = 4
_IMAGE_TOKENS = 1600
"""Anthropic scales an image down until it is at most ~1,600 tokens
(https://docs.anthropic.com/en/docs/vision), so that is an image's ceiling."""


def estimate_tokens(payload: Json) -> int:
    """An estimate of a Messages request's input tokens for ``/v1/messages/count_tokens``
    (https://docs.anthropic.com/en/api/messages-count-tokens) when the endpoint has no
    tokenizer: one token per 4 characters of the system prompt, text, tool inputs and
    results, and tool names, descriptions and schemas; 4 per message; 1,600 per image
    wherever it appears. Thinking blocks, which are not sent on, count nothing. At least 1.
    """
    chars, images = _measure(payload.get("system"))
    messages = array(payload.get("messages"))
    more, more_images = _measure([obj(message).get("content") for message in messages])
    chars, images = chars + more, images + more_images
    for tool in map(obj, array(payload.get("tools"))):
        chars += len(str(tool.get("name") or "")) + len(str(tool.get("description") or ""))
        chars += len(json.dumps(tool.get("input_schema") or {}))
    tokens = math.ceil(chars / _CHARS_PER_TOKEN)
    return max(1, tokens + _MESSAGE_TOKENS * len(messages) + _IMAGE_TOKENS * images)


def _measure(content: Any) -> tuple[int, int]:
    """The characters and the images in a content string, block or list of blocks."""
    if isinstance(content, str):
        return len(content), 0
    if isinstance(content, list):
        pairs = [_measure(item) for item in content]
        return sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    if not isinstance(content, dict):
        return 0, 0
    kind = content.get("type")
    if kind == "image":
        return 0, 1
    if kind == "text":
        return _measure(content.get("text"))
    if kind == "tool_use":
        return len(str(content.get("name") or "")) + len(json.dumps(content.get("input"))), 0
    if kind == "tool_result":
        return _measure(content.get("content"))
    return 0, 0
