"""A small OpenAI-compatible upstream whose model list and behaviour each test controls."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class UpstreamState:
    """What the upstream does; tests change these fields while it runs."""

    models: list[str] = field(default_factory=lambda: ["gpt-test"])
    api_key: str | None = None
    auth_header: str = "authorization"
    auth_prefix: str = "Bearer "
    listing: str = "ok"  # ok | 401 | html | slow | 500
    slow_seconds: float = 5.0
    reply: str = "hello from upstream"
    fail_status: int | None = None
    retry_after: str | None = None
    stream_chunks: int = 5
    hold_stream: threading.Event | None = None
    stream_cancelled: threading.Event = field(default_factory=threading.Event)
    requests: list[Seen] = field(default_factory=list)
    extra_headers: dict[str, str] = field(default_factory=dict)
    """Sent with every non-streamed answer (e.g. a provider's own x-ratelimit-*)."""


def make_upstream(state: UpstreamState, name: str = "upstream") -> Starlette:
    """The app: ``GET /v1/models`` and ``POST /v1/{anything}`` answering like OpenAI."""

    def authorised(request: Request) -> bool:
        return state.api_key is None or request.headers.get(state.auth_header) == (
            f"{state.auth_prefix}{state.api_key}"
        )

    async def models(request: Request) -> Response:
        if state.listing == "slow":
            await asyncio.sleep(state.slow_seconds)
        if state.listing == "401" or not authorised(request):
            return JSONResponse({"error": {"message": "Incorrect API key provided"}}, 401)
        if state.listing == "html":
            return PlainTextResponse(
                "<html><body>Welcome to nginx</body></html>", media_type="text/html"
            )
        if state.listing == "500":
            return JSONResponse({"error": "boom"}, 500)
        data = [{"id": m, "object": "model", "created": 0, "owned_by": name} for m in state.models]
        return JSONResponse({"object": "list", "data": data})

    async def anything(request: Request) -> Response:
        body = await request.body()
        seen = Seen(
            request.method, request.url.path, request.url.query, dict(request.headers), body
        )
        state.requests.append(seen)
        if not authorised(request):
            return JSONResponse(
                {
                    "error": {
                        "message": "bad key",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                },
                401,
            )
        if state.fail_status is not None:
            headers = {"retry-after": state.retry_after} if state.retry_after else {}
            failing = {
                "message": f"{name} is failing",
                "type": "server_error",
                "param": None,
                "code": None,
            }
            return JSONResponse({"error": failing}, state.fail_status, headers=headers)
        payload = seen.json
        model = payload.get("model")
        if payload.get("stream"):
            options = payload.get("stream_options") or {}
            return StreamingResponse(
                _stream(state, model, name, options.get("include_usage") is True),
                media_type="text/event-stream",
                headers={"x-upstream": name},
            )
        return JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": state.reply},
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
            },
            headers={"x-upstream": name, "connection": "keep-alive", **state.extra_headers},
        )

    return Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/v1/{path:path}", anything, methods=["POST", "GET", "PUT", "DELETE"]),
        ]
    )


async def _stream(state: UpstreamState, model: str, name: str, usage: bool = False) -> Any:
    """OpenAI's chat stream; with ``usage`` (``stream_options.include_usage``) every chunk
    has ``"usage": null`` and a last chunk with no choices carries the usage."""
    try:
        for i in range(state.stream_chunks):
            chunk: dict[str, Any] = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": {"content": f"c{i} "}, "finish_reason": None}],
            }
            if usage:
                chunk["usage"] = None
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            if i == 0 and state.hold_stream is not None:
                # Hold the rest until the test saw the first chunk (or the client left).
                while not state.hold_stream.is_set():
                    await asyncio.sleep(0.01)
        if usage:
            last = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [],
                "usage": {
                    "prompt_tokens": 11,
                    "completion_tokens": state.stream_chunks,
                    "total_tokens": 11 + state.stream_chunks,
                },
            }
            yield f"data: {json.dumps(last)}\n\n".encode()
        yield b"data: [DONE]\n\n"
    except (asyncio.CancelledError, GeneratorExit):
        state.stream_cancelled.set()
        raise
