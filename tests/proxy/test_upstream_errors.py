"""Upstream error answers that explain themselves, and request ids an upstream accepts.

The upstream here answers the way real servers do when things go wrong: FastAPI's bare
``404 {"detail": "Not Found"}``, an empty 500, an HTML page; and, like llama.cpp's
server, it refuses (400, empty body) a request whose ``x-request-id`` is not a UUID.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import anthropic
import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.gateway import Gateway
from tests.support.servers import ServerThread

MESSAGES = [{"role": "user", "content": "hi"}]
PROPER = {"error": {"message": "context too long", "type": "invalid_request_error"}}


@dataclass
class Answers:
    """What the upstream answers every inference request with: ``status`` and ``body``
    (None: a chat completion), as ``content_type``; ``request_ids`` it was sent."""

    status: int = 200
    body: bytes | None = None
    content_type: str = "application/json"
    request_ids: list[str] = field(default_factory=list)


def make_strict_upstream(answers: Answers) -> Starlette:
    """An OpenAI-compatible upstream serving ``bare`` that refuses, as llama.cpp does, any
    ``x-request-id`` that is not a UUID, and otherwise answers as ``answers`` says."""

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "bare", "object": "model"}]})

    async def inference(request: Request) -> Response:
        given = request.headers.get("x-request-id", "")
        answers.request_ids.append(given)
        try:
            uuid.UUID(given)
        except ValueError:
            return Response(b"", 400)
        if answers.body is not None:
            return Response(answers.body, answers.status, media_type=answers.content_type)
        return JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": "bare",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "fine"},
                    }
                ],
                "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
            }
        )

    return Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/v1/{path:path}", inference, methods=["POST"]),
        ]
    )


@pytest.fixture
def answers() -> Answers:
    return Answers()


@pytest.fixture
def strict(gateway: Gateway, answers: Answers) -> Iterator[Gateway]:
    """The gateway with endpoint ``strict-llama`` (messages translated to chat) in front
    of the strict upstream."""
    server = ServerThread(make_strict_upstream(answers)).start()
    gateway.add_endpoint("strict-llama", server.url + "/v1", messages_api="translate")
    yield gateway
    server.stop()


def anthropic_client(gateway: Gateway) -> anthropic.Anthropic:
    return gateway.anthropic()


@pytest.mark.parametrize(
    ("status", "body", "described"),
    [
        (404, b'{"detail":"Not Found"}', 'without an error object: {"detail":"Not Found"}'),
        (500, b"", "with an empty body"),
    ],
)
def test_an_unshaped_upstream_error_reaches_the_openai_sdk_naming_the_endpoint(
    strict: Gateway, answers: Answers, status: int, body: bytes, described: str
) -> None:
    """An upstream error that is not OpenAI-shaped (FastAPI's bare 404, an empty 500)
    reaches the openai SDK as an APIStatusError of the same status whose message names
    the endpoint, the status and what the endpoint sent."""
    answers.status, answers.body = status, body
    with pytest.raises(openai.APIStatusError) as caught:
        strict.openai().chat.completions.create(model="bare", messages=MESSAGES)  # type: ignore[arg-type]
    error = caught.value
    assert error.status_code == status
    assert "endpoint 'strict-llama' answered HTTP" in error.message
    assert f"HTTP {status} {described}" in error.message
    assert isinstance(error.body, dict) and error.body["code"] == f"upstream_http_{status}"
    assert error.body["type"] == "upstream_error"


@pytest.mark.parametrize(
    ("status", "body"), [(404, b'{"detail":"Not Found"}'), (500, b""), (502, b"<h1>Bad</h1>")]
)
def test_an_unshaped_upstream_error_reaches_the_anthropic_sdk_naming_the_endpoint(
    strict: Gateway, answers: Answers, status: int, body: bytes
) -> None:
    """On /v1/messages (translated to the endpoint's chat completions) the same errors
    reach the anthropic SDK as an APIStatusError naming the endpoint and the status."""
    answers.status, answers.body = status, body
    answers.content_type = "text/html" if body.startswith(b"<") else "application/json"
    with pytest.raises(anthropic.APIStatusError) as caught:
        anthropic_client(strict).messages.create(
            model="bare",
            max_tokens=10,
            messages=MESSAGES,  # type: ignore[arg-type]
        )
    assert caught.value.status_code == status
    assert f"endpoint 'strict-llama' answered HTTP {status}" in caught.value.message
    assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "error"


def test_a_native_messages_error_is_wrapped_in_anthropics_shape(
    gateway: Gateway, answers: Answers
) -> None:
    """An endpoint that serves /v1/messages itself and answers it with a bare 404 gives
    the anthropic SDK an Anthropic-shaped not_found_error naming the endpoint."""
    server = ServerThread(make_strict_upstream(answers)).start()
    try:
        gateway.add_endpoint("native", server.url + "/v1", messages_api="native")
        answers.status, answers.body = 404, b'{"detail":"Not Found"}'
        raw = gateway.admin.post(
            "/v1/messages", json={"model": "bare", "max_tokens": 5, "messages": MESSAGES}
        )
        assert raw.status_code == 404
        assert raw.json()["type"] == "error"
        assert raw.json()["error"]["type"] == "not_found_error"
        with pytest.raises(anthropic.NotFoundError) as caught:
            anthropic_client(gateway).messages.create(
                model="bare",
                max_tokens=10,
                messages=MESSAGES,  # type: ignore[arg-type]
            )
        assert "endpoint 'native' answered HTTP 404" in caught.value.message
    finally:
        server.stop()


def test_a_proper_upstream_error_passes_through_unchanged(
    strict: Gateway, answers: Answers
) -> None:
    """An upstream's own OpenAI-shaped error reaches the client byte for byte, with its
    status."""
    answers.status, answers.body = 400, httpx.Response(200, json=PROPER).content
    response = strict.admin.post("/v1/chat/completions", json={"model": "bare", "messages": []})
    assert response.status_code == 400
    assert response.content == answers.body


def test_a_huge_unshaped_error_is_read_only_in_part_and_quoted_briefly(
    strict: Gateway, answers: Answers
) -> None:
    """A hostile upstream's endless error page is read to a bound (64 KiB), and only its
    start (200 characters) is quoted: the client gets a short OpenAI-shaped error."""
    answers.status, answers.body = 500, b"x" * (4 * 1024 * 1024)
    answers.content_type = "text/plain"
    response = strict.admin.post("/v1/chat/completions", json={"model": "bare", "messages": []})
    assert response.status_code == 500
    message = response.json()["error"]["message"]
    assert message.startswith("endpoint 'strict-llama' answered HTTP 500 without an error")
    assert message.endswith("x" * 200 + "…") and len(message) < 300


def test_a_non_uuid_request_id_reaches_a_uuid_only_upstream(
    strict: Gateway, answers: Answers
) -> None:
    """A client's x-request-id that is not a UUID no longer makes a UUID-only upstream
    (llama.cpp) refuse the request: a UUID of relaygate's goes upstream, and the client
    still gets its own id back."""
    raw = strict.openai().chat.completions.with_raw_response.create(
        model="bare",
        messages=MESSAGES,  # type: ignore[arg-type]
        extra_headers={"x-request-id": "trace-123"},
    )
    assert raw.parse().choices[0].message.content == "fine"
    assert raw.headers["x-request-id"] == "trace-123"
    sent = answers.request_ids[-1]
    assert sent != "trace-123" and str(uuid.UUID(sent)) == sent


def test_a_uuid_request_id_goes_upstream_as_sent(strict: Gateway, answers: Answers) -> None:
    """A client's UUID x-request-id is the one the upstream sees, so the two logs meet."""
    given = str(uuid.uuid4())
    strict.openai().chat.completions.create(
        model="bare",
        messages=MESSAGES,  # type: ignore[arg-type]
        extra_headers={"x-request-id": given},
    )
    assert answers.request_ids[-1] == given
