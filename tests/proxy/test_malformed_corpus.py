"""A corpus of malformed requests: each is refused with a 4xx in OpenAI's error shape,
nothing reaches the upstream, and relaygate keeps serving afterwards."""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Upstream
from tests.proxy.test_bad_requests import error_of
from tests.support.gateway import Gateway

MAX_BODY = 256 * 1024
CHAT = "/v1/chat/completions"
JSON = "application/json"
ADMIN_KEY = object()
"""Stands for the gateway's admin key in a case's ``authorization``."""

Headers = list[tuple[str, str | bytes]]


@dataclass(frozen=True)
class Case:
    """One malformed request and the refusal it must get."""

    method: str
    path: str
    status: int
    code: str | None
    content: bytes | Iterable[bytes] = b""
    content_type: str | None = JSON
    authorization: object = ADMIN_KEY
    headers: Headers = field(default_factory=list)
    message: str = ""
    """A part of the error message."""
    allow: str | None = None
    """The ``allow`` header a 405 must carry."""
    param: str | None = None


def case(name: str, method: str, path: str, status: int, code: str | None, **kw: Any) -> Any:
    """A corpus entry: the :class:`Case`, under a readable test id."""
    return pytest.param(Case(method, path, status, code, **kw), id=name)


def chat(
    name: str, content: bytes, status: int = 400, code: str = "invalid_request", **kw: Any
) -> Any:
    """A corpus entry POSTing ``content`` to the chat route."""
    return case(name, "POST", CHAT, status, code, content=content, **kw)


