"""What a user key with one model grant can put in a request (paths, methods, headers,
body keys, references, charsets) and what odd answers an upstream can give: tried as
an attacker. Every upstream here records what it received, so "refused" means nothing
arrived there."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.proxy.test_bad_requests import error_of
from tests.proxy.test_trust_boundary import BODY, user_with_one_grant
from tests.support.gateway import Gateway
from tests.support.hostile import RecordingUpstream

JSON = {"content-type": "application/json"}


def send_raw(gateway: Gateway, key: str, method: str, path: str) -> httpx.Response:
    """``method path`` with :data:`BODY`, the path byte for byte as written (httpx would
    resolve its dot segments before sending)."""
    host, port = gateway.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(
            method,
            path,
            json.dumps(BODY).encode(),
            {"authorization": f"Bearer {key}", **JSON},
        )
        answer = connection.getresponse()
        return httpx.Response(answer.status, headers=answer.getheaders(), content=answer.read())
    finally:
        connection.close()


# (method, path as sent, status, error code); None for HEAD, whose answer has no body.
PATH_TRICKS: list[tuple[str, str, int, str | None]] = [
    ("POST", "/v1/files", 415, "unsupported_media_type"),  # relaygate's own: multipart
    ("POST", "/v1/chat/completions/", 404, "unsupported_route"),
    ("POST", "/v1/Chat/Completions", 404, "unsupported_route"),
    ("POST", "/v1//chat/completions", 404, "unsupported_route"),
    ("POST", "/v1/chat//completions", 404, "unsupported_route"),
    ("POST", "/v1/chat/completions;x", 404, "unsupported_route"),
    ("POST", "/v1/chat/completions%3Bx", 404, "unsupported_route"),
    ("POST", "/v1/chat/completions/..%2F..%2Ffiles", 400, "invalid_path"),
    ("POST", "/v1/chat/completions/%2e%2e/%2e%2e/files", 400, "invalid_path"),
    ("POST", "/v1/chat/completions%2F..%2F..%2Ffiles", 400, "invalid_path"),
    ("POST", "/v1/chat/completions%252F..%252Ffiles", 404, "unsupported_route"),
    ("POST", "/v1/chat/completions%3F/x", 404, "unsupported_route"),
    ("POST", "/v1/chat/completions%23", 404, "unsupported_route"),
    ("POST", "/v1/chat/completions%00", 404, "unsupported_route"),
    ("POST", "/v1/chat/completions%0d%0aX:%20y", 404, "unsupported_route"),
    ("HEAD", "/v1/chat/completions", 405, None),
    ("OPTIONS", "/v1/chat/completions", 405, "method_not_allowed"),
    ("PUT", "/v1/chat/completions", 405, "method_not_allowed"),
    ("DELETE", "/v1/chat/completions", 405, "method_not_allowed"),
    ("GET", "/v1/chat/completions", 405, "method_not_allowed"),
    ("PATCH", "/v1/chat/completions", 405, "method_not_allowed"),
    ("POST", "/v1/models/gpt-test", 405, "method_not_allowed"),
    ("POST", "/v1/responses/resp_1", 404, "unsupported_route"),
    ("GET", "/v1/models/..%2Ffiles", 404, "model_not_found"),
    ("POST", "/v1/%2e/chat/completions", 400, "invalid_path"),
    ("POST", "/v1/./chat/completions", 400, "invalid_path"),
    ("POST", "/v1/chat/./completions", 400, "invalid_path"),
    ("POST", "/v1/chat/completions/.", 400, "invalid_path"),
    ("POST", "/v1/chat\\completions", 404, "unsupported_route"),
    ("POST", "/v1/chat%5Ccompletions/..%5Cfiles", 404, "unsupported_route"),
]


def test_path_and_method_variants_of_a_route_are_refused(
    gateway: Gateway, recorder: RecordingUpstream
) -> None:
    """A route is forwarded only as written: other cases, doubled or trailing slashes,
    parameters, escaped separators, dot segments (plain or escaped), backslashes and other
    methods are refused with an OpenAI-shaped error, and nothing reaches the upstream."""
    endpoint = gateway.add_endpoint("up", recorder.url)
    key = user_with_one_grant(gateway, endpoint["id"], "gpt-test")
    wrong = []
    for method, path, status, code in PATH_TRICKS:
        response = send_raw(gateway, key, method, path)
        got = error_of(response)["code"] if response.content else None
        if (response.status_code, got) != (status, code):
            wrong.append(f"{method} {path}: {response.status_code} {got}, not {status} {code}")
    assert not wrong, "\n".join(wrong)
    assert recorder.state.requests == []
    assert send_raw(gateway, key, "POST", "/v1/chat/completions").status_code == 200
    assert [(s.method, s.path) for s in recorder.state.requests] == [
        ("POST", "/v1/chat/completions")
    ]


@pytest.mark.parametrize(
    "sent",
    ["/v1/v2/files%3F/infer", "/v1/v2/files%23/infer", "/v1/v2/..%3F/infer", "/v1/v2/..%23/infer"],
)
def test_star_segment_matches_only_a_plain_segment(
    gateway: Gateway, recorder: RecordingUpstream, sent: str
) -> None:
    """A '*' in an extra route ('POST /v2/*/infer') matches one segment of unreserved
    characters only: a segment holding an escaped '?' or '#' is refused (404
    unsupported_route) and never cuts the forwarded path short."""
    endpoint = gateway.add_endpoint("custom", recorder.url, extra_routes=["POST /v2/*/infer"])
    key = user_with_one_grant(gateway, endpoint["id"], "gpt-test")
    response = gateway.client_for(key).post(sent, json=BODY)
    assert response.status_code == 404
    assert error_of(response)["code"] == "unsupported_route"
    assert recorder.state.requests == []


def test_request_headers_pass_by_allow_list(gateway: Gateway, recorder: RecordingUpstream) -> None:
    """Method overrides, organisation or project selectors, beta flags reaching account
    resources, another provider's key and forwarding headers never reach the upstream on
    the operator's key, nor do query parameters other than api-version."""
    endpoint = gateway.add_endpoint("up", recorder.url, api_key="sk-operator")
    key = user_with_one_grant(gateway, endpoint["id"], "gpt-test")
    sent = {
        "x-http-method-override": "DELETE",
        "x-method-override": "DELETE",
        "x-http-method": "DELETE",
        "openai_organization": "org-other",
        "openai-beta": "assistants=v2",
        "anthropic-beta": "files-api-2025-04-14",
        "x-goog-user-project": "other-project",
        "x-goog-api-key": "AIza-users",
        "x-forwarded-for": "127.0.0.1",
        "x-forwarded-host": "internal",
        "forwarded": "for=127.0.0.1",
        "x-real-ip": "127.0.0.1",
        "content-encoding": "identity",
        "api-key": "users-own",
    }
    response = gateway.client_for(key).post(
        "/v1/chat/completions?api-version=x&key=y", json=BODY, headers=sent
    )
    assert response.status_code == 200, response.text
    (seen,) = recorder.state.requests
    assert seen.query == "api-version=x"
    assert {name for name in sent if name in seen.headers} == set()
    assert seen.headers["authorization"] == "Bearer sk-operator"


