"""Multipart uploads (audio transcriptions and translations, image edits and variations):
routed by their ``model`` form field like a JSON body, sent upstream as the bytes that
came with only the model's value replaced, and refused with 400 where a form is not one
every parser reads alike. The upstream reads each form with aiohttp's parser, not
relaygate's, and checks each file's SHA-256."""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest
from sqlalchemy import select

from relaygate.db.tables import UsageRecord
from relaygate.providers.openai import INFERENCE_ROUTES
from relaygate.proxy.multipart import FORM_PATHS, MAX_PARTS, PIECE, read_form
from tests.budgets.support import PRICE, price_models, recorded_cost, set_budget, settled
from tests.proxy.test_bad_requests import error_of
from tests.proxy.test_trust_boundary import user_with_one_grant
from tests.support.forms import IMAGE_USAGE, FormUpstream
from tests.support.gateway import Clock, Gateway

MAX_BODY = 2 * 1024 * 1024
AUDIO = random.Random(1).randbytes(300_000)
IMAGE = random.Random(2).randbytes(200_000)
TRANSCRIPTIONS = "/v1/audio/transcriptions"
FORM_TYPE = "multipart/form-data; boundary=b"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def part(name: str, value: bytes, *, filename: str | None = None, headers: bytes = b"") -> bytes:
    """One part of a hand-made form: its Content-Disposition, ``headers`` (each ending
    in CRLF), a blank line and ``value``."""
    disposition = f'Content-Disposition: form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    return disposition.encode() + b"\r\n" + headers + b"\r\n" + value


def form(*parts: bytes, boundary: bytes = b"b") -> bytes:
    """A form of ``parts`` split on ``boundary``, with its closing boundary."""
    opened = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    return opened + b"--" + boundary + b"--\r\n"


def records(gateway: Gateway, count: int, timeout: float = 10.0) -> list[UsageRecord]:
    """The usage records once at least ``count`` are written (oldest first)."""

    async def read() -> list[UsageRecord]:
        async with gateway.ctx.sessions() as session:
            return list((await session.scalars(select(UsageRecord).order_by(UsageRecord.id))).all())

    deadline = time.monotonic() + timeout
    while True:
        found = gateway.on_loop(read)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.fixture
def forms() -> Iterator[FormUpstream]:
    server = FormUpstream()
    yield server
    server.stop()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    running = Gateway(tmp_path, usage_flush_interval=0.05, max_body_bytes=MAX_BODY).start()
    yield running
    running.stop()


def set_alias(gateway: Gateway, upstream_id: str, alias: str) -> None:
    models = gateway.admin.get("/admin/api/v1/models").json()
    model = next(m for m in models if m["upstream_id"] == upstream_id)
    response = gateway.admin.patch(f"/admin/api/v1/models/{model['id']}", json={"alias": alias})
    assert response.status_code == 200, response.text


@pytest.fixture
def served(gateway: Gateway, forms: FormUpstream) -> Gateway:
    """relaygate with the form upstream as endpoint ``forms``, granted to no group (admin
    keys use every model); its ``whisper-up`` is named ``transcriber``."""
    gateway.add_endpoint("forms", forms.url, groups=[])
    set_alias(gateway, "whisper-up", "transcriber")
    return gateway


def test_a_transcription_reaches_the_upstream_byte_for_byte(
    served: Gateway, forms: FormUpstream
) -> None:
    """A transcription sent with the openai SDK reaches the upstream with its file byte for
    byte, the SDK's Content-Type and boundary, a Content-Length, and ``model`` rewritten to
    the upstream id; the text and usage reach the client, and the usage record has the
    tokens."""
    raw = served.openai().audio.transcriptions.with_raw_response.create(
        model="transcriber", file=("x.wav", AUDIO)
    )
    reply = raw.parse()
    assert reply.text == "hello world"
    assert reply.usage is not None and reply.usage.type == "tokens"
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (21, 8)
    [upload] = forms.state.uploads
    assert upload.fields["model"] == ["whisper-up"]
    assert upload.files == {"file": [("x.wav", sha256(AUDIO), len(AUDIO))]}
    assert upload.content_type == raw.http_response.request.headers["content-type"]
    # The body as the SDK sent it, but for the model's value.
    field = b'name="model"\r\n\r\n'
    sent = raw.http_response.request.read()
    expected = sent.replace(field + b"transcriber\r\n", field + b"whisper-up\r\n", 1)
    assert expected != sent
    assert (upload.body_sha256, upload.content_length) == (sha256(expected), len(expected))
    assert not upload.chunked
    [record] = records(served, 1)
    assert (record.model, record.upstream_model, record.path) == (
        "transcriber",
        "whisper-up",
        TRANSCRIPTIONS,
    )
    assert (record.status, record.stream) == (200, False)
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (21, 8, 29)
    assert record.audio_seconds is None