def chunks(total: int) -> tuple[bytes, ...]:
    """A JSON body of about ``total`` bytes in 64 KiB pieces (sent chunked)."""
    middle = (b"x" * 65536,) * (total // 65536)
    return (b'{"model": "gpt-test", "input": "', *middle, b'"}')


def nested(depth: int) -> bytes:
    return b'{"model": "gpt-test", "messages": ' + b"[" * depth + b"]" * depth + b"}"


OK_BODY = b'{"model": "gpt-test"}'
NOT_JSON = "not valid JSON"
TOO_BIG = "request_header_fields_too_large"
NO_METHOD = "method_not_allowed"
MEDIA = "unsupported_media_type"
BAD_KEY = "invalid_api_key"
NO_KEY = "missing_api_key"
MALFORMED = [
    # Not JSON, or JSON that orjson refuses.
    chat("json-truncated", b'{"model": "gpt-test", "messages": [', message=NOT_JSON),
    chat("json-trailing-garbage", b'{"model": "gpt-test"} trailing', message=NOT_JSON),
    chat("json-two-documents", OK_BODY + OK_BODY, message=NOT_JSON),
    chat("json-nan", b'{"model": "gpt-test", "temperature": NaN}', message=NOT_JSON),
    chat("json-infinity", b'{"model": "gpt-test", "temperature": -Infinity}', message=NOT_JSON),
    chat("json-single-quotes", b"{'model': 'gpt-test'}", message=NOT_JSON),
    chat("json-comment", b'{"model": "gpt-test" /* note */}', message=NOT_JSON),
    chat("json-trailing-comma", b'{"model": "gpt-test",}', message=NOT_JSON),
    chat("json-lone-surrogate", b'{"model": "gpt-\\ud800"}', message=NOT_JSON),
    chat("invalid-utf8", b'{"model": "gpt-\xff\xfe"}', message=NOT_JSON),
    chat("utf8-bom", b"\xef\xbb\xbf" + OK_BODY, message=NOT_JSON),
    chat("nested-100k-arrays", b"[" * 100_000 + b"]" * 100_000, message="depth limit"),
    chat("nested-100k-in-messages", nested(100_000), message="depth limit"),
    chat("body-empty", b"", message="request body is empty", param="model"),
    chat("body-whitespace", b" \r\n\t ", message="request body is empty", param="model"),
    # JSON, but not what a body-routed request needs.
    chat("body-array", b"[" + OK_BODY + b"]", message="not an array"),
    chat("body-string", b'"gpt-test"', message="not a string"),
    chat("body-number", b"42", message="not a number"),
    chat("body-null", b"null", message="not null"),
    chat("body-boolean", b"true", message="not a boolean"),
    chat("model-missing", b'{"messages": []}', code="missing_model", param="model"),
    chat("model-null", b'{"model": null}', code="missing_model", param="model"),
    chat("model-number", b'{"model": 42}', message="not a number", param="model"),
    chat("model-array", b'{"model": ["gpt-test"]}', message="not an array", param="model"),
    chat("model-object", b'{"model": {"id": "x"}}', message="not an object", param="model"),
    chat("model-empty", b'{"model": ""}', message="non-empty string", param="model"),
    chat("model-10k-chars", b'{"model": "%s"}' % (b"m" * 10_000), 404, "model_not_found"),
    chat("messages-string", b'{"model": "gpt-test", "messages": "hi"}', param="messages"),
    chat("messages-object", b'{"model": "gpt-test", "messages": {}}', param="messages"),
    chat("messages-null", b'{"model": "gpt-test", "messages": null}', param="messages"),
    # Sizes: bodies over max_body_bytes, headers over max_header_bytes (64 KiB).
    chat("body-over-limit", b"".join(chunks(2 * MAX_BODY)), 413, "request_too_large"),
    case(
        "body-over-limit-chunked",
        "POST",
        "/v1/embeddings",
        413,
        "request_too_large",
        content=chunks(2 * MAX_BODY),
    ),
    chat("header-of-1mb", OK_BODY, 431, TOO_BIG, headers=[("x-big", "a" * 1_000_000)]),
    chat("headers-10k", OK_BODY, 431, TOO_BIG, headers=[(f"x-h{i}", "v") for i in range(10_000)]),
    case(
        "header-of-100k-admin-api",
        "GET",
        "/admin/api/v1/keys",
        431,
        TOO_BIG,
        headers=[("x-big", "a" * 100_000)],
    ),
    # Paths.
    case(
        "v1-unknown-path-get", "GET", "/v1/nope", 404, "unsupported_route", message="GET /v1/nope"
    ),
    case(
        "v1-unknown-path-unknown-model",
        "POST",
        "/v1/nope",
        404,
        "unsupported_route",
        content=b'{"model": "nope"}',
    ),
    case(
        "v1-get-with-json-body",
        "GET",
        CHAT,
        405,
        NO_METHOD,
        content=OK_BODY,
        allow="POST",
        message="takes POST",
    ),
    # Keys relaygate acts on, twice (parsers differ on which copy wins) or loosely typed.
    case(
        "v1-model-twice",
        "POST",
        CHAT,
        400,
        "invalid_request",
        content=b'{"model": "nope", "model": "gpt-test", "messages": []}',
        param="model",
    ),
    case(
        "v1-model-twice-escaped",
        "POST",
        CHAT,
        400,
        "invalid_request",
        content=b'{"model": "gpt-test", "\\u006dodel": "nope", "messages": []}',
        param="model",
    ),
    case(
        "v1-stream-twice",
        "POST",
        CHAT,
        400,
        "invalid_request",
        content=b'{"model": "gpt-test", "stream": false, "stream": true, "messages": []}',
        param="stream",
    ),
    case(
        "v1-stream-a-string",
        "POST",
        CHAT,
        400,
        "invalid_request",
        content=b'{"model": "gpt-test", "stream": "true", "messages": []}',
        param="stream",
    ),
    case(
        "v1-stream-options-a-string",
        "POST",
        CHAT,
        400,
        "invalid_request",
        content=b'{"model": "gpt-test", "stream": true, "stream_options": "x", "messages": []}',
        param="stream_options",
    ),
    case("admin-unknown-path", "GET", "/admin/api/v1/nope", 404, "not_found"),
    case("root-unknown-path", "GET", "/nope", 404, "not_found"),
    case(
        "v1-dot-segments", "POST", CHAT + "/%2e%2e/%2E%2E/x", 400, "invalid_path", content=OK_BODY
    ),
    case(
        "v1-double-encoded-dots",
        "POST",
        CHAT + "/%252e%252e/x",
        400,
        "invalid_path",
        content=OK_BODY,
    ),
    # Methods.
    case("get-chat", "GET", CHAT, 405, NO_METHOD, allow="POST"),
    case("delete-chat", "DELETE", CHAT, 405, NO_METHOD, allow="POST"),
    case("options-chat", "OPTIONS", CHAT, 405, NO_METHOD, allow="POST"),
    case("trace-chat", "TRACE", CHAT, 405, NO_METHOD, allow="POST"),
    case("patch-models", "PATCH", "/v1/models", 405, NO_METHOD, content=b"{}", allow="GET, HEAD"),
    case("post-models", "POST", "/v1/models", 405, NO_METHOD, content=OK_BODY, allow="GET, HEAD"),
    case("delete-model", "DELETE", "/v1/models/gpt-test", 405, NO_METHOD, allow="GET, HEAD"),
    case(
        "put-admin-endpoints",
        "PUT",
        "/admin/api/v1/endpoints",
        405,
        NO_METHOD,
        content=b"{}",
        allow="GET, POST",
    ),
    case("delete-healthz", "DELETE", "/healthz", 405, NO_METHOD, allow="GET"),
    # Content types.
    chat("content-type-xml", b"<model>gpt-test</model>", 415, MEDIA, content_type="text/xml"),
    chat("content-type-xml-json-body", OK_BODY, 415, MEDIA, content_type="text/xml"),
    case(
        "content-type-multipart-on-chat",
        "POST",
        CHAT,
        415,
        MEDIA,
        content=b'--b\r\ncontent-disposition: form-data; name="model"\r\n\r\ngpt-test\r\n--b--\r\n',
        content_type="multipart/form-data; boundary=b",
        message="multipart/form-data is not supported on /v1/chat/completions",
    ),
    case(
        "content-type-multipart-without-boundary",
        "POST",
        "/v1/audio/transcriptions",
        400,
        "invalid_request",
        content=b'--b\r\ncontent-disposition: form-data; name="model"\r\n\r\ngpt-test\r\n--b--\r\n',
        content_type="multipart/form-data",
        message="needs a boundary",
    ),
    chat(
        "content-type-form",
        b"model=gpt-test",
        415,
        MEDIA,
        content_type="application/x-www-form-urlencoded",
        message="curl -d",
    ),
    # Keys.
    chat("auth-missing", OK_BODY, 401, NO_KEY, authorization=None),
    chat(
        "auth-no-bearer", OK_BODY, 401, BAD_KEY, authorization="rg-bare", message="'Bearer <key>'"
    ),
    chat("auth-basic", OK_BODY, 401, BAD_KEY, authorization="Basic dXNlcjpwYXNz"),
    chat("auth-empty-bearer", OK_BODY, 401, NO_KEY, authorization="Bearer"),
    chat("auth-non-ascii", OK_BODY, 401, BAD_KEY, authorization="Bearer rg-\xe9".encode("latin-1")),
    chat("auth-unknown-key", OK_BODY, 401, BAD_KEY, authorization="Bearer rg-unknown"),
    case(
        "auth-no-bearer-admin-api",
        "GET",
        "/admin/api/v1/keys",
        401,
        BAD_KEY,
        authorization="rg-bare",
    ),
    # Query strings: relaygate routes by the body, never by the query.
    case(
        "query-model-no-body",
        "POST",
        CHAT + "?model=gpt-test",
        400,
        "invalid_request",
        message="body is empty",
    ),
    case(
        "query-odd",
        "POST",
        CHAT + "?model=gpt-test&&=%zz&stream",
        404,
        "model_not_found",
        content=b'{"model": "nope"}',
    ),
]


@pytest.fixture(scope="module")
def corpus_upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def corpus_gateway(
    tmp_path_factory: pytest.TempPathFactory, corpus_upstream: Upstream
) -> Iterator[Gateway]:
    gateway = Gateway(tmp_path_factory.mktemp("corpus"), max_body_bytes=MAX_BODY).start()
    gateway.add_endpoint("up", corpus_upstream.url)
    yield gateway
    gateway.stop()


def send(gateway: Gateway, case: Case) -> httpx.Response:
    headers: Headers = []
    if case.content_type is not None:
        headers.append(("content-type", case.content_type))
    if case.authorization is ADMIN_KEY:
        headers.append(("authorization", f"Bearer {gateway.admin_key}"))
    elif isinstance(case.authorization, str | bytes):
        headers.append(("authorization", case.authorization))
    headers.extend(case.headers)
    content = case.content if isinstance(case.content, bytes) else iter(case.content)
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        return client.request(case.method, case.path, headers=headers, content=content)


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_request_is_refused(
    corpus_gateway: Gateway, corpus_upstream: Upstream, case: Case
) -> None:
    """The request gets its 4xx with an OpenAI-shaped error, and nothing is forwarded."""
    corpus_upstream.state.requests.clear()
    response = send(corpus_gateway, case)
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"] == JSON
    error = error_of(response)
    assert error["code"] == case.code
    assert error["type"] in ("invalid_request_error", "authentication_error")
    assert case.message in error["message"]
    if case.param is not None:
        assert error["param"] == case.param
    if case.allow is not None:
        assert response.headers["allow"] == case.allow
    assert corpus_upstream.state.requests == []


def test_corpus_is_large_enough() -> None:
    """The corpus holds at least 30 cases, each with its own id."""
    ids = [param.id for param in MALFORMED]
    assert len(ids) >= 30
    assert len(set(ids)) == len(ids)


def test_gateway_still_serves_after_the_corpus(
    corpus_gateway: Gateway, corpus_upstream: Upstream
) -> None:
    """After the whole corpus the server is up, answered no 5xx, and proxies a chat
    completion."""
    registry = corpus_gateway.app.metrics.registry
    assert not registry.get_sample_value("relaygate_proxy_requests_total", {"status": "5xx"})
    assert corpus_gateway.server.thread.is_alive()
    completion = corpus_gateway.openai().chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == "hello from upstream"
    assert corpus_upstream.state.requests[-1].json["model"] == "gpt-test"


def test_head_on_models_answers_like_get(corpus_gateway: Gateway) -> None:
    """HEAD /v1/models is a 200 without a body; HEAD on a body-routed path is a 405."""
    models = corpus_gateway.admin.head("/v1/models")
    assert models.status_code == 200
    assert models.content == b""
    chat_head = corpus_gateway.admin.head(CHAT)
    assert chat_head.status_code == 405
    assert chat_head.headers["allow"] == "POST"


def test_json_types_that_relaygate_accepts_are_forwarded(
    corpus_gateway: Gateway, corpus_upstream: Upstream
) -> None:
    """text/plain and */*+json bodies, a key repeated below the top level, a \\u escape in
    a value and a null stream are not malformed: they reach the upstream."""
    client = corpus_gateway.client_for(corpus_gateway.admin_key)
    nested_twice = b'{"model": "gpt-test", "messages": [{"role": "user", "content": "x"}],'
    nested_twice += b' "metadata": {"model": "a", "model": "b"}, "user": "\\u00e9"}'
    accepted = [
        ("POST", "text/plain; charset=utf-8", b'{"model": "gpt-test", "messages": []}'),
        ("POST", "application/vnd.example+json", b'{"model": "gpt-test", "messages": []}'),
        ("POST", "application/json", nested_twice),
        ("POST", "application/json", b'{"model": "gpt-test", "stream": null, "messages": []}'),
    ]
    for method, content_type, body in accepted:
        corpus_upstream.state.requests.clear()
        response = client.request(
            method, CHAT, content=body, headers={"content-type": content_type}
        )
        assert response.status_code == 200, (content_type, response.text)
        assert [seen.json["model"] for seen in corpus_upstream.state.requests] == ["gpt-test"]


def raw_exchange(url: str, request: bytes) -> bytes:
    """Send ``request`` as is and read what comes back until the server closes; b"" when it
    reset the connection first."""
    host, port = url.removeprefix("http://").split(":")
    answer = b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        try:
            sock.sendall(request)
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionError:
            pass
    return answer


@pytest.mark.parametrize(
    "request_line",
    [
        pytest.param(b"POST /v1/chat/completions?q=\xff HTTP/1.1", id="non-ascii-query"),
        pytest.param(b"POST /v1/chat/\xff HTTP/1.1", id="non-ascii-path"),
        pytest.param(
            b"POST /v1/chat/completions?" + b"q" * 1_000_000 + b" HTTP/1.1", id="url-of-1mb"
        ),
    ],
)
def test_unparseable_request_line_is_a_plain_400_from_uvicorn(
    corpus_gateway: Gateway, corpus_upstream: Upstream, request_line: bytes
) -> None:
    """A request the HTTP parser refuses never reaches relaygate: uvicorn answers a
    plain-text 400 (not OpenAI's shape), and nothing is forwarded."""
    corpus_upstream.state.requests.clear()
    body = b'{"model": "gpt-test"}'
    request = (
        request_line
        + f"\r\nhost: x\r\nauthorization: Bearer {corpus_gateway.admin_key}\r\n".encode()
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )
    answer = raw_exchange(corpus_gateway.url, request)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.endswith(b"Invalid HTTP request received.")
    assert corpus_upstream.state.requests == []


def test_h11_bounds_the_header_block_itself(tmp_path: Path, upstream: Upstream) -> None:
    """Under uvicorn's h11 parser with ``h11_max_incomplete_event_size`` (as ``relaygate
    serve`` sets it), a header block that arrives in pieces past the bound is refused by
    uvicorn (a plain 400, or a reset while the client still sends); one that arrives whole
    reaches relaygate's 431. Never a 5xx, never forwarded, and the server stays up."""
    gateway = Gateway(
        tmp_path, server_options={"http": "h11", "h11_max_incomplete_event_size": 64 * 1024}
    ).start()
    try:
        gateway.add_endpoint("up", upstream.url)
        head = f"POST {CHAT} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {gateway.admin_key}\r\n"
        body = b'{"model": "gpt-test"}'
        huge = (
            head.encode()
            + b"x-big: "
            + b"a" * 1_000_000
            + b"\r\ncontent-length: %d\r\n\r\n" % len(body)
            + body
        )
        answer = raw_exchange(gateway.url, huge)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400 ")
        over = head.encode() + b"x-big: " + b"a" * 40_000 + b"\r\nx-more: " + b"b" * 40_000
        answer = raw_exchange(
            gateway.url,
            over + b"\r\nconnection: close\r\ncontent-length: %d\r\n\r\n" % len(body) + body,
        )
        assert answer.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 431 "))
        assert upstream.state.requests == []
        client = gateway.openai()
        assert client.chat.completions.create(model="gpt-test", messages=[]).choices
    finally:
        gateway.stop()
