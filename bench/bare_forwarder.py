"""The least a proxy on relaygate's own stack can do: the practical limit for Python.

A raw ASGI app that reads the request body, forwards it to ``UPSTREAM`` + the request
path, and streams the answer back chunk by chunk. No authentication, routing,
accounting, metrics or error handling: it exists only as the yardstick
``bench/compare.py`` measures relaygate against, and, with another server or client, to
compare the stacks relaygate could be built on (``bench/stacks.py``).

    python bench/bare_forwarder.py PORT UPSTREAM_BASE_URL [uvicorn|granian] [aiohttp|httpx]

relaygate's stack, the default: uvicorn with uvloop and httptools, and an aiohttp client.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_DROP = frozenset({b"host", b"content-length", b"connection", b"transfer-encoding"})
_DROP_RESPONSE = frozenset({b"content-length", b"transfer-encoding", b"connection"})


async def _read_body(receive: Any) -> bytes:
    message = await receive()
    if not message.get("more_body", False):
        return message.get("body", b"")
    parts = [message.get("body", b"")]
    while message.get("more_body", False):
        message = await receive()
        parts.append(message.get("body", b""))
    return b"".join(parts)


async def _lifespan(receive: Any, send: Any, start: Any, stop: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


class AiohttpForwarder:
    """ASGI app forwarding every HTTP request to ``upstream`` (a base URL, no slash) with
    one pooled aiohttp client."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.session: Any = None

    async def start(self) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)

    async def stop(self) -> None:
        await self.session.close()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, self.start, self.stop)
            return
        body = await _read_body(receive)
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k not in _DROP
        ]
        async with self.session.request(
            scope["method"], self.upstream + scope["path"], data=body, headers=headers
        ) as response:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [
                        (k.lower(), v)
                        for k, v in response.raw_headers
                        if k.lower() not in _DROP_RESPONSE
                    ],
                }
            )
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})


class HttpxForwarder(AiohttpForwarder):
    """The same with one pooled httpx client."""

    async def start(self) -> None:
        import httpx

        self.session = httpx.AsyncClient(
            timeout=None, limits=httpx.Limits(max_connections=None, max_keepalive_connections=100)
        )

    async def stop(self) -> None:
        await self.session.aclose()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, self.start, self.stop)
            return
        body = await _read_body(receive)
        headers = [(k, v) for k, v in scope["headers"] if k not in _DROP]
        request = self.session.build_request(
            scope["method"], self.upstream + scope["path"], content=body, headers=headers
        )
        response = await self.session.send(request, stream=True)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (k.lower(), v)
                        for k, v in response.headers.raw
                        if k.lower() not in _DROP_RESPONSE
                    ],
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()


def app_from_environment() -> AiohttpForwarder:
    """For granian, which imports the app in its worker: BARE_UPSTREAM and BARE_CLIENT."""
    client = HttpxForwarder if os.environ.get("BARE_CLIENT") == "httpx" else AiohttpForwarder
    return client(os.environ["BARE_UPSTREAM"])


def main() -> None:
    port, upstream = int(sys.argv[1]), sys.argv[2].rstrip("/")
    server = sys.argv[3] if len(sys.argv) > 3 else "uvicorn"
    client = sys.argv[4] if len(sys.argv) > 4 else "aiohttp"
    if server == "granian":
        from granian import Granian
        from granian.constants import Interfaces, Loops

        os.environ.update(BARE_UPSTREAM=upstream, BARE_CLIENT=client)
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        Granian(
            "bare_forwarder:app_from_environment",
            factory=True,
            address="127.0.0.1",
            port=port,
            interface=Interfaces.ASGI,
            workers=1,
            loop=Loops.uvloop,
            log_enabled=False,
            websockets=False,
        ).serve()
        return
    import uvicorn

    forwarder = HttpxForwarder if client == "httpx" else AiohttpForwarder
    uvicorn.run(
        forwarder(upstream),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