def test_a_duration_usage_is_recorded_as_audio_seconds(
    served: Gateway, forms: FormUpstream
) -> None:
    """A transcription billed by duration (``usage.type`` ``duration``) has its seconds in
    the usage record's ``audio_seconds`` and in the admin usage report, and no tokens."""
    forms.state.usage = {"type": "duration", "seconds": 12.5}
    reply = served.openai().audio.transcriptions.create(model="transcriber", file=("x.wav", AUDIO))
    assert reply.usage is not None and reply.usage.type == "duration"
    [record] = records(served, 1)
    assert record.audio_seconds == 12.5
    assert (record.prompt_tokens, record.completion_tokens) == (None, None)
    report = served.admin.get("/admin/api/v1/usage", params={"group_by": "model"}).json()
    assert [(r["group"], r["audio_seconds"]) for r in report["rows"]] == [("transcriber", 12.5)]
    assert report["total"]["audio_seconds"] == 12.5


def test_a_streamed_transcription_passes_its_events_as_they_arrive(
    served: Gateway, forms: FormUpstream
) -> None:
    """With ``stream=True`` the delta events reach the SDK one by one while the upstream
    still holds the rest, then the done event; its usage is recorded, the record marked
    a stream."""
    hold = threading.Event()
    forms.state.hold_stream = hold
    stream = served.openai().audio.transcriptions.create(
        model="transcriber", file=("x.wav", AUDIO), stream=True
    )
    events = iter(stream)
    first = next(events)
    assert (first.type, getattr(first, "delta", None)) == ("transcript.text.delta", "hello")
    hold.set()
    rest = list(events)
    assert [event.type for event in rest] == ["transcript.text.delta", "transcript.text.done"]
    done = rest[-1]
    assert done.type == "transcript.text.done"
    assert done.text == "hello world"
    assert done.usage is not None and done.usage.total_tokens == 29
    assert forms.state.uploads[0].fields["stream"] == ["true"]
    [record] = records(served, 1)
    assert record.stream is True
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (21, 8, 29)


def test_an_image_edit_reaches_the_upstream_and_its_tokens_are_recorded(
    served: Gateway, forms: FormUpstream
) -> None:
    """An image edit sent with the openai SDK reaches the upstream with its image byte for
    byte and its prompt; the tokens of its answer's usage are recorded."""
    reply = served.openai().images.edit(model="image-up", image=("x.png", IMAGE), prompt="a hat")
    assert reply.usage is not None and reply.usage.total_tokens == IMAGE_USAGE["total_tokens"]
    [upload] = forms.state.uploads
    assert upload.path == "/v1/images/edits"
    assert upload.fields["model"] == ["image-up"] and upload.fields["prompt"] == ["a hat"]
    assert list(upload.files.values()) == [[("x.png", sha256(IMAGE), len(IMAGE))]]
    [record] = records(served, 1)
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (50, 60, 110)


def test_translations_and_variations_are_forwarded(served: Gateway, forms: FormUpstream) -> None:
    """An audio translation and an image variation (sent by httpx: the SDK deprecates
    both) go to their own routes upstream, files intact and ``model`` rewritten."""
    client = served.client_for(served.admin_key)
    translated = client.post(
        "/v1/audio/translations", files={"file": ("x.wav", AUDIO)}, data={"model": "transcriber"}
    )
    assert translated.json() == {"text": "hello world"}
    varied = client.post(
        "/v1/images/variations", files={"image": ("x.png", IMAGE)}, data={"model": "image-up"}
    )
    assert varied.json()["data"][0]["b64_json"] == "aGVsbG8="
    translation, variation = forms.state.uploads
    assert (translation.path, translation.fields["model"]) == (
        "/v1/audio/translations",
        ["whisper-up"],
    )
    assert translation.files["file"] == [("x.wav", sha256(AUDIO), len(AUDIO))]
    assert (variation.path, variation.fields["model"]) == ("/v1/images/variations", ["image-up"])
    assert variation.files["image"] == [("x.png", sha256(IMAGE), len(IMAGE))]
    assert [r.path for r in records(served, 2)] == [
        "/v1/audio/translations",
        "/v1/images/variations",
    ]


def test_failover_replays_the_same_bytes(
    gateway: Gateway, forms: FormUpstream, tmp_path: Path
) -> None:
    """A form whose first target answers 503 is sent again to the next one, the same
    bytes: both upstreams receive bodies of one SHA-256, the file intact."""
    second = FormUpstream()
    try:
        gateway.add_endpoint("first", forms.url, pool="forms")
        gateway.add_endpoint("second", second.url, pool="forms")
        forms.state.fail_status = 503
        client = gateway.openai()
        # Round-robin: within two requests the failing endpoint is tried first once.
        while not forms.state.uploads:
            raw = client.audio.transcriptions.with_raw_response.create(
                model="whisper-up", file=("x.wav", AUDIO)
            )
            assert raw.headers["x-relaygate-endpoint"] == "second"
            assert len(second.state.uploads) <= 2
        seen = {
            (u.body_sha256, u.fields["model"][0], u.files["file"][0])
            for u in forms.state.uploads + second.state.uploads
        }
        [(_, model, file)] = seen
        assert (model, file) == ("whisper-up", ("x.wav", sha256(AUDIO), len(AUDIO)))
    finally:
        second.stop()


def test_a_form_fits_a_budget_by_its_text_not_its_file(tmp_path: Path, forms: FormUpstream) -> None:
    """A budget reserves a form by its text fields (its files are no prompt tokens): a
    200 KB image edit fits a budget that its bytes counted as tokens would pass, and is
    settled to the cost of the tokens its answer reported."""
    gateway = Gateway(tmp_path, clock=Clock(), usage_flush_interval=0.05).start()
    try:
        gateway.add_endpoint("forms", forms.url)
        price_models(gateway)
        key = gateway.create_key(name="budgeted")
        # 200 KB at 3 bytes a token would cost some 67 at this price: the budget is 10.
        set_budget(gateway, "key", key["id"], 10.0)
        reply = gateway.openai(key["key"]).images.edit(
            model="image-up", image=("x.png", IMAGE), prompt="a hat"
        )
        assert reply.usage is not None
        assert recorded_cost(gateway, 1) == pytest.approx(110 * PRICE / 1e6)
        assert settled(gateway, "key", key["id"]).spent == pytest.approx(110 * PRICE / 1e6)
    finally:
        gateway.stop()


# From an attacker's side: a key granted whisper-up only.


@pytest.fixture
def attacker(served: Gateway) -> httpx.Client:
    """A client with a user key whose one grant is ``whisper-up`` (``transcriber``)."""
    endpoint = served.endpoint("forms")
    return served.client_for(user_with_one_grant(served, endpoint["id"], "whisper-up"))


class Corpus:
    """One relaygate for the refusal cases (none of them changes it): the form upstream
    as in ``served``, and a ``client`` with a user key whose one grant is
    ``whisper-up``."""

    def __init__(self, directory: Path) -> None:
        self.forms = FormUpstream()
        self.gateway = Gateway(directory, max_body_bytes=MAX_BODY).start()
        endpoint = self.gateway.add_endpoint("forms", self.forms.url, groups=[])
        set_alias(self.gateway, "whisper-up", "transcriber")
        key = user_with_one_grant(self.gateway, endpoint["id"], "whisper-up")
        self.client = self.gateway.client_for(key)

    def post(self, path: str, body: bytes, content_type: str) -> httpx.Response:
        """Send ``body`` to ``path``; asserts that nothing of it reached the upstream."""
        before = len(self.forms.state.uploads)
        response = self.client.post(path, content=body, headers={"content-type": content_type})
        assert len(self.forms.state.uploads) == before
        return response

    def stop(self) -> None:
        try:
            self.gateway.stop()
        finally:
            self.forms.stop()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    running = Corpus(tmp_path_factory.mktemp("forms"))
    yield running
    running.stop()


def test_a_form_reaches_only_the_models_its_key_was_granted(
    attacker: httpx.Client, forms: FormUpstream
) -> None:
    """Through a form, a key reaches its own model, is refused 403 ``model_not_allowed``
    for another model of the same endpoint and 404 for an unknown one; nothing of the
    refused requests reaches the upstream."""
    files = {"file": ("x.wav", AUDIO)}
    allowed = attacker.post(TRANSCRIPTIONS, files=files, data={"model": "transcriber"})
    assert allowed.status_code == 200, allowed.text
    denied = attacker.post(TRANSCRIPTIONS, files=files, data={"model": "secret-model"})
    assert (denied.status_code, error_of(denied)["code"]) == (403, "model_not_allowed")
    unknown = attacker.post(TRANSCRIPTIONS, files=files, data={"model": "no-such-model"})
    assert (unknown.status_code, error_of(unknown)["code"]) == (404, "model_not_found")
    assert [u.fields["model"] for u in forms.state.uploads] == [["whisper-up"]]


MODEL = part("model", b"transcriber")
FILE = part("file", b"RIFF....", filename="x.wav")
SECRET = part("model", b"secret-model")

# (id, body, the Content-Type sent, a part of the message, the error's param)
SMUGGLED: list[tuple[str, bytes, str, str, str | None]] = [
    ("model-twice", form(MODEL, FILE, SECRET), FORM_TYPE, "'model' more than once", "model"),
    (
        "model-in-another-case",
        form(MODEL, part("Model", b"secret-model")),
        FORM_TYPE,
        "'Model'",
        "model",
    ),
    (
        "part-after-the-closing-boundary",
        form(MODEL, FILE) + b"--b\r\n" + SECRET + b"\r\n--b--\r\n",
        FORM_TYPE,
        "closing boundary",
        None,
    ),
    (
        "boundary-inside-a-file",
        form(MODEL, part("file", b"a\r\n--bc\r\n" + SECRET, filename="x.wav")),
        FORM_TYPE,
        "boundary appears inside a part",
        None,
    ),
    (
        "lf-only-lines",
        form(MODEL, FILE).replace(b"\r\n", b"\n"),
        FORM_TYPE,
        "must begin with",
        None,
    ),
    (
        "header-split-by-a-bare-lf",
        form(
            MODEL,
            part(
                "x",
                b"secret-model",
                headers=b'X-A: 1\nContent-Disposition: form-data; name="model"\r\n',
            ),
        ),
        FORM_TYPE,
        "control character",
        None,
    ),
    (
        "rfc-2231-name",
        form(
            MODEL, b"Content-Disposition: form-data; name=x; name*=utf-8''model\r\n\r\nsecret-model"
        ),
        FORM_TYPE,
        "not plain",
        None,
    ),
    (
        "semicolon-in-a-quoted-name",
        form(MODEL, b'Content-Disposition: form-data; name="x;name=model"\r\n\r\nsecret-model'),
        FORM_TYPE,
        "not plain",
        None,
    ),
    (
        "escaped-quote-in-a-name",
        form(b'Content-Disposition: form-data; name="mo\\"del"\r\n\r\nsecret-model', MODEL),
        FORM_TYPE,
        "not plain",
        None,
    ),
    (
        "boundary-twice-in-the-content-type",
        form(MODEL, FILE, boundary=b"b"),
        "multipart/form-data; boundary=b; boundary=c",
        "not plain",
        None,
    ),
    (
        "model-in-base64",
        form(part("model", b"c2VjcmV0LW1vZGVs", headers=b"Content-Transfer-Encoding: base64\r\n")),
        FORM_TYPE,
        "Content-Transfer-Encoding",
        "model",
    ),
]


