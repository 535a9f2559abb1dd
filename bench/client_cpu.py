"""CPU time per request of the hot path's upstream client against aiohttp's, side by
side in one process (a loaded machine skews wall time, not CPU time much).

An upstream on loopback (a raw asyncio server, in a process of its own) answers every
request with a small JSON body (Content-Length) or a chunked event stream of 20
events; this process sends N requests through each client at concurrency C, in
interleaved rounds, and reports ``resource.getrusage`` user+system time of this
process per request (the server's is not counted).

    PYTHONPATH=src .venv/bin/python bench/client_cpu.py [N] [rounds]
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import socket
import statistics
import sys
from collections.abc import Awaitable, Callable

import aiohttp
import uvloop
from yarl import URL

from relaygate.upstream_client import LeanClient

_JSON = b'{"id":"x","object":"chat.completion","choices":[{"message":{"content":"hi"}}]}'
_EVENT = b'data: {"choices":[{"delta":{"content":"token"}}]}\n\n'
_HEADERS = [
    ("authorization", "Bearer sk-benchmark"),
    ("content-type", "application/json"),
    ("x-request-id", "0123456789abcdef"),
]
_BODY = b'{"model":"m","messages":[{"role":"user","content":"hello"}]}'


def _serve(sock: socket.socket) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                if head.startswith(b"POST /stream"):
                    out = [
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                        b"transfer-encoding: chunked\r\n\r\n"
                    ]
                    out += [b"%x\r\n%s\r\n" % (len(_EVENT), _EVENT)] * 20
                    out.append(b"0\r\n\r\n")
                    writer.write(b"".join(out))
                else:
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        b"content-length: %d\r\n\r\n%s" % (len(_JSON), _JSON)
                    )
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, sock=sock)
        await server.serve_forever()

    uvloop.run(main())


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _run(send: Callable[[], Awaitable[None]], n: int, c: int) -> float:
    async def worker(count: int) -> None:
        for _ in range(count):
            await send()

    before = _cpu()
    await asyncio.gather(*(worker(n // c) for _ in range(c)))
    return (_cpu() - before) / n * 1e6


async def main(n: int, rounds: int) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    port = sock.getsockname()[1]
    server = multiprocessing.get_context("fork").Process(target=_serve, args=(sock,), daemon=True)
    server.start()
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1000),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    lean = LeanClient()
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
    results: dict[tuple[str, str, int], list[float]] = {}
    for path in ("/json", "/stream"):
        url = URL(f"http://127.0.0.1:{port}{path}")

        async def via_aiohttp(url: URL = url) -> None:
            async with session.request(
                "POST", url, data=_BODY, headers=_HEADERS, timeout=timeout, allow_redirects=False
            ) as response:
                async for _ in response.content.iter_any():
                    pass

        async def via_lean(url: URL = url) -> None:
            async with lean.request(
                "POST", url, data=_BODY, headers=_HEADERS, connect_timeout=10
            ) as answer:
                async for _ in answer.content.iter_any():
                    pass

        for c in (1, 16):
            await _run(via_aiohttp, 200, c)  # warm the pools
            await _run(via_lean, 200, c)
            for _ in range(rounds):
                for name, send in (("aiohttp", via_aiohttp), ("lean", via_lean)):
                    results.setdefault((path, name, c), []).append(await _run(send, n, c))
    await session.close()
    await lean.close()
    server.kill()
    print("| body | c | aiohttp µs CPU/request | lean µs CPU/request | saved |")
    print("|---|---|---|---|---|")
    for path in ("/json", "/stream"):
        for c in (1, 16):
            a = statistics.median(results[(path, "aiohttp", c)])
            b = statistics.median(results[(path, "lean", c)])
            print(f"| {path[1:]} | {c} | {a:.1f} | {b:.1f} | {a - b:.1f} |")


if __name__ == "__main__":
    uvloop.run(
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 5000,
            int(sys.argv[2]) if len(sys.argv) > 2 else 3,
        )
    )