class CharsetUpstream:
    """An aiohttp upstream serving ``gpt-test`` and ``secret-model`` that reads chat
    bodies with ``request.json()`` (which decodes by the declared charset) and records
    the model each named and the Content-Type it came with."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, str]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._port = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("aiohttp upstream did not start")
        self.url = f"http://127.0.0.1:{self._port}/v1"

    async def _models(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": "gpt-test"}, {"id": "secret-model"}]}
        )

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.seen.append((body.get("model"), request.headers.get("content-type", "")))
        return web.json_response(
            {"id": "x", "object": "chat.completion", "model": body["model"], "choices": []}
        )

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._port = runner.addresses[0][1]
        self._ready.set()
        await self._stopping.wait()
        await runner.cleanup()

    def stop(self) -> None:
        if self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)


@pytest.fixture
def charset_upstream() -> Iterator[CharsetUpstream]:
    server = CharsetUpstream()
    yield server
    server.stop()


def test_declared_charset_never_reaches_the_upstream(
    gateway: Gateway, charset_upstream: CharsetUpstream
) -> None:
    """A body is forwarded as plain application/json whatever charset the client
    declared, so an upstream decoding by charset (UTF-7 here) reads the model relaygate
    checked, never a second 'model' hidden in the encoding."""
    endpoint = gateway.add_endpoint("aio", charset_upstream.url)
    key = user_with_one_grant(gateway, endpoint["id"], "gpt-test")
    # In UTF-7, the value of "x" decodes to: ","model":"secret-model","y":"
    body = (
        b'{"model":"gpt-test","x":"+ACIALAAiAG0AbwBkAGUAbAAiADoAIgBzAGUAYwByAGUAdAAtAG0AbwBk'
        b'AGUAbAAiACwAIgB5ACIAOgAi-"}'
    )
    response = gateway.client_for(key).post(
        "/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json; charset=utf-7"},
    )
    assert response.status_code == 200, response.text
    assert charset_upstream.seen == [("gpt-test", "application/json")]


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"model": "gpt-test", "Model": "secret-model", "messages": []}', "Model"),
        (b'{"model": "gpt-test", "MODEL": "secret-model", "messages": []}', "MODEL"),
        (b'{"model": "gpt-test", "messages": [], "Stream": true}', "Stream"),
    ],
    ids=["Model", "MODEL", "Stream"],
)
def test_case_variant_of_a_control_key_is_refused(
    gateway: Gateway, recorder: RecordingUpstream, body: bytes, key: str
) -> None:
    """A body with a key that matches 'model' or 'stream' without regard to case (as Go's
    encoding/json reads them) is refused with 400 naming that key, so no upstream acts on
    a model or stream relaygate did not check."""
    recorder.state.models = ["gpt-test", "secret-model"]
    endpoint = gateway.add_endpoint("up", recorder.url)
    user_key = user_with_one_grant(gateway, endpoint["id"], "gpt-test")
    response = gateway.client_for(user_key).post("/v1/chat/completions", content=body, headers=JSON)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == ("invalid_request", key)
    assert recorder.state.requests == []


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (
            "/v1/responses",
            {
                "model": "gpt-test",
                "input": "x",
                "tools": [{"type": "file_search", "vector_store_ids": ["vs_org"]}],
            },
            "tools",
        ),
        ("/v1/responses", {"model": "gpt-test", "prompt": {"id": "pmpt_org"}}, "prompt.id"),
        (
            "/v1/responses",
            {"model": "gpt-test", "input": [{"type": "item_reference", "id": "msg_org"}]},
            "input",
        ),
        (
            "/v1/chat/completions",
            {
                "model": "gpt-test",
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "file", "file": {"file_id": "file-other"}}],
                    }
                ],
            },
            "messages",
        ),
        (
            "/v1/chat/completions",
            {"model": "gpt-test", "messages": [], "container": "container_of_another_user"},
            "container",
        ),
    ],
    ids=["vector_store", "stored_prompt", "item_reference", "file_id", "container"],
)
def test_body_reference_to_an_account_resource_is_refused(
    gateway: Gateway, recorder: RecordingUpstream, path: str, body: dict[str, Any], param: str
) -> None:
    """An inference body that names a resource stored on the provider account by id (a
    stored response, a vector store, a stored prompt, a file) is refused with 400
    unsupported_reference naming the field, and never reaches the upstream."""
    endpoint = gateway.add_endpoint("up", recorder.url)
    key = user_with_one_grant(gateway, endpoint["id"], "gpt-test")
    response = gateway.client_for(key).post(path, json=body)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == ("unsupported_reference", param)
    assert recorder.state.requests == []


def test_previous_response_id_names_only_the_callers_stored_responses(
    gateway: Gateway, recorder: RecordingUpstream
) -> None:
    """A Responses request continuing a response by id is answered from relaygate's own
    store of the caller's responses: an id that is not one of them (the provider
    account's, another user's) is refused 400 previous_response_not_found, and nothing
    reaches the upstream."""
    endpoint = gateway.add_endpoint("up", recorder.url)
    key = user_with_one_grant(gateway, endpoint["id"], "gpt-test")
    body = {"model": "gpt-test", "input": "go on", "previous_response_id": "resp_other"}
    response = gateway.client_for(key).post("/v1/responses", json=body)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == (
        "previous_response_not_found",
        "previous_response_id",
    )
    assert recorder.state.requests == []


@pytest.mark.parametrize(
    "options",
    [
        b'{"include_usage": false, "include_usage": true}',
        b'{"include_usage": true, "\\u017fnclude_usage": false}',
    ],
    ids=["repeated", "long-s-elsewhere"],
)
def test_stream_options_go_out_as_relaygate_read_them(
    gateway: Gateway, recorder: RecordingUpstream, options: bytes
) -> None:
    """A stream's body is sent re-serialised as relaygate read it: 'include_usage'
    appears once, true, so no upstream parser keeping another copy streams without the
    usage relaygate counts."""
    gateway.add_endpoint("up", recorder.url)
    key = gateway.create_key(user_id=gateway.create_user("u")["id"], tokens_per_minute=10)["key"]
    body = b'{"model": "gpt-test", "messages": [], "stream": true, "stream_options": ' + options
    response = gateway.client_for(key).post(
        "/v1/chat/completions", content=body + b"}", headers=JSON
    )
    assert response.status_code == 200, response.text
    (seen,) = recorder.state.requests
    assert seen.body.count(b'"include_usage"') == 1
    assert json.loads(seen.body)["stream_options"]["include_usage"] is True


@pytest.mark.parametrize(
    "options",
    [
        b'{"include_usage": true, "Include_Usage": false}',
        b'{"include_usage": true, "include_u\\u017fage": false}',
    ],
    ids=["case", "long-s"],
)
def test_case_variant_of_include_usage_is_refused(
    gateway: Gateway, recorder: RecordingUpstream, options: bytes
) -> None:
    """A 'stream_options' key that folds to 'include_usage' (another case, or the long s
    that Go folds to 's') is refused with 400 on stream_options, and never reaches the
    upstream."""
    gateway.add_endpoint("up", recorder.url)
    key = gateway.create_key(user_id=gateway.create_user("u")["id"], tokens_per_minute=10)["key"]
    body = b'{"model": "gpt-test", "messages": [], "stream": true, "stream_options": ' + options
    response = gateway.client_for(key).post(
        "/v1/chat/completions", content=body + b"}", headers=JSON
    )
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == ("invalid_request", "stream_options")
    assert recorder.state.requests == []


def test_own_mark_in_any_form_of_via_is_a_loop(
    gateway: Gateway, recorder: RecordingUpstream
) -> None:
    """relaygate's own mark anywhere in x-relaygate-via, in any case and with spaces
    around it, is a loop (508 loop_detected, nothing forwarded); a mark it is merely part
    of is not."""
    gateway.add_endpoint("up", recorder.url)
    client = gateway.client_for(gateway.admin_key)
    assert client.post("/v1/chat/completions", json=BODY).status_code == 200
    mark = recorder.state.requests[0].headers["x-relaygate-via"]
    for value in (mark, f"x,{mark}", f"x, {mark}", f"{mark} ,x", mark.upper()):
        response = client.post(
            "/v1/chat/completions", json=BODY, headers={"x-relaygate-via": value}
        )
        assert response.status_code == 508, value
        assert error_of(response)["code"] == "loop_detected"
    assert len(recorder.state.requests) == 1
    other = client.post("/v1/chat/completions", json=BODY, headers={"x-relaygate-via": mark + ";q"})
    assert other.status_code == 200
    assert len(recorder.state.requests) == 2


class RawUpstream:
    """A socket server listing ``gpt-test`` and answering every other request with the
    bytes ``raw``, until :meth:`stop`."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self._stopping = threading.Event()
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(10)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(rest) < length:
            rest += conn.recv(65536)
        if head.startswith(b"GET /v1/models"):
            body = b'{"object":"list","data":[{"id":"gpt-test","object":"model"}]}'
            conn.sendall(response(200, "application/json", body))
        else:
            conn.sendall(self.raw)


def response(status: int, content_type: str, body: bytes, *extra: bytes) -> bytes:
    """An HTTP/1.1 answer closing the connection, ``extra`` header lines included."""
    head = [
        b"HTTP/1.1 %d X" % status,
        b"content-type: " + content_type.encode(),
        b"content-length: %d" % len(body),
        b"connection: close",
        *extra,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


CHAT = (
    b'{"id":"x","object":"chat.completion","choices":[],'
    b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
)


def answered(gateway: Gateway, raw: bytes) -> httpx.Response:
    """What a client gets for a chat completion from an endpoint answering ``raw``."""
    upstream = RawUpstream(raw)
    try:
        gateway.add_endpoint("raw", upstream.url)
        return gateway.client_for(gateway.admin_key).post("/v1/chat/completions", json=BODY)
    finally:
        upstream.stop()


@pytest.mark.parametrize(
    "interim",
    [b"HTTP/1.1 103 Early Hints\r\nlink: </evil>; rel=preload\r\n\r\n", b"HTTP/1.1 100 X\r\n\r\n"],
    ids=["103", "100"],
)
def test_interim_answers_are_skipped(gateway: Gateway, interim: bytes) -> None:
    """An informational (1xx) answer before the final one is skipped: the client gets the
    final answer, and none of the interim answer's headers."""
    got = answered(gateway, interim + response(200, "application/json", CHAT))
    assert got.status_code == 200
    assert got.content == CHAT
    assert "link" not in got.headers


def test_upstream_answers_are_never_sniffed(gateway: Gateway) -> None:
    """Every upstream answer reaches the client with X-Content-Type-Options: nosniff, an
    HTML one included."""
    page = b"<script>alert(document.domain)</"
    got = answered(gateway, response(200, "text/html", page, b"content-disposition: inline"))
    assert got.status_code == 200
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.content == page


def test_unusual_success_status_is_passed_on(gateway: Gateway) -> None:
    """A 2xx status other than 200 (here 299) reaches the client as the upstream sent it."""
    got = answered(gateway, response(299, "application/json", b"{}"))
    assert got.status_code == 299
    assert got.content == b"{}"


def test_status_outside_http_is_an_upstream_error(gateway: Gateway) -> None:
    """An upstream status outside 100-599 (here 600) is answered 502 upstream_error saying
    the status is not valid."""
    got = answered(gateway, response(600, "application/json", b"{}"))
    assert got.status_code == 502
    error = error_of(got)
    assert error["code"] == "upstream_error"
    assert "600" in error["message"]


def test_a_tool_with_a_file_id_parameter_is_not_a_reference(
    gateway: Gateway, recorder: RecordingUpstream
) -> None:
    """A function tool whose JSON schema has a "file_id" property, or a message that
    mentions file_id in its text, refers to nothing stored: it is forwarded."""
    gateway.add_endpoint("up", recorder.url)
    tool = {
        "type": "function",
        "function": {
            "name": "open",
            "parameters": {"type": "object", "properties": {"file_id": {"type": "string"}}},
        },
    }
    body = {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": 'what is a "file_id"?'}],
        "tools": [tool],
    }
    response = gateway.client_for(gateway.admin_key).post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert len(recorder.state.requests) == 1
