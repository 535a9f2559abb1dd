"""Console: the playground (``/ui/playground``, every signed-in user) — chat with a model
the user may use and watch the reply stream in.

The page never holds an API key. Its script posts the chat to
``POST /ui/playground/chat`` (session and CSRF token required); relaygate turns it into a
streamed ``/v1/chat/completions`` request and runs it through the proxy as the session's
principal (:meth:`relaygate.proxy.app.Proxy.serve_live`): the same access checks, rate
limits, budgets, concurrency and usage records as a request sent with the key itself.
The proxy's answer — the upstream's server-sent events, or an OpenAI-shaped error —
is passed back as it arrives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from relaygate.app_state import state_of
from relaygate.errors import BadRequest, Overloaded, PayloadTooLarge
from relaygate.proxy.asgi import Message, Receive, Scope, Send
from relaygate.snapshot import Principal
from relaygate.web.auth import Checked, Session, context_of
from relaygate.web.render import page

if TYPE_CHECKING:  # the console and the proxy are wired together by the app
    from relaygate.proxy.app import Proxy

router = APIRouter()

CHAT_PATH = "/v1/chat/completions"
MAX_CHAT_BYTES = 64 * 1024
"""The largest playground request body; a larger one is refused before it is read."""
MAX_MESSAGE_CHARS = 32_000
MAX_SYSTEM_CHARS = 8_000
MAX_TOKENS = 4_096
DEFAULT_MAX_TOKENS = 512


class PlaygroundChat(BaseModel):
    """What the playground sends: a model, an optional system prompt, one user message
    and the cap on the reply's tokens."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(min_length=1, max_length=500)
    system: str = Field(default="", max_length=MAX_SYSTEM_CHARS)
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    max_tokens: int = Field(default=DEFAULT_MAX_TOKENS, ge=1, le=MAX_TOKENS)

    def completion_body(self) -> dict[str, Any]:
        """The chat completion request the playground makes (and its snippets show)."""
        messages = [{"role": "system", "content": self.system}] if self.system else []
        messages.append({"role": "user", "content": self.message})
        return {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }


def usable_models(request: Request, principal: Principal) -> list[str]:
    """The model names ``principal`` sees in ``GET /v1/models``, in that order."""
    listing = orjson.loads(context_of(request).snapshots.current.listing(principal))
    return [str(entry["id"]) for entry in listing["data"]]


async def read_bounded(request: Request, limit: int) -> bytes:
    """The request body, refused with :class:`PayloadTooLarge` (413) as soon as it is
    known to pass ``limit`` bytes: by its declared length before a byte is read, or at
    the chunk that passes it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"a playground request is at most {limit:,} bytes")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"a playground request is at most {limit:,} bytes")
        parts.append(chunk)
    return b"".join(parts)


def parse_chat(body: bytes) -> PlaygroundChat:
    """The playground request in ``body``; raises :class:`BadRequest` naming the first
    field that is wrong."""
    try:
        return PlaygroundChat.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first.get("loc", ())) or None
        if first.get("type") == "json_invalid" or field is None:
            raise BadRequest("the playground request is not a JSON object") from None
        raise BadRequest(f"{field}: {first.get('msg', 'invalid')}", param=field) from None


class _Replay:
    """A ``receive`` that gives the already-read ``body`` once, then the server's own
    (which reports the client's disconnect)."""

    def __init__(self, body: bytes, receive: Receive) -> None:
        self._body: bytes | None = body
        self._receive = receive

    async def __call__(self) -> Message:
        body, self._body = self._body, None
        if body is not None:
            return {"type": "http.request", "body": body, "more_body": False}
        return await self._receive()


class ProxiedChat(Response):
    """The proxy's answer to the playground's chat, passed on as it arrives, never
    cached."""

    def __init__(self, proxy: Proxy, principal: Principal, body: bytes) -> None:
        super().__init__()
        self.proxy = proxy
        self.principal = principal
        self.payload = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        inner: Scope = {
            **scope,
            "path": CHAT_PATH,
            "raw_path": CHAT_PATH.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(self.payload)).encode()),
            ],
        }

        async def no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"cache-control", b"no-store")]
                message = {**message, "headers": headers}
            await send(message)

        await self.proxy.serve_live(inner, _Replay(self.payload, receive), no_store, self.principal)


@router.get("/playground")
async def playground_page(request: Request, session: Session) -> Response:
    """The playground, offering the models the user may use."""
    return page(
        request,
        "playground.html",
        session,
        active="playground",
        models=usable_models(request, session.principal),
        base_url=str(request.base_url).rstrip("/") + "/v1",
        max_message=MAX_MESSAGE_CHARS,
        max_system=MAX_SYSTEM_CHARS,
        max_tokens=MAX_TOKENS,
        default_max_tokens=DEFAULT_MAX_TOKENS,
    )


@router.post("/playground/chat")
async def playground_chat(request: Request, session: Checked) -> Response:
    """Run one playground chat through the proxy as the session's principal and stream
    its answer back. Raises :class:`PayloadTooLarge` past :data:`MAX_CHAT_BYTES`,
    :class:`BadRequest` for a malformed request, and a 503 while the proxy is not up."""
    body = await read_bounded(request, MAX_CHAT_BYTES)
    chat = parse_chat(body)
    proxy: Proxy | None = state_of(request).proxy
    if proxy is None:
        raise Overloaded("the gateway is starting; try again in a moment")
    return ProxiedChat(proxy, session.principal, orjson.dumps(chat.completion_body()))
