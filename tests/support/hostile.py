"""Upstreams that record every request they receive and answer as a test tells them:
redirecting to a collector, sending hostile headers, refusing one provider key, or
bouncing requests back to relaygate. Plain ASGI, so every header is as written."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.servers import ServerThread
from tests.support.upstream import Seen

Reply = tuple[int, list[tuple[bytes, bytes]], bytes]
"""(status, headers, body) of an answer."""


def json_reply(status: int, body: Any, *headers: tuple[bytes, bytes]) -> Reply:
    return status, [(b"content-type", b"application/json"), *headers], json.dumps(body).encode()


def chat_reply(model: str) -> Reply:
    """An OpenAI chat completion naming ``model``."""
    return json_reply(
        200,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "hello"},
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        },
    )


async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> bool:
    """Answer an ASGI lifespan ``scope`` (start-up, then shut-down); False for any other."""
    if scope["type"] != "lifespan":
        return False
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})
    return True


async def whole_body(receive: Any) -> bytes:
    """A request's whole body, read from ASGI ``receive``."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


@dataclass
class Recorder:
    """What a recording upstream saw (listings apart) and how it answers: ``models`` at
    ``GET /v1/models`` (unless ``listing`` replaces it), ``answer`` for anything else."""

    models: list[str] = field(default_factory=lambda: ["gpt-test"])
    listing: Callable[[Seen], Awaitable[Reply]] | None = None
    answer: Callable[[Seen], Awaitable[Reply]] | None = None
    requests: list[Seen] = field(default_factory=list)
    listings: list[Seen] = field(default_factory=list)
    raw_paths: list[bytes] = field(default_factory=list)
    """Each request's path (listings apart) as it came on the wire, escapes kept."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if await lifespan(scope, receive, send):
            return
        body = await whole_body(receive)
        seen = Seen(
            scope["method"],
            scope["path"],
            scope["query_string"].decode(),
            {k.decode(): v.decode() for k, v in scope["headers"]},
            body,
        )
        if scope["method"] == "GET" and scope["path"] == "/v1/models":
            self.listings.append(seen)
            if self.listing is not None:
                status, headers, out = await self.listing(seen)
            else:
                data = [{"id": m, "object": "model", "created": 0} for m in self.models]
                status, headers, out = json_reply(200, {"object": "list", "data": data})
        else:
            self.requests.append(seen)
            self.raw_paths.append(scope.get("raw_path") or b"")
            if self.answer is not None:
                status, headers, out = await self.answer(seen)
            else:
                model = json.loads(body).get("model", "") if body.startswith(b"{") else ""
                status, headers, out = chat_reply(model)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": out})


class RecordingUpstream:
    """A :class:`Recorder` served on loopback; ``url`` is its API base (``/v1``)."""

    def __init__(self) -> None:
        self.state = Recorder()
        self.server = ServerThread(self.state).start()
        self.url = self.server.url + "/v1"

    def stop(self) -> None:
        self.server.stop()


def bounce_to(target: str) -> Callable[[Seen], Awaitable[Reply]]:
    """An answer that forwards the request, headers and all, to ``target`` (a base URL)
    and returns what it said: a proxy in the middle of a loop."""

    async def bounce(seen: Seen) -> Reply:
        headers = {k: v for k, v in seen.headers.items() if k not in ("host", "content-length")}
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.request(
                seen.method, target + seen.path, headers=headers, content=seen.body
            )
        return answer.status_code, [(b"content-type", b"application/json")], answer.content

    return bounce
