"""Reading and parsing the request body, once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson

from relaygate.bodies import timed_out, too_large
from relaygate.errors import BadRequest, ClientDisconnected
from relaygate.inputs import has_control_character

Receive = Any
_JSON_KINDS = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}
# The top-level keys relaygate acts on, as they appear unescaped in a body.
_CONTROL_KEYS = (b'"model"', b'"stream"', b'"stream_options"')
_CONTROL_NAMES = frozenset({"model", "stream", "stream_options"})
_CONTROL_LENGTHS = frozenset(len(name) for name in _CONTROL_NAMES)
# Chat routes (OpenAI's and Anthropic's) whose 'messages' is an array.
_MESSAGE_PATHS = frozenset({"/v1/chat/completions", "/v1/messages"})


async def read_body(receive: Receive, length: int | None, limit: int, timeout: float) -> bytes:
    """Read the whole request body within ``timeout`` seconds. Raises
    :class:`PayloadTooLarge` past ``limit`` bytes (checked against the declared
    ``length``, the content-length, first, then as chunks arrive; its ``body_ended``
    says whether the body had come whole),
    :class:`RequestTimeout` when it is not whole in time, and :class:`ClientDisconnected`
    when the client leaves before its end (a cut body is never parsed)."""
    if length is not None and length > limit:
        raise too_large(limit)
    try:
        async with asyncio.timeout(timeout):
            message = await receive()
            body: bytes = message.get("body", b"")
            if len(body) > limit:
                raise too_large(limit, ended=not message.get("more_body", False))
            if not message.get("more_body", False):
                if message["type"] != "http.request":
                    raise ClientDisconnected("the client left before sending its body")
                return body
            parts = [body]
            size = len(body)
            while message.get("more_body", False):
                message = await receive()
                if message["type"] != "http.request":
                    raise ClientDisconnected("the client left before its body was whole")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise too_large(limit, ended=not message.get("more_body", False))
                parts.append(chunk)
            return b"".join(parts)
    except TimeoutError:
        raise timed_out(timeout) from None


def check_model_text(model: str) -> None:
    """Raise :class:`BadRequest` when ``model`` holds a control character (U+0000 to
    U+001F, U+007F): no model is named so, and the request's usage record would carry it
    (PostgreSQL refuses a NUL in text, which failed the whole batch of records)."""
    if has_control_character(model):
        raise BadRequest("'model' must not contain control characters", param="model")


def parse_model(body: bytes) -> tuple[dict[str, Any], str]:
    """Parse a JSON request body and return it with its ``model``.

    Raises :class:`BadRequest` when the body is empty, not JSON, not an object, or
    has no string ``model``.
    """
    if not body.strip():
        raise BadRequest(
            "request body is empty: this route needs a JSON object with a 'model'", param="model"
        )
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON ({exc.args[0]})") from None
    if not isinstance(payload, dict):
        kind = _JSON_KINDS.get(type(payload), "another JSON value")
        raise BadRequest(f"request body must be a JSON object, not {kind}")
    if b"\\u" in body or any(body.count(name) > 1 for name in _CONTROL_KEYS):
        # A key can be repeated (or spelt with \u escapes) only then: the common body
        # costs four scans, not a second parse.
        _refuse_repeated_keys(body)
    model = payload.get("model")
    if model is None:
        raise BadRequest("request body has no 'model'", param="model", code="missing_model")
    if not isinstance(model, str):
        kind = _JSON_KINDS.get(type(model), "an object")
        raise BadRequest(f"'model' must be a non-empty string, not {kind}", param="model")
    if not model:
        raise BadRequest("'model' must be a non-empty string", param="model")
    check_model_text(model)
    for key in payload:
        # Go's encoding/json (Ollama, many self-hosted servers) matches keys without
        # regard to case, and folds the long s (U+017F) to s and the Kelvin sign to k:
        # "Model" would be the key such a server acts on.
        folded = key.casefold() if len(key) in _CONTROL_LENGTHS else key
        if folded in _CONTROL_NAMES and key != folded:
            raise BadRequest(
                f"request body has the key {key!r}: write it {folded!r}, once", param=key
            )
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        kind = _JSON_KINDS.get(type(stream), "an object")
        raise BadRequest(f"'stream' must be true or false, not {kind}", param="stream")
    options = payload.get("stream_options")
    if options is not None and not isinstance(options, dict):
        kind = _JSON_KINDS.get(type(options), "another JSON value")
        raise BadRequest(f"'stream_options' must be an object, not {kind}", param="stream_options")
    if options:
        for key in options:
            if key != "include_usage" and key.casefold() == "include_usage":
                raise BadRequest(
                    f"'stream_options' has the key {key!r}: write it 'include_usage', once",
                    param="stream_options",
                )
    return payload, model


def _refuse_repeated_keys(body: bytes) -> None:
    """Raise :class:`BadRequest` when the top-level object of ``body`` (valid JSON) has a
    key twice: parsers disagree on which copy wins, so an upstream could act on another
    ``model`` or ``stream`` than relaygate routed and counted by."""
    top: list[list[tuple[str, Any]]] = []

    def keep(pairs: list[tuple[str, Any]]) -> None:
        # Called for each object, innermost first: the last call is the top level's.
        top[:] = [pairs]

    try:
        json.loads(body, object_pairs_hook=keep)
    except (ValueError, RecursionError):
        raise BadRequest("request body is nested too deeply to be read") from None
    seen: set[str] = set()
    for key, _ in top[0] if top else ():
        if key in seen:
            raise BadRequest(
                f"request body has the key {key!r} more than once; send it once", param=key
            )
        seen.add(key)


def check_payload(path: str, payload: dict[str, Any]) -> None:
    """Refuse what no upstream could take in the body of a request to ``path``: a chat
    request whose ``messages`` is not an array. Raises :class:`BadRequest`."""
    if path in _MESSAGE_PATHS and "messages" in payload:
        messages = payload["messages"]
        if not isinstance(messages, list):
            kind = _JSON_KINDS.get(type(messages), "an object")
            raise BadRequest(
                f"'messages' must be an array of message objects, not {kind}", param="messages"
            )


# Top-level fields naming a resource of the provider account (OpenAI Responses: a stored
# response, a conversation; Anthropic: a code-execution container): through the
# endpoint's shared key they would reach whichever user's resource the id names.
_RESOURCE_FIELDS = ("previous_response_id", "conversation", "container")
_FILE_ID = b'"file_id"'
_ITEM_REFERENCE = b'"item_reference"'


def check_references(payload: dict[str, Any], body: bytes, path: str) -> None:
    """Refuse a body that refers to resources of the provider account by id rather than
    carrying its content: ``previous_response_id``, ``conversation``, a stored ``prompt``
    (OpenAI Responses), a ``container`` (Anthropic), a content part or document by
    ``file_id`` (OpenAI and Anthropic), a Responses ``item_reference`` input item, a
    ``file_search`` tool's vector stores, a tool's ``container`` by id. Until relaygate
    keeps such resources per user, they would be any user's. Raises :class:`BadRequest`
    (code ``unsupported_reference``) naming the field. The one it keeps: a Responses
    request's ``previous_response_id`` on ``/v1/responses`` names a response relaygate
    stored for the caller (:mod:`relaygate.services.stored_responses`)."""
    for name in _RESOURCE_FIELDS:
        if name == "previous_response_id" and path == "/v1/responses":
            continue
        if payload.get(name) is not None:
            raise _reference(name)
    prompt = payload.get("prompt")
    if isinstance(prompt, dict) and "id" in prompt:
        raise _reference("prompt.id")
    tools = payload.get("tools")
    if isinstance(tools, list):
        for tool in tools:
            if isinstance(tool, dict) and (
                tool.get("type") == "file_search" or isinstance(tool.get("container"), str)
            ):
                raise _reference("tools")
    if _FILE_ID in body:
        for field in ("messages", "input"):
            if _names_a_file(payload.get(field)):
                raise _reference(f"{field} (file_id)")
    if _ITEM_REFERENCE in body and _refers_to_an_item(payload.get("input")):
        raise _reference("input (item_reference)")


def _refers_to_an_item(items: Any) -> bool:
    """Whether Responses input items include an ``item_reference`` (an item stored on
    the provider account, named by id)."""
    return isinstance(items, list) and any(
        isinstance(item, dict) and item.get("type") == "item_reference" for item in items
    )


def _names_a_file(items: Any) -> bool:
    """Whether chat messages or Responses input items carry a part or document by
    ``file_id`` (``{"file": {"file_id"}}``, ``{"type": "input_file", "file_id"}``,
    ``{"source": {"type": "file", "file_id"}}``)."""
    if not isinstance(items, list):
        return False
    for item in items:
        if not isinstance(item, dict):
            continue
        parts = item.get("content")
        for part in [item, *(parts if isinstance(parts, list) else ())]:
            if not isinstance(part, dict):
                continue
            file, source = part.get("file"), part.get("source")
            if (
                (str(part.get("type")).startswith("input_") and "file_id" in part)
                or (isinstance(file, dict) and "file_id" in file)
                or (isinstance(source, dict) and "file_id" in source)
            ):
                return True
    return False


def _reference(field: str) -> BadRequest:
    return BadRequest(
        f"'{field}' refers to a resource stored on the provider account, which relaygate "
        "does not pass on (it would be any user's): send the content itself",
        param=field.split(" ")[0],
        code="unsupported_reference",
    )


def dump_body(payload: dict[str, Any]) -> bytes:
    """``payload`` as the JSON body sent upstream. Raises :class:`BadRequest` for one
    nested deeper than a JSON writer goes (orjson writes 255 levels; it reads 1,024)."""
    try:
        return orjson.dumps(payload)
    except (orjson.JSONEncodeError, RecursionError):
        raise BadRequest(
            "the request body is nested too deeply to forward (at most 255 levels)"
        ) from None
