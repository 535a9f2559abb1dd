"""An upstream that echoes the provider key it was sent in an error answer: the key never
reaches relaygate's client, whether the error is OpenAI-shaped (passed on) or not
(wrapped and quoted)."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.support.gateway import Gateway
from tests.support.servers import ServerThread

PROVIDER_KEY = "sk-operator-secret-4f1b2c9d8e7a6b5c"
MESSAGES = [{"role": "user", "content": "hi"}]


def make_echoing_upstream(shape: list[str]) -> Starlette:
    """An OpenAI-compatible upstream serving ``echo`` whose every inference answer is a
    400 (as Google's answers a bad key) repeating the Authorization header it got: as an
    OpenAI error (``shape[0]`` ``proper``), as plain text (``text``) or as JSON of
    another shape (``other``)."""

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "echo", "object": "model"}]})

    async def inference(request: Request) -> Response:
        said = f"invalid credentials: {request.headers.get('authorization', '')}"
        if shape[0] == "proper":
            return JSONResponse({"error": {"message": said, "type": "auth"}}, 400)
        if shape[0] == "other":
            return JSONResponse({"detail": said}, 400)
        return PlainTextResponse(said, 400)

    return Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/v1/{path:path}", inference, methods=["POST"]),
        ]
    )


@pytest.fixture
def shape() -> list[str]:
    return ["proper"]


@pytest.fixture
def echoing(gateway: Gateway, shape: list[str]) -> Iterator[Gateway]:
    server = ServerThread(make_echoing_upstream(shape)).start()
    gateway.add_endpoint(
        "echoer", server.url + "/v1", api_key=PROVIDER_KEY, messages_api="translate"
    )
    yield gateway
    server.stop()


@pytest.mark.parametrize("kind", ["proper", "text", "other"])
def test_an_upstream_error_never_quotes_the_provider_key_to_the_client(
    echoing: Gateway, shape: list[str], kind: str
) -> None:
    """A user's chat completion that an upstream refuses with an error repeating the
    operator's key gets the error (same status, still an OpenAI error) without the key."""
    shape[0] = kind
    user = echoing.create_user("mallory")
    key = echoing.create_key(name="m", user_id=user["id"])["key"]
    answer = echoing.client_for(key).post(
        "/v1/chat/completions", json={"model": "echo", "messages": MESSAGES}
    )
    assert answer.status_code == 400
    assert PROVIDER_KEY not in answer.text
    assert PROVIDER_KEY[-12:] not in answer.text
    message = answer.json()["error"]["message"]
    assert "invalid credentials" in message
    assert int(answer.headers["content-length"]) == len(answer.content)


@pytest.mark.parametrize("kind", ["proper", "text"])
def test_an_upstream_error_never_reaches_a_messages_client_with_the_key(
    echoing: Gateway, shape: list[str], kind: str
) -> None:
    """The same on /v1/messages translated to chat completions: the anthropic SDK's error
    says the endpoint refused, and carries no part of the operator's key."""
    shape[0] = kind
    client = echoing.anthropic()
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="echo", max_tokens=10, messages=MESSAGES)  # type: ignore[arg-type]
    assert PROVIDER_KEY not in str(caught.value.body) + caught.value.message
    assert PROVIDER_KEY[-12:] not in str(caught.value.body) + caught.value.message
