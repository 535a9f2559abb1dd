"""The hot path's upstream client against real loopback servers: bodies both ways,
keep-alive and its limits, and what a broken or hostile upstream gets (the same
aiohttp error, in the same words, as aiohttp's client gave)."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import aiohttp
import pytest
from yarl import URL

from relaygate.upstream_client import LeanClient
from tests.upstream_client.raw import Raw, answer, keep_alive


@pytest.fixture
async def client() -> AsyncIterator[LeanClient]:
    lean = LeanClient(limit=4)
    yield lean
    await lean.close()


async def fetch(
    client: LeanClient,
    url: URL,
    data: bytes | AsyncIterator[bytes] = b"{}",
    headers: list[tuple[str, str]] | None = None,
) -> tuple[int, bytes]:
    async with client.request(
        "POST", url, data=data, headers=headers or [], connect_timeout=2
    ) as response:
        body = b"".join([chunk async for chunk in response.content.iter_any()])
    return response.status, body


async def test_keep_alive_reuses_one_connection(client: LeanClient) -> None:
    async with Raw(keep_alive) as server:
        for n in range(5):
            assert await fetch(client, server.url, b"%d" % n) == (200, b"echo:%d" % n)
        assert server.connections == 1
        head = server.requests[0][0]
        assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
        assert b"\r\nHost: 127.0.0.1:" in head and b"\r\nContent-Length: 1\r\n" in head


async def test_concurrent_requests_bounded_by_limit_then_reused(client: LeanClient) -> None:
    async with Raw(keep_alive) as server:
        results = await asyncio.gather(*(fetch(client, server.url, b"x") for _ in range(12)))
        assert results == [(200, b"echo:x")] * 12
        assert server.connections <= 4
        await asyncio.gather(*(fetch(client, server.url, b"y") for _ in range(4)))
        assert server.connections <= 4


async def test_chunked_answer_split_anywhere(client: LeanClient) -> None:
    body = b"".join(b"data: %d\n\n" % n for n in range(50))
    wire = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 7]), body[i : i + 7]) for i in range(0, len(body), 7)
    )
    wire = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        + wire
        + b"0\r\n\r\n"
    )

    async def script(raw: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await raw.read_request(reader)
            for i in range(0, len(wire), 5):  # chunk sizes and CRLFs cut in two
                writer.write(wire[i : i + 5])
                await writer.drain()
                await asyncio.sleep(0)

    async with Raw(script) as server:
        assert await fetch(client, server.url) == (200, body)
        assert await fetch(client, server.url) == (200, body)
        assert server.connections == 1  # the chunked answer ended cleanly: reused


async def test_request_bodies_chunked_and_with_length(client: LeanClient) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for part in (b"ab", b"", b"c" * 70000, b"d"):
            yield part

    async with Raw(keep_alive) as server:
        expected = b"ab" + b"c" * 70000 + b"d"
        assert await fetch(client, server.url, pieces()) == (200, b"echo:" + expected)
        assert b"transfer-encoding: chunked" in server.requests[-1][0].lower()
        length = [("content-length", str(len(expected)))]
        assert await fetch(client, server.url, pieces(), length) == (200, b"echo:" + expected)
        assert b"chunked" not in server.requests[-1][0].lower()
        large = b"z" * 300_000
        assert await fetch(client, server.url, large) == (200, b"echo:" + large)
        assert server.connections == 1


async def test_answer_until_close_is_read_whole_and_not_reused(client: LeanClient) -> None:
    async def script(raw: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{"a":')
        await writer.drain()
        writer.write(b" 1}")

    async with Raw(script) as server:
        assert await fetch(client, server.url) == (200, b'{"a": 1}')
        assert await fetch(client, server.url) == (200, b'{"a": 1}')
        assert server.connections == 2


async def test_interim_answer_skipped_and_redirect_not_followed(client: LeanClient) -> None:
    async def script(raw: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(
            b"HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:1/\r\ncontent-length: 0\r\n\r\n"
        )
        await writer.drain()
        await reader.read()

    async with Raw(script) as server:
        assert await fetch(client, server.url) == (302, b"")
        assert len(server.requests) == 1


async def test_idle_connection_closed_by_server_is_not_used(client: LeanClient) -> None:
    """A connection the server closed while it sat in the pool is dropped: the next
    request goes on a fresh connection, and reaches the server once."""

    async def script(raw: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.read_request(reader)
        writer.write(answer(b"once"))  # keep-alive offered, then the server changes its mind

    async with Raw(script) as server:
        assert await fetch(client, server.url) == (200, b"once")
        for _ in range(100):
            if server.open == 0:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the client sees the end
        assert await fetch(client, server.url) == (200, b"once")
        assert server.connections == 2 and len(server.requests) == 2


async def test_request_sent_on_a_connection_then_dropped_is_not_sent_again(
    client: LeanClient,
) -> None:
    """Once a request was written, a connection that closes without an answer fails it
    (aiohttp's ServerDisconnectedError): a POST is never repeated."""

    async def script(raw: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.read_request(reader)
        writer.write(answer(b"first"))
        await raw.read_request(reader)  # the second request: read, then hang up

    async with Raw(script) as server:
        assert await fetch(client, server.url) == (200, b"first")
        with pytest.raises(aiohttp.ServerDisconnectedError, match="Server disconnected"):
            await fetch(client, server.url)
        assert server.connections == 1 and len(server.requests) == 2


async def test_extra_answer_never_reaches_the_next_request(client: LeanClient) -> None:
    """An upstream that sends a second answer after the first (to desynchronise the
    connection) loses it: the next request goes on a fresh connection."""

    async def script(raw: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.read_request(reader)
        writer.write(answer(b"mine") + answer(b"smuggled"))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(answer(b"late"))
        await reader.read()

    async with Raw(script) as server:
        assert await fetch(client, server.url) == (200, b"mine")
        assert await fetch(client, server.url) == (200, b"mine")
        assert server.connections == 2


async def test_header_with_line_break_is_refused_before_sending(client: LeanClient) -> None:
    async with Raw(keep_alive) as server:
        with pytest.raises(ValueError, match="line break"):
            await fetch(client, server.url, headers=[("x-a", "b\r\nx-injected: 1")])
        assert server.connections == 0


async def test_cancelled_mid_body_closes_the_connection(client: LeanClient) -> None:
    async def script(raw: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await raw.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(b"4\r\nlast\r\n0\r\n\r\n")

    async with Raw(script) as server:

        async def read_first() -> None:
            async with client.request(
                "POST", server.url, data=b"{}", headers=[], connect_timeout=2
            ) as response:
                async for _ in response.content.iter_any():
                    await asyncio.sleep(10)

        task = asyncio.create_task(read_first())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if server.open == 0:
                break
            await asyncio.sleep(0.01)
        assert server.open == 0
        assert await fetch(client, server.url) == (200, b"firstlast")
        assert server.connections == 2


async def test_big_answer_read_slowly_arrives_whole(client: LeanClient) -> None:
    body = bytes(range(256)) * 8192  # 2 MiB: reading pauses and resumes

    async def script(raw: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.read_request(reader)
        writer.write(answer(body))
        await writer.drain()
        await reader.read()

    async with Raw(script) as server:
        async with client.request(
            "POST", server.url, data=b"{}", headers=[], connect_timeout=2
        ) as response:
            parts = []
            async for chunk in response.content.iter_any():
                assert len(chunk) <= 2 * 1024 * 1024
                parts.append(chunk)
                await asyncio.sleep(0.001)
        assert b"".join(parts) == body


# What a broken upstream does, and what aiohttp's client said of it: the same class,
# and the same words.
BROKEN = {
    "cut_in_body": b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc",
    "cut_in_chunks": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n",
    "nothing": b"",
    "garbage_status_line": b"HELLO THERE\r\n\r\n",
    "header_line_too_long": b"HTTP/1.1 200 OK\r\nx-a: "
    + b"a" * 9000
    + b"\r\ncontent-length: 0\r\n\r\n",
    "too_many_headers": b"HTTP/1.1 200 OK\r\n"
    + b"".join(b"x-%d: a\r\n" % i for i in range(200))
    + b"content-length: 0\r\n\r\n",
}


@pytest.mark.parametrize("wire", BROKEN.values(), ids=BROKEN.keys())
async def test_broken_answer_fails_as_aiohttp_did(client: LeanClient, wire: bytes) -> None:
    async def script(raw: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.read_request(reader)
        writer.write(wire)
        await writer.drain()

    async with Raw(script) as server, aiohttp.ClientSession(auto_decompress=False) as session:
        errors: list[BaseException] = []
        for lean in (True, False):
            try:
                if lean:
                    await fetch(client, server.url)
                else:
                    async with session.post(server.url, data=b"{}") as response:
                        async for _ in response.content.iter_any():
                            pass
            except aiohttp.ClientError as exc:
                errors.append(exc)
        assert len(errors) == 2
        ours, theirs = errors
        assert type(ours) is type(theirs)
        if isinstance(theirs, aiohttp.ClientResponseError):
            # A malformed head: the parsers word it differently (llhttp, aiohttp's own).
            assert isinstance(ours, aiohttp.ClientResponseError)
            assert (ours.status, ours.request_info.real_url) == (400, server.url)
        else:
            assert str(ours) == str(theirs)


async def test_endless_head_is_cut_off(client: LeanClient) -> None:
    async def script(raw: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nx-a: ")
        for _ in range(2000):  # 8 MiB of one header, never ended
            writer.write(b"a" * 4096)
            await writer.drain()

    async with Raw(script) as server:
        with pytest.raises(aiohttp.ClientResponseError, match="Got more than"):
            await fetch(client, server.url)


async def test_refused_connection_is_aiohttps_connector_error(client: LeanClient) -> None:
    async with Raw(keep_alive) as server:
        url = server.url
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorError) as theirs:
            await session.post(url, data=b"{}")
    with pytest.raises(aiohttp.ClientConnectorError) as ours:
        await fetch(client, url)
    assert isinstance(ours.value.os_error, ConnectionRefusedError)
    assert str(ours.value) == str(theirs.value)


async def test_ipv6_literal_host(client: LeanClient) -> None:
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        await reader.readexactly(2)
        writer.write(answer(b"v6"))
        await writer.drain()
        writer.close()

    try:
        server = await asyncio.start_server(handle, "::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    async with server:
        port = server.sockets[0].getsockname()[1]
        assert await fetch(client, URL(f"http://[::1]:{port}/v1/x")) == (200, b"v6")
    assert f"\r\nHost: [::1]:{port}\r\n".encode() in requests[0]


async def test_answer_until_close_cut_by_a_reset_is_broken(client: LeanClient) -> None:
    """A body without a length ends with the connection only when it ends cleanly: a
    reset is a broken answer, never a short one that looks whole."""

    async def script(raw: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{"a":')
        await writer.drain()
        await asyncio.sleep(0.1)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # an RST, not a FIN

    async with Raw(script) as server:
        with pytest.raises(aiohttp.ClientPayloadError, match="not completed"):
            await fetch(client, server.url)
