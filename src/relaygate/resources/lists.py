"""OpenAI's list object, as the Files and Batch APIs answer a listing."""

from __future__ import annotations

from typing import Any


def list_object(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """``{"object": "list", "data", "first_id", "last_id", "has_more"}`` of ``data``
    (objects with an ``id``), as https://platform.openai.com/docs/api-reference/files/list
    and /batch/list answer."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }
