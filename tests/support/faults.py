"""A fault-injecting OpenAI-style upstream: a raw asyncio HTTP/1.1 server on loopback.

It lists one model at ``GET /v1/models`` (so relaygate can sync it) and answers every
other request according to :attr:`FaultServer.fault`, which a test sets:

``ok``            a chat completion (JSON), or a stream when the body asks for one
``drop``          close the connection without answering
``stream``        an SSE chat completion stream of ``chunks`` events and ``[DONE]``
``status``        HTTP ``status`` with an OpenAI error body, ``Retry-After`` if set
                  (``status:503:2`` gives both in the name)
``reset_body``    headers promising 1000 bytes, 100 of them, then a TCP reset
``stall``         read the request and never answer
``drip``          a stream whose events come ``drip_interval`` seconds apart
``invalid_json``  200, ``content-type: application/json``, a body that is not JSON
``cut_stream``    an SSE stream that stops after ``chunks`` events without ending
``large``         200 with ``large_bytes`` bytes of JSON-ish body, in 64 KiB writes

Writing raw bytes (not a framework) is what lets it misbehave at the socket level.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Callable

import orjson

from tests.support.servers import free_port

MODEL = "gpt-test"


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    reason = {200: "OK", 429: "Too Many Requests"}.get(status, "Error")
    lines = [f"HTTP/1.1 {status} {reason}", f"content-length: {len(body)}"]
    lines += [
        f"{name}: {value}"
        for name, value in (headers or {"content-type": "application/json"}).items()
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def completion(name: str) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"hello from {name}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
        }
    )


def sse_event(index: int) -> bytes:
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "delta": {"content": f"w{index} "}, "finish_reason": None}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


SSE_HEADERS = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


class FaultServer:
    """The server, in a thread with its own event loop, until :meth:`stop`."""

    def __init__(self, name: str = "faulty"):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.fault: str | Callable[[], str] = "ok"
        self.status = 500
        self.retry_after: str | None = None
        self.chunks = 5
        self.drip_interval = 0.05
        self.large_bytes = 20 * 1024 * 1024
        self.requests = 0
        """Requests other than the model listing received so far."""
        self.open_connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> FaultServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault server did not start")
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)

    def wait_closed(self, timeout: float = 5.0) -> bool:
        """Wait until no connection from relaygate is open; True when none is."""
        deadline = time.monotonic() + timeout
        while self.open_connections and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.open_connections == 0

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)
        self._ready.set()
        async with server:
            await self._stopping.wait()
            server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                length = 0
                for line in header_lines:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                if method == "GET" and path.startswith("/v1/models"):
                    body = orjson.dumps(
                        {
                            "object": "list",
                            "data": [{"id": MODEL, "object": "model", "owned_by": self.name}],
                        }
                    )
                    writer.write(_response(200, body))
                    await writer.drain()
                    continue
                self.requests += 1
                if not await self._answer(reader, writer, body):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self.open_connections -= 1
            self._writers.discard(writer)
            writer.close()

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes
    ) -> bool:
        """Answer one request per :attr:`fault` (a name, or a function returning one per
        request); False when the connection must end."""
        fault = self.fault() if callable(self.fault) else self.fault
        if fault == "ok" and b'"stream":true' in body.replace(b" ", b""):
            fault = "stream"
        if fault == "drop":
            return False
        if fault == "ok":
            writer.write(_response(200, completion(self.name)))
        elif fault.startswith("status"):
            # "status" uses .status and .retry_after; "status:503:2" says both itself.
            _, status_text, retry_after = (fault + "::").split(":")[:3]
            status = int(status_text) if status_text else self.status
            retry_after = retry_after or self.retry_after or ""
            headers = {"content-type": "application/json"}
            if retry_after:
                headers["retry-after"] = retry_after
            error = {"error": {"message": f"{self.name} says {status}", "type": "server_error"}}
            writer.write(_response(status, orjson.dumps(error), headers))
        elif fault == "invalid_json":
            writer.write(_response(200, b'{"id": "chatcmpl-1", "choices": [ not json'))
        elif fault in ("stream", "cut_stream", "drip"):
            writer.write(SSE_HEADERS)
            for index in range(self.chunks):
                writer.write(_chunk(sse_event(index)))
                await writer.drain()
                await asyncio.sleep(self.drip_interval if fault == "drip" else 0)
            if fault == "cut_stream":
                await writer.drain()
                return False
            writer.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        elif fault == "reset_body":
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n"
            )
            writer.write(b"{" + b" " * 99)
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        elif fault == "stall":
            await reader.read()  # until relaygate gives up and closes the connection
            return False
        elif fault == "large":
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + f"content-length: {self.large_bytes}\r\n\r\n".encode()
            )
            block = b"x" * 65536
            sent = 0
            while sent < self.large_bytes:
                part = block[: self.large_bytes - sent]
                writer.write(part)
                sent += len(part)
                await writer.drain()
        else:
            raise ValueError(f"unknown fault {fault!r}")
        await writer.drain()
        return True
