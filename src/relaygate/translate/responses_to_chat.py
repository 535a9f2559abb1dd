"""An OpenAI Responses client (Codex CLI, the openai SDK's ``client.responses``) in front of
an endpoint that serves only chat completions.

Pages followed (and openai-python's ``openai.types.responses``, which the tests validate
the outputs against):

- https://platform.openai.com/docs/api-reference/responses/create : the request;
- https://platform.openai.com/docs/api-reference/responses/object : the answer;
- https://platform.openai.com/docs/api-reference/responses-streaming : the stream
  (:mod:`.responses_stream`);
- https://platform.openai.com/docs/api-reference/chat/create and
  https://platform.openai.com/docs/api-reference/chat/streaming : the endpoint's side.

The request, Responses → chat completions::

    instructions                  the first {"role": "system"} message
    history (previous_response_id) translated as input, before it; the earlier
                                  instructions are not carried over (as OpenAI does)
    input: "text"                 one user message
    message item                  message; developer → system; input_text, output_text,
                                  refusal → text; input_image → image_url (user only)
    function_call                 assistant tool_calls: consecutive calls, and the
                                  assistant text just before them, make one message
    function_call_output          {"role": "tool", "tool_call_id", "content"}; its images
                                  (chat's tool messages take none) in a user message after
                                  the run of tool messages
    custom_tool_call (+ _output)  a tool call with arguments {"input": <input>} (+ tool)
    reasoning item                dropped: chat completions cannot take reasoning back
    tools: function               {"type": "function", "function": {...}}
    tools: custom (freeform)      a function taking {"input": <string>}
    tools: web_search, mcp, …     left out, named in ``dropped`` (``tools.<type>``)
    tool_choice                   the same choice in chat's shape
    text.format                   response_format (json_schema, json_object)
    reasoning.effort              reasoning_effort when the dialect takes it
    max_output_tokens             the dialect's max_tokens field
    temperature, top_p, parallel_tool_calls   as they are
    user / safety_identifier      user
    stream                        stream + stream_options.include_usage

Text-only content becomes a string (parts joined by a newline): self-hosted servers' chat
templates take strings everywhere, content arrays not always. Fields relaygate handles
itself or that have no meaning here (store, previous_response_id, include, truncation,
metadata, prompt_cache_key, service_tier, …) go silently; any other field is left out and
named in ``dropped``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from relaygate.errors import TranslationError
from relaygate.translate.base import Dialect, Json, Translated, array, first, obj, string
from relaygate.translate.responses_stream import (
    Origin,
    Stream,
    build,
    call_item,
    message_item,
    outcome,
    reasoning_item,
    reasoning_text,
    text_part,
    usage,
)

__all__ = ["Stream", "error", "input_items", "request", "response"]

# Mapped by request() one by one, or relaygate's own (store, previous_response_id: the
# proxy), or without a meaning for a chat endpoint: none of them is reported as dropped.
_KNOWN = frozenset(
    {
        "model", "input", "instructions", "tools", "tool_choice", "text", "reasoning",
        "max_output_tokens", "temperature", "top_p", "parallel_tool_calls", "user",
        "safety_identifier", "stream", "stream_options", "store", "previous_response_id",
        "include", "truncation", "metadata", "background", "prompt_cache_key",
        "prompt_cache_retention", "service_tier",
    }
)  # fmt: skip
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_IMAGE_DETAILS = frozenset({"low", "high", "auto"})
_GRAMMAR_LIMIT = 4000


def request(
    payload: Json, upstream_model: str, dialect: Dialect, history: Sequence[Json] = ()
) -> Translated:
    """A Responses create body (``payload``, never mutated) as a chat-completions body
    for ``upstream_model``; ``history`` is the conversation before it (Responses items)
    when the client sent ``previous_response_id``. Raises :class:`TranslationError` for
    what a chat endpoint cannot do (background responses, files, stored prompts…)."""
    _refuse(payload)
    dropped: list[str] = []
    messages = _instructions(payload.get("instructions"))
    items = [(f"history[{i}]", item) for i, item in enumerate(history)]
    items += [(f"input[{i}]", item) for i, item in enumerate(input_items(payload))]
    _add_items(items, messages)
    if not messages:
        raise TranslationError("input is required", "input")
    body: Json = {"model": upstream_model, "messages": messages}
    body.update(_tooling(payload, dropped))
    fmt = _response_format(payload.get("text"), dropped)
    if fmt is not None:
        body["response_format"] = fmt
    body.update(_settings(payload, dialect, dropped))
    dropped.extend(k for k, v in payload.items() if k not in _KNOWN and v is not None)
    return Translated(body, tuple(dict.fromkeys(dropped)))


def input_items(payload: Json) -> list[Json]:
    """The request's ``input`` as a list of Responses items: a string becomes one user
    message item (``input_text``), a missing input none. What the proxy stores as the
    conversation so far."""
    value = payload.get("input")
    if value is None:
        return []
    if isinstance(value, str):
        content = [{"type": "input_text", "text": value}]
        return [{"type": "message", "role": "user", "content": content}]
    if not isinstance(value, list):
        raise TranslationError("input must be a string or an array of items", "input")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise TranslationError(f"input[{i}] must be an object", f"input[{i}]")
    return list(value)


def response(body: Json, model: str, *, request: Json, response_id: str, created_at: int) -> Json:
    """A chat completion (``body``) as a Response object: reasoning (``reasoning_content``
    or ``reasoning``) → a reasoning item with a summary, text → a message item,
    ``tool_calls`` → function_call items (custom_tool_call for the request's custom
    tools). finish_reason ``length``/``content_filter`` → status ``incomplete``. The
    ``request`` body's settings are echoed; item ids derive from ``response_id``."""
    origin = Origin(model, request, response_id, created_at)
    choice = first(body.get("choices"))
    message = obj(choice.get("message"))
    status, reason = outcome(choice.get("finish_reason"))
    output = _output(message, origin)
    return build(origin, status, output, usage(body.get("usage")), reason=reason)


