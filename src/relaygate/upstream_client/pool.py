"""The HTTP/1.1 client of the proxy's hot path: a pool of keep-alive connections on
asyncio protocols (:mod:`relaygate.upstream_client.connection`), in place of aiohttp's
``ClientSession.request``, which cost more CPU per request than relaygate's own work
around it (``bench/client_cpu.py`` measures both).

As the aiohttp session it replaces on this path: HTTP and HTTPS (the system's verified
TLS context, SNI and ALPN ``http/1.1``), keep-alive (an idle connection kept up to
``keepalive`` seconds, at most ``limit`` connections open), ``Content-Length`` and
chunked bodies both ways, no redirect followed, no body decoded, no cookie kept, and no
proxy from the environment (the session had ``trust_env`` off). A connection the server
closed while it waited in the pool is never used: the request goes on a fresh one; a
request that was written is never sent again. aiohttp stays for everything else
(syncs, probes, webhooks).

References: RFC 9112 (HTTP/1.1 messages, §6 bodies, §7.1 chunked coding, §9
connections), RFC 6066 §3 (SNI)."""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterable, Iterable
from types import TracebackType

from yarl import URL

from relaygate.upstream_client.connection import Answer, Connection
from relaygate.upstream_client.errors import ConnectFailed, ConnectTimeout, disconnected

_ONE_WRITE = 64 * 1024
"""A body up to this size goes out with the head in one write."""

Key = tuple[str, int, bool]


class LeanClient:
    """The pool: ``limit`` connections at most (more requests wait for one), each kept
    idle up to ``keepalive`` seconds; ``tls`` is the context for ``https`` (default: the
    system's, verified); ``max_field`` and ``max_headers`` bound an answer's head."""

    def __init__(
        self,
        *,
        limit: int = 1000,
        keepalive: float = 15.0,
        tls: ssl.SSLContext | None = None,
        max_field: int = 8190,
        max_headers: int = 128,
    ) -> None:
        self._limit = limit
        self._keepalive = keepalive
        self._tls = tls
        self._max_field = max_field
        self._max_headers = max_headers
        self._idle: dict[Key, deque[Connection]] = {}
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    def request(
        self,
        method: str,
        url: URL,
        *,
        data: bytes | AsyncIterable[bytes | memoryview],
        headers: Iterable[tuple[str, str]],
        connect_timeout: float,
    ) -> Exchange:
        """An exchange with ``url``: used as ``async with client.request(…) as answer``,
        it sends ``method``, ``headers`` (a ``Host`` and, for a ``bytes`` body, a
        ``Content-Length`` added; an iterable body without a ``Content-Length`` header
        goes chunked) and ``data``, and gives the :class:`Answer` once its head came.
        Raises :class:`aiohttp.ClientConnectorError`, :class:`aiohttp.ConnectionTimeoutError`
        (no connection within ``connect_timeout`` seconds), and the
        :class:`aiohttp.ClientError` of a broken or malformed answer; ``ValueError`` for a
        header value with a line break."""
        return Exchange(self, method, url, data, headers, connect_timeout)

    async def close(self) -> None:
        """Close every idle connection; those in use close when their exchange ends."""
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports close

    async def acquire(self, url: URL, connect_timeout: float) -> Connection:
        """A connection to ``url``'s origin: the most recent idle one still open, or a
        new one. Raises as :meth:`request` says."""
        tls = url.scheme == "https"
        host = url.raw_host or ""
        key = (host, url.port or (443 if tls else 80), tls)
        while True:
            conn = self._reuse(key)
            if conn is not None:
                return conn
            if self._open < self._limit:
                return await self._connect(key, connect_timeout)
            self._close_idle()  # another origin's: its end frees a place
            await self._wait()

    def _reuse(self, key: Key) -> Connection | None:
        idle = self._idle.get(key)
        if idle:
            now = asyncio.get_running_loop().time()
            while idle:
                conn = idle.pop()
                if not conn.closed and now - conn.idle_since < self._keepalive:
                    return conn
                conn.close()
        return None

    async def _wait(self) -> None:
        """Wait until a connection is released or closed."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # woken, then cancelled: the place goes to the next
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def release(self, conn: Connection, reuse: bool) -> None:
        """``conn``'s exchange ended: back to the pool when ``reuse`` and it may, else closed."""
        paused = conn.paused  # an answer read to its end while reading was paused
        conn.finish()
        if not reuse or paused or conn.closed or self._closed:
            conn.close()
            return
        now = asyncio.get_running_loop().time()
        conn.idle_since = now
        idle = self._idle.setdefault(conn.key, deque())
        while idle and now - idle[0].idle_since >= self._keepalive:
            idle.popleft().close()
        idle.append(conn)
        self._wake()

    def forget(self, conn: Connection) -> None:
        """``conn`` closed: its place is free (called once, from its ``connection_lost``)."""
        self._open -= 1
        idle = self._idle.get(conn.key)
        if idle is not None and conn in idle:
            idle.remove(conn)
        self._wake()

    async def _connect(self, key: Key, timeout: float) -> Connection:
        host, port, tls = key
        loop = asyncio.get_running_loop()
        self._open += 1
        made: list[Connection] = []

        def protocol() -> Connection:
            made.append(Connection(key, self.forget, self._max_field, self._max_headers))
            return made[0]

        def unopened() -> None:
            if made and made[0].transport is not None:
                made[0].close()  # made after all: its connection_lost forgets it, once
            else:
                self._open -= 1

        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    protocol,
                    host.strip("[]"),
                    port,
                    ssl=self._context() if tls else None,
                    server_hostname=host.strip("[]") if tls else None,
                )
        except TimeoutError as exc:
            unopened()
            raise ConnectTimeout(f"Connection timeout to host {host}:{port}") from exc
        except OSError as exc:
            unopened()
            raise ConnectFailed(host, port, exc) from exc
        except BaseException:
            unopened()
            raise
        return conn

    def _close_idle(self) -> bool:
        """Close the oldest idle connection of any origin; whether there was one."""
        for idle in self._idle.values():
            if idle:
                idle.popleft().close()
                return True
        return False

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
            self._tls.set_alpn_protocols(["http/1.1"])
        return self._tls


class Exchange:
    """One request and its answer (see :meth:`LeanClient.request`). The connection goes
    back to the pool only when the answer was read whole and the server keeps it open;
    an exchange left early (an error, a timeout, a cancellation) closes it."""

    __slots__ = ("_client", "_conn", "_data", "_headers", "_method", "_timeout", "_url")

    def __init__(
        self,
        client: LeanClient,
        method: str,
        url: URL,
        data: bytes | AsyncIterable[bytes | memoryview],
        headers: Iterable[tuple[str, str]],
        timeout: float,
    ) -> None:
        self._client, self._method, self._url = client, method, url
        self._data, self._headers, self._timeout = data, headers, timeout
        self._conn: Connection | None = None

    async def __aenter__(self) -> Answer:
        head, chunked = _head(self._method, self._url, self._headers, self._data)
        self._conn = conn = await self._client.acquire(self._url, self._timeout)
        try:
            answer = conn.begin(self._method, self._url)
            transport = conn.transport
            assert transport is not None
            data = self._data
            if isinstance(data, bytes):
                if len(data) <= _ONE_WRITE:
                    transport.write(head + data)
                else:
                    transport.writelines((head, data))
            else:
                transport.write(head)
                await _write_pieces(conn, data, chunked)
            return await answer
        except BaseException:
            self._conn = None
            self._client.release(conn, False)
            raise

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            answer = conn.answer
            whole = kind is None and answer is not None and answer.complete
            self._client.release(conn, whole and conn.reusable)


async def _write_pieces(
    conn: Connection, pieces: AsyncIterable[bytes | memoryview], chunked: bool
) -> None:
    """Write a body given in pieces, waiting while the socket's buffer is full."""
    transport = conn.transport
    assert transport is not None
    async for piece in pieces:
        if conn.closed:
            raise disconnected(None)
        if chunked:
            if piece:
                transport.writelines((b"%x\r\n" % len(piece), piece, b"\r\n"))
        else:
            transport.write(piece)
        await conn.drain()
    if chunked:
        transport.write(b"0\r\n\r\n")


def _head(
    method: str,
    url: URL,
    headers: Iterable[tuple[str, str]],
    data: bytes | AsyncIterable[bytes | memoryview],
) -> tuple[bytes, bool]:
    """The request's head, and whether its body goes chunked. Raises ``ValueError`` for
    a line break in a header (it would start a header, or a request, of its own)."""
    lines = [f"{method} {url.raw_path_qs or '/'} HTTP/1.1"]
    names: set[str] = set()
    for name, value in headers:
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            raise ValueError(f"a line break in the request header {name!r}")
        names.add(name.lower())
        lines.append(f"{name}: {value}")
    if "host" not in names:
        lines.append(f"Host: {url.host_port_subcomponent}")  # [v6], no default port
    if "accept" not in names:
        lines.append("Accept: */*")
    chunked = False
    if isinstance(data, bytes):
        if "content-length" not in names:
            lines.append(f"Content-Length: {len(data)}")
    elif "content-length" not in names:
        chunked = True
        lines.append("Transfer-Encoding: chunked")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8"), chunked
