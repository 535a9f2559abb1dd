"""relaygate's own CPU time per forwarded request, for two source trees side by side
(e.g. the main checkout with aiohttp's client and a branch with the lean one).

Each tree runs ``relaygate serve`` (one process, SQLite) over the same loopback upstream
(a raw asyncio server, in a process of its own); this process sends N JSON chat
completions, then N streams, at concurrency C through each in interleaved rounds, and
reads the server's user+system time from ``/proc/PID/stat``.

    .venv/bin/python bench/gateway_cpu.py SRC_A SRC_B [N] [ROUNDS]
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

_MODELS = b'{"object":"list","data":[{"id":"gpt-test","object":"model","owned_by":"x"}]}'
_JSON = (
    b'{"id":"c","object":"chat.completion","model":"gpt-test","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}'
)
_EVENT = (
    b'data: {"id":"c","object":"chat.completion.chunk",'
    b'"choices":[{"index":0,"delta":{"content":"t"}}]}\n\n'
)
_LAST = (
    b'data: {"id":"c","object":"chat.completion.chunk","choices":[],'
    b'"usage":{"prompt_tokens":5,"completion_tokens":20,"total_tokens":25}}\n\ndata: [DONE]\n\n'
)
_ADMIN = "rg-" + "b" * 43


def _serve(sock: socket.socket) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                if head.startswith(b"GET"):
                    out = _MODELS
                elif b'"stream":true' in body:
                    events = [_EVENT] * 20 + [_LAST]
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                        b"transfer-encoding: chunked\r\n\r\n"
                        + b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events)
                        + b"0\r\n\r\n"
                    )
                    continue
                else:
                    out = _JSON
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(out), out)
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, sock=sock)
        await server.serve_forever()

    asyncio.run(main())


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(src: str, upstream: str, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    work.mkdir()
    (work / "relaygate.yaml").write_text(
        f"endpoints:\n  - name: up\n    url: {upstream}\n    api_key: sk-x\n"
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYGATE_")}
    env.update(PYTHONPATH=src, RELAYGATE_ADMIN_KEY=_ADMIN, RELAYGATE_ACCESS_LOG="false")
    process = subprocess.Popen(
        [sys.executable, "-m", "relaygate", "serve", "--port", str(port)],
        cwd=work,
        env=env,
        stdout=(work / "serve.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    return process, f"http://127.0.0.1:{port}"


async def _ready(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(300):
        try:
            async with session.get(url + "/v1/models", headers=_auth()) as r:
                if r.status == 200 and b"gpt-test" in await r.read():
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready")


def _auth() -> dict[str, str]:
    return {"authorization": f"Bearer {_ADMIN}"}


async def _load(session: aiohttp.ClientSession, url: str, n: int, c: int, stream: bool) -> None:
    body = b'{"model":"gpt-test","messages":[{"role":"user","content":"hello"}]' + (
        b',"stream":true}' if stream else b"}"
    )
    headers = {**_auth(), "content-type": "application/json"}

    async def worker() -> None:
        for _ in range(n // c):
            async with session.post(url + "/v1/chat/completions", data=body, headers=headers) as r:
                await r.read()
                assert r.status == 200, r.status

    await asyncio.gather(*(worker() for _ in range(c)))


async def main(srcs: list[str], n: int, rounds: int) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    upstream = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    server = multiprocessing.get_context("fork").Process(target=_serve, args=(sock,), daemon=True)
    server.start()
    root = Path(tempfile.mkdtemp(prefix="relaygate-cpu-"))
    gateways = [_start(src, upstream, root / f"g{i}") for i, src in enumerate(srcs)]
    results: dict[tuple[int, bool, int], list[float]] = {}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            for _, url in gateways:
                await _ready(session, url)
                await _load(session, url, 500, 16, False)  # warm up
            for _ in range(rounds):
                for stream in (False, True):
                    for c in (1, 16):
                        for i, (process, url) in enumerate(gateways):
                            before = _cpu(process.pid)
                            await _load(session, url, n, c, stream)
                            used = (_cpu(process.pid) - before) / n * 1e6
                            results.setdefault((i, stream, c), []).append(used)
    finally:
        for process, _ in gateways:
            process.terminate()
            process.wait(20)
        server.kill()
    print("| body | c | " + " | ".join(f"`{s}` µs CPU/request" for s in srcs) + " |")
    print("|---|---|" + "---|" * len(srcs))
    for stream in (False, True):
        for c in (1, 16):
            cells = [statistics.median(results[(i, stream, c)]) for i in range(len(srcs))]
            kind = "stream" if stream else "json"
            print(f"| {kind} | {c} | " + " | ".join(f"{v:.0f}" for v in cells) + " |")


if __name__ == "__main__":
    started = time.monotonic()
    asyncio.run(
        main(
            sys.argv[1:3],
            int(sys.argv[3]) if len(sys.argv) > 3 else 3000,
            int(sys.argv[4]) if len(sys.argv) > 4 else 3,
        )
    )
    print(f"({time.monotonic() - started:.0f} s)")