def error(status: int, body: Any) -> Json:
    """The endpoint's error answer (any JSON, or None) as OpenAI's error shape,
    ``{"error": {"message", "type", "param", "code"}}``: an upstream error already in
    that shape is kept (a field that is not a string taken as absent); otherwise the
    message comes from ``detail`` (FastAPI), ``message`` or a string ``error``, and the
    type from the status (``invalid_request_error`` for 4xx, ``server_error`` otherwise)."""
    kind = "invalid_request_error" if 400 <= status < 500 else "server_error"
    fallback = f"The model endpoint answered with HTTP {status}."
    upstream = obj(body).get("error")
    if isinstance(upstream, dict) and isinstance(upstream.get("message"), str):
        return {
            "error": {
                **upstream,
                "message": upstream["message"] or fallback,
                "type": string(upstream.get("type")) or kind,
                "param": string(upstream.get("param")),
                "code": string(upstream.get("code")),
            }
        }
    message = _error_message(body) or fallback
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _error_message(body: Any) -> str | None:
    if isinstance(body, str):
        return body.strip() or None
    if not isinstance(body, dict):
        return None
    detail = body.get("detail")
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(detail, list) and detail:
        # FastAPI's validation errors: [{"loc": [...], "msg": "...", "type": "..."}].
        return "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    for key in ("message", "error"):
        if isinstance(body.get(key), str) and body[key]:
            return str(body[key])
    return None


def _refuse(payload: Json) -> None:
    if payload.get("background"):
        raise TranslationError("background responses are not supported", "background")
    if payload.get("conversation") is not None:
        raise TranslationError(
            "conversation is not supported; use previous_response_id", "conversation"
        )
    if payload.get("prompt") is not None:
        raise TranslationError("stored prompts (prompt) are not supported", "prompt")


def _instructions(instructions: Any) -> list[Json]:
    if instructions is None or instructions == "":
        return []
    if not isinstance(instructions, str):
        raise TranslationError("instructions must be a string", "instructions")
    return [{"role": "system", "content": instructions}]


def _add_items(items: list[tuple[str, Json]], messages: list[Json]) -> None:
    """Responses items (each with where it came from) appended to ``messages`` as chat
    messages, in order. Images in tool outputs, which chat's tool messages cannot carry,
    follow the run of tool messages as one user message."""
    images: list[Json] = []
    for where, item in items:
        if not isinstance(item, dict):
            raise TranslationError(f"{where} must be an object", where)
        kind = item.get("type", "message")
        if kind in ("function_call_output", "custom_tool_call_output"):
            messages.append(_tool_result(item, where, images))
            continue
        _add_images(messages, images)
        if kind == "message":
            messages.append(_message(item, where))
        elif kind in ("function_call", "custom_tool_call"):
            _add_call(messages, _tool_call(item, where))
        elif kind != "reasoning":
            raise TranslationError(f"{where}.type {kind!r} is not supported", f"{where}.type")
    _add_images(messages, images)


