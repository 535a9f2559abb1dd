"""Every malformed or unauthorised proxied request gets a clear OpenAI-shaped error."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select

from relaygate.db.tables import UsageRecord
from tests.conftest import Upstream
from tests.support.gateway import Gateway
from tests.support.polling import eventually


def post(gateway: Gateway, content: bytes, key: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key != "":
        headers["authorization"] = f"Bearer {key or gateway.admin_key}"
    return httpx.post(gateway.url + "/v1/chat/completions", content=content, headers=headers)


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, Any] = body["error"]
    return error


@pytest.fixture
def served(gateway: Gateway, upstream: Upstream) -> Gateway:
    gateway.add_endpoint("up", upstream.url)
    return gateway


@pytest.mark.parametrize(
    ("content", "message_part", "param"),
    [
        (b'{"model": "gpt-test",', "not valid JSON", None),
        (b"[1, 2]", "must be a JSON object, not an array", None),
        (b'"text"', "must be a JSON object, not a string", None),
        (b'{"messages": []}', "has no 'model'", "model"),
        (b'{"model": 42}', "'model' must be a non-empty string", "model"),
        (b"", "request body is empty", "model"),
    ],
    ids=["invalid-json", "array", "string", "no-model", "model-not-string", "empty"],
)
def test_malformed_body_is_400(
    served: Gateway, upstream: Upstream, content: bytes, message_part: str, param: str | None
) -> None:
    """Malformed bodies are refused with 400 before anything reaches the upstream."""
    response = post(served, content)
    assert response.status_code == 400
    error = error_of(response)
    assert message_part in error["message"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert upstream.state.requests == []


def test_a_model_named_with_a_control_character_is_400_and_usage_goes_on(
    served: Gateway, upstream: Upstream
) -> None:
    """A model name with a NUL (or another control character), in JSON or in a form, is
    refused 400 and recorded nowhere: its usage record once failed every batch after it on
    PostgreSQL, which refuses a NUL in text, so no request's usage was written again. The
    request after it is recorded."""
    key = served.create_key()["key"]
    client = served.client_for(key)
    for model in (r"gpt\u0000-test", r"gpt\u001b[31m"):  # JSON escapes
        body = b'{"model": "' + model.encode() + b'", "messages": []}'
        refused = client.post("/v1/chat/completions", content=body)
        assert refused.status_code == 400, refused.text
        assert error_of(refused)["message"] == "'model' must not contain control characters"
    form = client.post(
        "/v1/audio/transcriptions",
        files={"file": ("a.wav", b"RIFF", "audio/wav")},
        data={"model": "whisper\x00"},
    )
    assert form.status_code == 400, form.text
    assert "control characters" in error_of(form)["message"]
    served.openai(key).chat.completions.create(model="gpt-test", messages=[])
    assert upstream.state.requests and len(upstream.state.requests) == 1

    async def recorded() -> list[tuple[str, int]]:
        async with served.ctx.engine.connect() as connection:
            rows = await connection.execute(select(UsageRecord.model, UsageRecord.status))
            return [(row[0], row[1]) for row in rows]

    assert eventually(lambda: served.on_loop(recorded), bool) == [("gpt-test", 200)]


def test_unknown_model_is_404(served: Gateway) -> None:
    """The SDK raises NotFoundError with code model_not_found for an unknown model."""
    with pytest.raises(openai.NotFoundError) as raised:
        served.openai().chat.completions.create(model="nope", messages=[])
    assert raised.value.code == "model_not_found"
    assert "'nope'" in raised.value.message


def test_offline_model_is_503(served: Gateway, upstream: Upstream) -> None:
    """A model whose endpoint failed its sync is offline: 503, not 404."""
    upstream.state.listing = "500"
    result = served.admin.post("/admin/api/v1/endpoints/1/sync").json()
    assert result["status"] == "error"
    response = post(served, b'{"model": "gpt-test"}')
    assert response.status_code == 503
    assert "offline" in error_of(response)["message"]
    assert served.openai().models.list().data == []


def test_missing_key_is_401(served: Gateway) -> None:
    """No Authorization header: 401 that says how to send the key."""
    response = post(served, b'{"model": "gpt-test"}', key="")
    assert response.status_code == 401
    assert "Authorization: Bearer" in error_of(response)["message"]


def test_invalid_key_is_401(served: Gateway) -> None:
    """An unknown key is refused by the SDK as AuthenticationError."""
    with pytest.raises(openai.AuthenticationError):
        served.openai(key="rg-not-a-real-key").models.list()


def test_revoked_key_is_refused_on_next_request(served: Gateway) -> None:
    """A key works, is revoked through the admin API, and the very next request is 401."""
    created = served.create_key(name="temp")
    client = served.openai(key=created["key"])
    assert client.models.list().data
    assert served.admin.delete(f"/admin/api/v1/keys/{created['id']}").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_expired_key_is_401(served: Gateway) -> None:
    """A key past its expires_at is refused without any change being made."""
    soon = datetime.now(UTC) + timedelta(seconds=1.5)
    created = served.create_key(name="short", expires_at=soon.isoformat())
    client = served.openai(key=created["key"])
    assert client.models.list().data
    import time

    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.1)
    with pytest.raises(openai.AuthenticationError) as raised:
        client.models.list()
    assert raised.value.code == "expired_api_key"


def test_x_api_key_header_is_accepted(served: Gateway) -> None:
    """Older Anthropic SDKs send x-api-key; relaygate takes it like a Bearer key."""
    response = httpx.get(served.url + "/v1/models", headers={"x-api-key": served.admin_key})
    assert response.status_code == 200


def test_body_over_limit_is_413(tmp_path: Path, upstream: Upstream) -> None:
    """A body larger than max_body_bytes is refused with 413 and never forwarded."""
    gateway = Gateway(tmp_path, max_body_bytes=1024).start()
    try:
        gateway.add_endpoint("up", upstream.url)
        big = b'{"model": "gpt-test", "input": "' + b"x" * 4096 + b'"}'
        response = post(gateway, big)
        assert response.status_code == 413
        assert error_of(response)["code"] == "request_too_large"
        assert upstream.state.requests == []

        def chunks() -> Iterator[bytes]:
            yield b'{"model": "gpt-test", "input": "'
            yield b"x" * 4096
            yield b'"}'

        chunked = httpx.post(
            gateway.url + "/v1/embeddings",
            content=chunks(),
            headers={"authorization": f"Bearer {gateway.admin_key}"},
        )
        assert chunked.status_code == 413
        assert upstream.state.requests == []
    finally:
        gateway.stop()


@pytest.mark.parametrize("path", ["/v1/embeddings", "/admin/api/v1/users"])
def test_a_chunked_body_over_the_limit_that_came_whole_is_answered_at_once(
    tmp_path: Path, upstream: Upstream, path: str
) -> None:
    """A chunked body whose last chunk passes the limit has nothing left to drain: its
    413 ends at once instead of waiting out ``refused_body_drain_seconds`` (60 here,
    past the 10 s this client waits). The body goes in one write, so the server reads
    it whole before refusing it."""
    gateway = Gateway(
        tmp_path, max_body_bytes=1024, max_admin_body_bytes=1024, refused_body_drain_seconds=60
    ).start()
    try:
        gateway.add_endpoint("up", upstream.url)
        data = b'{"model": "gpt-test", "input": "' + b"x" * 4096 + b'"}'
        head = (
            f"POST {path} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n"
            f"authorization: Bearer {gateway.admin_key}\r\ncontent-type: application/json\r\n\r\n"
        ).encode()
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)
        with socket.create_connection(("127.0.0.1", gateway.server.port), timeout=10) as sock:
            sock.sendall(head + body)
            answer = b""
            while not answer.endswith(b"\r\n0\r\n\r\n"):  # the chunked answer's end
                chunk = sock.recv(65536)  # raises TimeoutError after 10 s of silence
                assert chunk, answer
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"request_too_large" in answer
        assert upstream.state.requests == []
    finally:
        gateway.stop()


def test_a_body_too_deep_to_forward_is_a_400(gateway: Gateway, upstream: Upstream) -> None:
    """A body nested deeper than relaygate can write again (a stream whose usage option it
    adds, or a model it renames) is refused 400 saying so, never a bare 500."""
    gateway.add_endpoint("up", upstream.url)
    nested: Any = "x"
    for _ in range(300):
        nested = [nested]
    body = {"model": "gpt-test", "messages": [], "stream": True, "extra": nested}
    response = gateway.admin.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["error"]["message"]
    assert upstream.state.requests == []
