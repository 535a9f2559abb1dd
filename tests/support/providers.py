"""Loopback stand-ins for Anthropic's and Google's APIs, following their documented shapes:
https://docs.anthropic.com/en/api/models-list , https://docs.anthropic.com/en/api/messages ,
https://docs.anthropic.com/en/api/messages-streaming , https://ai.google.dev/api/models ,
https://ai.google.dev/gemini-api/docs/openai ."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.upstream import Seen


def _openai_reply(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-p",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
        ],
        "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5},
    }


async def _record(request: Request, into: list[Seen]) -> Seen:
    seen = Seen(
        request.method,
        request.url.path,
        request.url.query,
        dict(request.headers),
        await request.body(),
    )
    into.append(seen)
    return seen


@dataclass
class AnthropicState:
    api_key: str = "sk-ant-test-key-0001"
    models: list[dict[str, Any]] = field(default_factory=list)
    page_cap: int = 2
    hold_stream: threading.Event | None = None
    requests: list[Seen] = field(default_factory=list)
    listing_calls: list[str] = field(default_factory=list)


def anthropic_model(model_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model_id,
        "display_name": model_id.title(),
        "created_at": "2025-02-19T00:00:00Z",
        **extra,
    }


def make_anthropic(state: AnthropicState) -> Starlette:
    """Anthropic's API under /v1: models (paged), messages (+stream), count_tokens, and the
    OpenAI-compatible chat completions."""

    def refused(request: Request) -> JSONResponse:
        # Echo the key, as careless providers do: relaygate must not repeat it.
        sent = request.headers.get("x-api-key") or request.headers.get("authorization")
        message = f"invalid x-api-key: {sent}"
        return JSONResponse(
            {"type": "error", "error": {"type": "authentication_error", "message": message}}, 401
        )

    def native_ok(request: Request) -> bool:
        return request.headers.get("x-api-key") == state.api_key and bool(
            request.headers.get("anthropic-version")
        )

    async def models(request: Request) -> Response:
        state.listing_calls.append(request.url.query)
        if not native_ok(request):
            return refused(request)
        limit = min(int(request.query_params.get("limit", "20")), state.page_cap)
        ids = [m["id"] for m in state.models]
        after = request.query_params.get("after_id")
        start = ids.index(after) + 1 if after in ids else 0
        page = state.models[start : start + limit]
        return JSONResponse(
            {
                "data": page,
                "has_more": start + limit < len(ids),
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
            }
        )

    async def messages(request: Request) -> Response:
        seen = await _record(request, state.requests)
        if not native_ok(request):
            return refused(request)
        body = seen.json
        if body.get("stream"):
            return StreamingResponse(
                _message_events(state, body["model"]), media_type="text/event-stream"
            )
        return JSONResponse(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": "Hi from Claude"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 5, "output_tokens": 4},
            }
        )

    async def count_tokens(request: Request) -> Response:
        await _record(request, state.requests)
        return JSONResponse({"input_tokens": 12}) if native_ok(request) else refused(request)

    async def chat(request: Request) -> Response:
        seen = await _record(request, state.requests)
        if request.headers.get("authorization") != f"Bearer {state.api_key}":
            return refused(request)
        return JSONResponse(_openai_reply(seen.json["model"], "Claude via OpenAI surface"))

    return Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ]
    )


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


async def _message_events(state: AnthropicState, model: str) -> Any:
    yield _event(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": model,
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 5, "output_tokens": 1},
            },
        },
    )
    yield _event(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    for i, word in enumerate(["Hello", " from", " Claude"]):
        yield _event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": word},
            },
        )
        if i == 0 and state.hold_stream is not None:
            while not state.hold_stream.is_set():
                await asyncio.sleep(0.01)
    yield _event("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield _event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 3},
        },
    )
    yield _event("message_stop", {"type": "message_stop"})


@dataclass
class GoogleState:
    api_key: str = "AIza-test-key-0001"
    models: list[dict[str, Any]] = field(default_factory=list)
    page_cap: int = 2
    native_listing: bool = True
    repeat_token: bool = False
    requests: list[Seen] = field(default_factory=list)


def gemini_model(name: str, methods: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "name": f"models/{name}",
        "displayName": name.replace("-", " ").title(),
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 8192,
        "supportedGenerationMethods": methods,
        **extra,
    }


def make_google(state: GoogleState) -> Starlette:
    """Gemini's native models list (/v1beta/models, paged) and its OpenAI-compatible base
    (/v1beta/openai)."""

    def bad_key() -> JSONResponse:
        return JSONResponse(
            {
                "error": {
                    "code": 400,
                    "message": "API key not valid. Please pass a valid API key.",
                    "status": "INVALID_ARGUMENT",
                }
            },
            400,
        )

    async def native_models(request: Request) -> Response:
        if not state.native_listing:
            return Response(status_code=404)
        if request.headers.get("x-goog-api-key") != state.api_key:
            return bad_key()
        size = min(int(request.query_params.get("pageSize", "50")), state.page_cap)
        start = int(request.query_params.get("pageToken", "0"))
        page = state.models[start : start + size]
        body: dict[str, Any] = {"models": page}
        if start + size < len(state.models):
            body["nextPageToken"] = "0" if state.repeat_token else str(start + size)
        return JSONResponse(body)

    def bearer_ok(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {state.api_key}"

    async def openai_models(request: Request) -> Response:
        if not bearer_ok(request):
            return bad_key()
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": m["name"], "object": "model", "owned_by": "google"} for m in state.models
                ],
            }
        )

    async def chat(request: Request) -> Response:
        seen = await _record(request, state.requests)
        if not bearer_ok(request):
            return bad_key()
        return JSONResponse(_openai_reply(seen.json["model"], "Gemini says hi"))

    return Starlette(
        routes=[
            Route("/v1beta/models", native_models),
            Route("/v1beta/openai/models", openai_models),
            Route("/v1beta/openai/chat/completions", chat, methods=["POST"]),
            Route("/v1beta/openai/embeddings", chat, methods=["POST"]),
        ]
    )