@pytest.mark.parametrize(
    ("body", "content_type", "message", "param"),
    [case[1:] for case in SMUGGLED],
    ids=[case[0] for case in SMUGGLED],
)
def test_a_second_model_cannot_be_smuggled_past_the_check(
    corpus: Corpus, body: bytes, content_type: str, message: str, param: str | None
) -> None:
    """A form that could read as naming another model to some parser (a second model
    part, hidden after the end, inside a file, behind line ends or parameters read
    otherwise, or encoded) is refused with 400 naming the problem, and nothing reaches
    the upstream."""
    response = corpus.post(TRANSCRIPTIONS, body, content_type)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert message in error["message"]
    assert error["param"] == param


# (id, body, the Content-Type sent, a part of the message, the error's code, its param)
REFUSED: list[tuple[str, bytes, str, str, str, str | None]] = [
    ("no-model", form(FILE), FORM_TYPE, "no 'model' field", "missing_model", "model"),
    (
        "empty-model",
        form(part("model", b""), FILE),
        FORM_TYPE,
        "non-empty",
        "invalid_request",
        "model",
    ),
    (
        "model-as-a-file",
        form(part("model", b"transcriber", filename="m.txt"), FILE),
        FORM_TYPE,
        "'model' is a file",
        "invalid_request",
        "model",
    ),
    (
        "model-not-utf8",
        form(part("model", b"\xff\xfe"), FILE),
        FORM_TYPE,
        "not UTF-8",
        "invalid_request",
        "model",
    ),
    (
        "stream-not-a-boolean",
        form(MODEL, part("stream", b"yes"), FILE),
        FORM_TYPE,
        "'stream' must be true or false",
        "invalid_request",
        "stream",
    ),
    (
        "no-boundary",
        form(MODEL),
        "multipart/form-data",
        "needs a boundary",
        "invalid_request",
        None,
    ),
    (
        "boundary-too-long",
        form(MODEL, boundary=b"x" * 71),
        "multipart/form-data; boundary=" + "x" * 71,
        "1 to 70 characters",
        "invalid_request",
        None,
    ),
    (
        "json-body",
        b'{"model": "transcriber"}',
        FORM_TYPE,
        "must begin with",
        "invalid_request",
        None,
    ),
    (
        "no-closing-boundary",
        b"--b\r\n" + MODEL + b"\r\n",
        FORM_TYPE,
        "closing boundary",
        "invalid_request",
        None,
    ),
    (
        "bytes-after-the-closing-boundary",
        form(MODEL, FILE) + b"trailing",
        FORM_TYPE,
        "bytes after the closing boundary",
        "invalid_request",
        None,
    ),
    (
        "header-without-a-colon",
        form(b"Content-Disposition form-data\r\n\r\nx", MODEL),
        FORM_TYPE,
        "not valid multipart/form-data",
        "invalid_request",
        None,
    ),
    (
        "part-without-a-disposition",
        form(b"Content-Type: text/plain\r\n\r\nx", MODEL),
        FORM_TYPE,
        "exactly one Content-Disposition",
        "invalid_request",
        None,
    ),
    (
        "header-line-too-long",
        form(part("x", b"y", headers=b"X-Long: " + b"a" * 5000 + b"\r\n"), MODEL),
        FORM_TYPE,
        "header size",
        "invalid_request",
        None,
    ),
    (
        "near-boundaries-in-a-file",
        form(MODEL, part("file", b"\r\n--bZ" * 300_000, filename="x.wav")),
        FORM_TYPE,
        f"its boundary appears more than {MAX_PARTS} times",
        "invalid_request",
        None,
    ),
    (
        "too-many-parts",
        form(MODEL, *(part(f"f{i}", b"x") for i in range(MAX_PARTS))),
        FORM_TYPE,
        f"more than {MAX_PARTS} parts",
        "invalid_request",
        None,
    ),
]


