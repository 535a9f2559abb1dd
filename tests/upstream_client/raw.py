"""A raw HTTP/1.1 server on loopback for the client's tests: each connection is handed
to a script (reader, writer), and the server counts connections and requests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType

from yarl import URL

Script = Callable[["Raw", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Raw:
    """Serve ``script`` on every connection; ``connections`` made, ``open`` now, and the
    raw ``requests`` read with :meth:`read_request`."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.open = 0
        self.requests: list[tuple[bytes, bytes]] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> URL:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return URL(f"http://127.0.0.1:{port}/v1/chat/completions")

    async def __aenter__(self) -> Raw:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        self.open += 1
        try:
            await self.script(self, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went, or the server stops (asyncio's callback reads the task)
        finally:
            self.open -= 1
            writer.close()
            self._tasks.discard(task)

    async def read_request(self, reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
        """Read one request: its head and its body (Content-Length or chunked, decoded)."""
        head = await reader.readuntil(b"\r\n\r\n")
        lower = head.lower()
        body = b""
        if b"transfer-encoding: chunked" in lower:
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                data = await reader.readexactly(size + 2)
                if size == 0:
                    break
                body += data[:-2]
        else:
            for line in lower.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    body = await reader.readexactly(int(line.split(b":")[1]))
        self.requests.append((head, body))
        return head, body


def answer(body: bytes, *extra: bytes) -> bytes:
    """A 200 answer with ``body`` and a Content-Length (``extra`` header lines)."""
    lines = [b"HTTP/1.1 200 OK", b"content-type: application/json", *extra]
    lines.append(b"content-length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def keep_alive(raw: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer every request on the connection with its body echoed back."""
    while True:
        _, body = await raw.read_request(reader)
        writer.write(answer(b"echo:" + body))
        await writer.drain()
