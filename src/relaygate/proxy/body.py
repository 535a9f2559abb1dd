"""Reading and parsing the request body, once."""

from __future__ import annotations

from typing import Any

import orjson

from relaygate.errors import BadRequest, PayloadTooLarge

Receive = Any
_JSON_KINDS = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}
# Chat routes (OpenAI's and Anthropic's) whose 'messages' is an array.
_MESSAGE_PATHS = frozenset({"/v1/chat/completions", "/v1/messages"})


async def read_body(receive: Receive, length: int | None, limit: int) -> bytes:
    """Read the whole request body; raises :class:`PayloadTooLarge` past ``limit`` bytes
    (checked against the declared ``length``, the content-length, first, then as chunks
    arrive)."""
    if length is not None and length > limit:
        raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
    message = await receive()
    body: bytes = message.get("body", b"")
    if len(body) > limit:
        raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
    if not message.get("more_body", False):
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


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
    model = payload.get("model")
    if model is None:
        raise BadRequest("request body has no 'model'", param="model", code="missing_model")
    if not isinstance(model, str):
        kind = _JSON_KINDS.get(type(model), "an object")
        raise BadRequest(f"'model' must be a non-empty string, not {kind}", param="model")
    if not model:
        raise BadRequest("'model' must be a non-empty string", param="model")
    return payload, model


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
