"""The model list routes relaygate answers itself, from the snapshot: ``GET /v1/models``
and ``GET /v1/models/{id}`` in OpenAI's shapes
(https://platform.openai.com/docs/api-reference/models)."""

from __future__ import annotations

from relaygate.errors import ModelUnavailable
from relaygate.proxy.asgi import Send, send_json
from relaygate.proxy.plan import unavailable
from relaygate.snapshot import Principal, Snapshot


async def answer_models(send: Send, snapshot: Snapshot, principal: Principal, path: str) -> int:
    """``GET /v1/models`` (the models ``principal`` may use) or ``/v1/models/{id}``
    (one of them: 404 for one it may not use, 503 for one offline)."""
    if path == "/v1/models":
        await send_json(send, 200, snapshot.listing(principal))
        return 200
    name = path[len("/v1/models/") :]
    entry = snapshot.model_body(principal, name)
    if entry is None:
        if snapshot.route_for(principal, name) is not None:
            raise ModelUnavailable(f"the model {name!r} is offline", param="model")
        raise unavailable(snapshot, name)
    await send_json(send, 200, entry)
    return 200