def _tool_result(item: Json, where: str, images: list[Json]) -> Json:
    """A tool output as a tool message; its images go to ``images``."""
    call_id = _required_str(item, "call_id", where)
    output = item.get("output")
    if output is None or isinstance(output, str):
        return {"role": "tool", "tool_call_id": call_id, "content": output or ""}
    parts = _content(output, f"{where}.output", "user")
    if isinstance(parts, str):
        return {"role": "tool", "tool_call_id": call_id, "content": parts}
    texts = [part["text"] for part in parts if part["type"] == "text"]
    images.extend(part for part in parts if part["type"] != "text")
    texts.append("(The output's images follow in the next user message.)")
    return {"role": "tool", "tool_call_id": call_id, "content": "\n".join(texts)}


def _add_images(messages: list[Json], images: list[Json]) -> None:
    if images:
        messages.append({"role": "user", "content": list(images)})
        images.clear()


def _message(item: Json, where: str) -> Json:
    role = item.get("role")
    role = _ROLES.get(role) if isinstance(role, str) else None
    if role is None:
        raise TranslationError(
            f"{where}.role {item.get('role')!r} is not supported", f"{where}.role"
        )
    return {"role": role, "content": _content(item.get("content"), f"{where}.content", role)}


def _add_call(messages: list[Json], call: Json) -> None:
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _tool_call(item: Json, where: str) -> Json:
    call_id = _required_str(item, "call_id", where)
    name = _required_str(item, "name", where)
    if item.get("type") == "custom_tool_call":
        arguments = orjson.dumps({"input": item.get("input") or ""}).decode()
    else:
        raw = item.get("arguments")
        arguments = raw if isinstance(raw, str) else orjson.dumps(raw or {}).decode()
    function = {"name": name, "arguments": arguments}
    return {"id": call_id, "type": "function", "function": function}


def _required_str(item: Json, key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise TranslationError(f"{where}.{key} must be a non-empty string", f"{where}.{key}")
    return value


def _content(content: Any, where: str, role: str) -> str | list[Json]:
    """Message content as chat's: a string, or parts when a user message has images."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise TranslationError(f"{where} must be a string or an array of parts", where)
    parts = [_part(part, f"{where}[{j}]", images=role == "user") for j, part in enumerate(content)]
    if all(part["type"] == "text" for part in parts):
        return "\n".join(part["text"] for part in parts)
    return parts


def _part(part: Any, where: str, *, images: bool) -> Json:
    if not isinstance(part, dict):
        raise TranslationError(f"{where} must be an object", where)
    kind = part.get("type")
    if kind in ("input_text", "output_text", "refusal"):
        text = part.get("refusal" if kind == "refusal" else "text")
        if not isinstance(text, str):
            raise TranslationError(f"{where} has no text", where)
        return {"type": "text", "text": text}
    if kind == "input_image":
        if not images:
            raise TranslationError(
                f"{where}: the endpoint takes images in user messages only", where
            )
        return _image(part, where)
    if kind == "input_file":
        raise TranslationError(f"{where}: input_file is not supported by this endpoint", where)
    raise TranslationError(f"{where}.type {kind!r} is not supported", f"{where}.type")


def _image(part: Json, where: str) -> Json:
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        if part.get("file_id"):
            message = f"{where}: images by file_id are not supported; send image_url"
            raise TranslationError(message, f"{where}.file_id")
        raise TranslationError(f"{where}.image_url is required", f"{where}.image_url")
    image: Json = {"url": url}
    if (detail := string(part.get("detail"))) in _IMAGE_DETAILS:
        image["detail"] = detail
    return {"type": "image_url", "image_url": image}


def _tooling(payload: Json, dropped: list[str]) -> Json:
    """``tools``, ``tool_choice`` and ``parallel_tool_calls`` as chat's; the last two only
    with tools (chat endpoints refuse them alone)."""
    tools = payload.get("tools") or []
    if not isinstance(tools, list):
        raise TranslationError("tools must be an array", "tools")
    functions = [f for i, tool in enumerate(tools) if (f := _tool(tool, i, dropped)) is not None]
    choice = payload.get("tool_choice")
    if not functions:
        if choice not in (None, "auto", "none"):
            dropped.append("tool_choice")
        return {}
    body: Json = {"tools": functions}
    if choice is not None:
        body["tool_choice"] = _tool_choice(choice, dropped)
    if isinstance(payload.get("parallel_tool_calls"), bool):
        body["parallel_tool_calls"] = payload["parallel_tool_calls"]
    return {k: v for k, v in body.items() if v is not None}


def _tool(tool: Any, i: int, dropped: list[str]) -> Json | None:
    if not isinstance(tool, dict):
        raise TranslationError(f"tools[{i}] must be an object", f"tools[{i}]")
    kind = tool.get("type")
    if kind not in ("function", "custom"):
        dropped.append(f"tools.{kind}")
        return None
    name = _required_str(tool, "name", f"tools[{i}]")
    function: Json = {"name": name}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    if kind == "custom":
        function["parameters"] = _custom_parameters(tool.get("format"))
    elif tool.get("parameters") is not None:
        function["parameters"] = tool["parameters"]
    if kind == "function" and isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _custom_parameters(fmt: Any) -> Json:
    """A freeform custom tool's input as a function's one string argument, ``input``,
    described by the tool's grammar when it has one (Codex's apply_patch has a Lark one)."""
    description = "The tool's raw input text, free-form (not JSON)."
    if isinstance(fmt, dict) and fmt.get("type") == "grammar":
        syntax = fmt.get("syntax") or "the"
        definition = fmt.get("definition")
        if isinstance(definition, str) and len(definition) <= _GRAMMAR_LIMIT:
            description = (
                f"The tool's raw input text, matching this {syntax} grammar:\n{definition}"
            )
        else:
            description = f"The tool's raw input text, matching the tool's {syntax} grammar."
    properties = {"input": {"type": "string", "description": description}}
    return {"type": "object", "properties": properties, "required": ["input"]}


def _tool_choice(choice: Any, dropped: list[str]) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom"):
        name = choice.get("name")
        if isinstance(name, str) and name:
            return {"type": "function", "function": {"name": name}}
    dropped.append("tool_choice")
    return None


def _response_format(text: Any, dropped: list[str]) -> Json | None:
    if not isinstance(text, dict):
        return None
    if text.get("verbosity") is not None:
        dropped.append("text.verbosity")
    fmt = text.get("format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind is None or kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema":
        raise TranslationError(f"text.format.type {kind!r} is not supported", "text.format.type")
    assert isinstance(fmt, dict)
    schema: Json = {"name": fmt.get("name") or "response", "schema": fmt.get("schema") or {}}
    for key in ("description", "strict"):
        if fmt.get(key) is not None:
            schema[key] = fmt[key]
    return {"type": "json_schema", "json_schema": schema}


def _settings(payload: Json, dialect: Dialect, dropped: list[str]) -> Json:
    """Sampling, the output cap, the end user, reasoning effort and streaming."""
    body: Json = {}
    for key in ("temperature", "top_p"):
        if payload.get(key) is not None:
            body[key] = payload[key]
    if payload.get("max_output_tokens") is not None:
        body[dialect.max_tokens_field] = payload["max_output_tokens"]
    user = payload.get("user") or payload.get("safety_identifier")
    if isinstance(user, str) and user:
        body["user"] = user
    reasoning = payload.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    if effort is not None:
        if dialect.reasoning_effort:
            body["reasoning_effort"] = effort
        else:
            dropped.append("reasoning")
    if payload.get("stream"):
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _output(message: Json, origin: Origin) -> list[Json]:
    """A chat ``message`` as Response output items: reasoning, text, then tool calls."""
    items: list[Json] = []
    reasoning = reasoning_text(message)
    if reasoning:
        summary = [{"type": "summary_text", "text": reasoning}]
        items.append(reasoning_item(origin.item_id("rs", len(items)), summary))
    text = _answer_text(message)
    if text:
        items.append(message_item(origin.item_id("msg", len(items)), [text_part(text)]))
    custom = origin.custom_tools()
    for call in array(message.get("tool_calls")):
        if not isinstance(call, dict):
            continue
        function = obj(call.get("function"))
        name = string(function.get("name")) or ""
        arguments = _call_arguments(function.get("arguments"))
        is_custom = name in custom
        item_id = origin.item_id("ctc" if is_custom else "fc", len(items))
        call_id = string(call.get("id")) or f"call_{item_id}"
        items.append(call_item(item_id, call_id, name, arguments, custom=is_custom))
    return items


def _call_arguments(arguments: Any) -> str:
    """A tool call's arguments as JSON text: a string as it is, an object (some servers send
    one) as its JSON; anything else is no arguments."""
    if isinstance(arguments, str):
        return arguments
    return orjson.dumps(arguments).decode() if isinstance(arguments, dict) else "{}"


def _answer_text(message: Json) -> str:
    """The message's text: ``content`` (a string, or text parts) then any ``refusal``."""
    content = message.get("content")
    if isinstance(content, list):
        parts = map(obj, content)
        content = "".join(string(p.get("text")) or "" for p in parts if p.get("type") == "text")
    texts = [t for t in (string(content), string(message.get("refusal"))) if t]
    return "\n".join(texts)
