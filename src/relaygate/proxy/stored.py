"""``/v1/responses/{id}``: the responses relaygate stored for their owners, answered from
its own store (:mod:`relaygate.services.stored_responses`), never from the provider
account's. Shapes follow https://platform.openai.com/docs/api-reference/responses/get ,
…/responses/delete and …/responses/input-items ."""

from __future__ import annotations

from typing import Any

import orjson

from relaygate.errors import MethodNotAllowed, NotFound
from relaygate.proxy.asgi import Send, send_json
from relaygate.services.stored_responses import RESPONSE_ID, ResponseStore
from relaygate.snapshot import Principal

STORED_RESPONSES = "/v1/responses/"
"""The prefix of the routes relaygate answers for stored responses (``GET``, ``DELETE``)."""


async def answer_stored(
    store: ResponseStore | None, send: Send, method: str, path: str, principal: Principal
) -> int:
    """Answer ``GET`` or ``DELETE /v1/responses/{id}`` or ``GET
    /v1/responses/{id}/input_items`` for ``principal`` from ``store``: the Response
    object, ``{"id", "object": "response.deleted", "deleted": true}``, or a list of the
    input items. Returns the status sent. Raises :class:`NotFound` (404
    ``response_not_found``) for an id that is not the caller's, whoever's it is, and
    :class:`MethodNotAllowed` for ``DELETE`` on the input items."""
    ident, _, tail = path[len(STORED_RESPONSES) :].partition("/")
    if store is None or not RESPONSE_ID.fullmatch(ident) or tail not in ("", "input_items"):
        raise NotFound(f"no response with id {ident[:64]!r}", code="response_not_found")
    user = principal.user_id
    if tail == "input_items":
        if method != "GET":
            raise MethodNotAllowed(f"{method} is not allowed on {path}", allow="GET")
        items = await store.input_items(user, ident)
        listing = {
            "object": "list",
            "data": items,
            "first_id": _item_id(items[0]) if items else None,
            "last_id": _item_id(items[-1]) if items else None,
            "has_more": False,
        }
        await send_json(send, 200, orjson.dumps(listing))
    elif method == "GET":
        await send_json(send, 200, orjson.dumps(await store.get(user, ident)))
    else:
        await store.delete(user, ident)
        deleted = {"id": ident, "object": "response.deleted", "deleted": True}
        await send_json(send, 200, orjson.dumps(deleted))
    return 200


def _item_id(item: Any) -> str | None:
    ident = item.get("id") if isinstance(item, dict) else None
    return ident if isinstance(ident, str) else None
