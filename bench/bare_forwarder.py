"""The least a proxy on relaygate's own stack can do: the practical limit for Python.

A raw ASGI app on uvicorn (uvloop, httptools) that reads the request body, forwards it
with aiohttp to ``UPSTREAM`` + the request path, and streams the answer back chunk by
chunk. No authentication, routing, accounting, metrics or error handling: it exists
only as the yardstick ``bench/compare.py`` measures relaygate against.

    python bench/bare_forwarder.py PORT UPSTREAM_BASE_URL
"""

from __future__ import annotations

import sys
from typing import Any

import aiohttp
import uvicorn

_DROP = frozenset({b"host", b"content-length", b"connection", b"transfer-encoding"})


class BareForwarder:
    """ASGI app forwarding every HTTP request to ``upstream`` (a base URL, no slash)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
                    self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    assert self.session is not None
                    await self.session.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k not in _DROP
        ]
        assert self.session is not None
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
                        if k.lower() not in (b"content-length", b"transfer-encoding", b"connection")
                    ],
                }
            )
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})


if __name__ == "__main__":
    port, upstream = int(sys.argv[1]), sys.argv[2].rstrip("/")
    uvicorn.run(
        BareForwarder(upstream),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        server_header=False,
    )
