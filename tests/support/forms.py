"""An upstream for multipart uploads (audio transcriptions and translations, image edits
and variations) that reads each form with aiohttp's own multipart parser, a parser
independent of relaygate's, records what it read (fields, and each file's SHA-256) and
answers as OpenAI does (https://platform.openai.com/docs/api-reference/audio,
https://platform.openai.com/docs/api-reference/images)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, MultipartReader, StreamReader, web

UPLOAD_PATHS = (
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
    "/v1/images/edits",
    "/v1/images/variations",
)
TOKENS_USAGE = {
    "type": "tokens",
    "input_tokens": 21,
    "output_tokens": 8,
    "total_tokens": 29,
    "input_token_details": {"audio_tokens": 20, "text_tokens": 1},
}
IMAGE_USAGE = {
    "input_tokens": 50,
    "output_tokens": 60,
    "total_tokens": 110,
    "input_tokens_details": {"image_tokens": 40, "text_tokens": 10},
}


@dataclass
class Upload:
    """One multipart request as the upstream read it: its path, Content-Type and
    Content-Length headers, whether it came chunked, the SHA-256 (hex) of its whole body,
    its fields (name → values) and its files (name → (filename, SHA-256, size) per
    file)."""

    path: str
    content_type: str
    content_length: int | None
    chunked: bool
    body_sha256: str
    fields: dict[str, list[str]]
    files: dict[str, list[tuple[str | None, str, int]]]


@dataclass
class FormState:
    """How the upstream answers; tests change these while it runs."""

    models: list[str] = field(default_factory=lambda: ["whisper-up", "image-up", "secret-model"])
    usage: dict[str, Any] = field(default_factory=lambda: dict(TOKENS_USAGE))
    """The ``usage`` of a transcription (and of its stream's done event)."""
    text: str = "hello world"
    deltas: tuple[str, ...] = ("hello", " world")
    fail_status: int | None = None
    """Answer every upload with this status (after reading it), when set."""
    hold_stream: threading.Event | None = None
    """When set, a stream waits after its first event until the event is set."""
    uploads: list[Upload] = field(default_factory=list)


class FormUpstream:
    """A :class:`FormState`-driven aiohttp upstream on loopback, in a thread of its own;
    ``url`` is its API base (``/v1``)."""

    def __init__(self) -> None:
        self.state = FormState()
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
        data = [{"id": m, "object": "model", "created": 0} for m in self.state.models]
        return web.json_response({"object": "list", "data": data})

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        fields: dict[str, list[str]] = {}
        files: dict[str, list[tuple[str | None, str, int]]] = {}
        raw = await request.read()
        # Parsed once whole: aiohttp's reader, fed a body as it trickles in, may warn
        # (unread_data is deprecated) where this suite makes warnings errors.
        stream = StreamReader(request.protocol, 2**30, loop=asyncio.get_running_loop())
        stream.feed_data(raw)
        stream.feed_eof()
        reader = MultipartReader(request.headers, stream)
        async for part in reader:
            assert isinstance(part, BodyPartReader)
            data = bytes(await part.read())
            name = part.name or ""
            if part.filename is not None:
                digest = hashlib.sha256(data).hexdigest()
                files.setdefault(name, []).append((part.filename, digest, len(data)))
            else:
                fields.setdefault(name, []).append(data.decode())
        state.uploads.append(
            Upload(
                request.path,
                request.headers.get("content-type", ""),
                request.content_length,
                "chunked" in request.headers.get("transfer-encoding", ""),
                hashlib.sha256(raw).hexdigest(),
                fields,
                files,
            )
        )
        if state.fail_status is not None:
            error = {"message": "failing", "type": "server_error", "param": None, "code": None}
            return web.json_response({"error": error}, status=state.fail_status)
        if request.path.startswith("/v1/images/"):
            image = {"b64_json": "aGVsbG8=", "revised_prompt": None}
            return web.json_response(
                {"created": 0, "data": [image], "size": "256x256", "usage": IMAGE_USAGE}
            )
        if request.path == "/v1/audio/translations":
            return web.json_response({"text": state.text})
        if fields.get("stream") == ["true"]:
            return await self._stream(request)
        return web.json_response({"text": state.text, "usage": state.usage})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        """``transcript.text.delta`` events, then ``transcript.text.done`` with the usage
        (https://platform.openai.com/docs/api-reference/audio/transcript-text-delta-event)."""
        state = self.state
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for index, delta in enumerate(state.deltas):
            event = {"type": "transcript.text.delta", "delta": delta}
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
            if index == 0 and state.hold_stream is not None:
                # Hold the rest until the test has read the first event.
                await asyncio.get_running_loop().run_in_executor(None, state.hold_stream.wait, 10)
        done = {"type": "transcript.text.done", "text": "".join(state.deltas), "usage": state.usage}
        await response.write(f"data: {json.dumps(done)}\n\n".encode())
        await response.write_eof()
        return response

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/v1/models", self._models)
        for path in UPLOAD_PATHS:
            app.router.add_post(path, self._upload)
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
