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


async def read_body(receive: Receive, headers: list[tuple[bytes, bytes]], limit: int) -> bytes:
    """Read the whole request body; raises :class:`PayloadTooLarge` past ``limit`` bytes
    (checked against ``content-length`` first, then as chunks arrive)."""
    for name, value in headers:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
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
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' must be a non-empty string", param="model")
    return payload, model