@pytest.mark.parametrize(
    ("body", "content_type", "message", "code", "param"),
    [case[1:] for case in REFUSED],
    ids=[case[0] for case in REFUSED],
)
def test_a_form_relaygate_cannot_read_is_a_400_naming_the_problem(
    corpus: Corpus, body: bytes, content_type: str, message: str, code: str, param: str | None
) -> None:
    """A form without a usable ``model`` (missing, empty, a file, not UTF-8), with a bad
    ``stream``, or that is not valid multipart (no or a bad boundary, no closing
    boundary, bytes after it, a malformed part, too long a header, too many parts or
    boundaries) is refused with 400 naming the problem; nothing reaches the upstream."""
    response = corpus.post(TRANSCRIPTIONS, body, content_type)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert message in error["message"]
    assert (error["code"], error["param"]) == (code, param)


def test_a_form_over_the_body_limit_is_refused_before_it_is_read(corpus: Corpus) -> None:
    """A form whose Content-Length passes max_body_bytes is answered 413 while the client
    has sent none of its body."""
    gateway = corpus.gateway
    host, port = gateway.url.removeprefix("http://").split(":")
    head = (
        f"POST {TRANSCRIPTIONS} HTTP/1.1\r\nhost: x\r\n"
        f"authorization: Bearer {gateway.admin_key}\r\ncontent-type: {FORM_TYPE}\r\n"
        f"content-length: {MAX_BODY + 1}\r\n\r\n"
    ).encode()
    answer = b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        while b"request_too_large" not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert corpus.forms.state.uploads == []


def test_multipart_on_another_route_is_a_415_naming_the_form_routes(corpus: Corpus) -> None:
    """A multipart body on a route that takes JSON (chat completions) is refused with 415,
    the message naming the routes that take forms."""
    response = corpus.post("/v1/chat/completions", form(MODEL), FORM_TYPE)
    assert response.status_code == 415
    error = error_of(response)
    assert error["code"] == "unsupported_media_type"
    assert all(path in error["message"] for path in FORM_PATHS)


async def test_forwarding_a_form_never_copies_its_file() -> None:
    """The body sent upstream is views on the buffer read from the client, written a
    bounded piece at a time: forwarding a 32 MiB form through aiohttp to a loopback
    server allocates under 2 MiB, and the server receives the form with only the model
    replaced."""
    file = random.Random(3).randbytes(32 * 1024 * 1024)
    # The file first: the model's value lies past it, at the end.
    body = form(part("file", file, filename="x.wav"), part("model", b"transcriber"))
    read = read_form(body, FORM_TYPE.encode())
    spliced = read.with_model("whisper-large-v3-upstream")
    at = body.rindex(b"transcriber")
    expected = body[:at] + b"whisper-large-v3-upstream" + body[at + len("transcriber") :]
    assert spliced.size == len(expected)
    pieces = [piece async for piece in spliced.pieces()]
    assert max(piece.nbytes for piece in pieces) <= PIECE
    assert sum(piece.obj is body for piece in pieces) == len(pieces) - 1  # all but the model
    del pieces
    received = hashlib.sha256()
    done = asyncio.Event()

    async def discard(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert f"content-length: {spliced.size}".encode() in head.lower()
        left = spliced.size
        while left:
            chunk = await reader.read(min(left, 65536))
            received.update(chunk)
            left -= len(chunk)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()
        done.set()

    server = await asyncio.start_server(discard, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as http:
            tracemalloc.start()
            try:
                async with http.post(
                    f"http://127.0.0.1:{port}/v1/audio/transcriptions",
                    data=spliced.pieces(),
                    headers={"content-type": FORM_TYPE, "content-length": str(spliced.size)},
                ) as answer:
                    assert answer.status == 200
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        await done.wait()
    finally:
        server.close()
        await server.wait_closed()
    assert received.hexdigest() == sha256(expected)
    assert peak < 2 * 1024 * 1024, f"{peak} bytes allocated to forward {len(body)}"


def test_every_form_route_is_an_inference_route_of_openai_endpoints() -> None:
    """The routes that take forms are inference routes of the openai endpoint type, so a
    form there is routed like any request, never refused as an unknown route."""
    assert all(INFERENCE_ROUTES.allows("POST", path[3:]) for path in FORM_PATHS)
