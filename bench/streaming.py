"""Streaming through relaygate: time to first byte added, and whether chunks keep their pace.

Starts a real ``relaygate serve`` (SQLite, its defaults: auth, usage accounting, metrics)
and a loopback upstream serving ``gpt-bench``, registered through the admin API; the client
uses an API key made through the admin API too. Each measurement alternates one request
straight to the upstream with one through relaygate, at concurrency 1, so the machine's
noise falls on both paths alike.

1. Time to first byte: ``REQUESTS`` (default 2,000) one-chunk streams per path, after a
   warm-up of ``WARM_UP`` each. Timed from just before the request is written to the read
   that completes the first SSE event (the response head alone does not count: through
   relaygate it is sent before the first event).
2. Chunk pacing: ``STREAMS`` (default 300) streams per path of 50 chunks the upstream
   writes 2 ms apart (on a fixed schedule, not sleep after sleep), then ``data: [DONE]``.
   The client timestamps every read; each event gets the time of the read that completed
   it. Reported: the gaps between consecutive events (nominally 2 ms), each event's
   transit from the upstream's write to the client's read, and the events coalesced on
   the way: those that came in one read with another event the upstream wrote at least
   1 ms apart (two events written back to back after a late wake-up of the upstream do
   arrive together on either path; they are counted apart, as "in one read with any").

Every figure is a median or p99 per path; "added" is relaygate's minus the direct one.

    PYTHONPATH=. .venv/bin/python bench/streaming.py [REQUESTS] [STREAMS]

Prints a markdown table and writes ``bench/out/streaming-<UTC time>.json``.

Where the parts run: relaygate in its own process; the upstream and the client share this
process and its event loop. On a 2-core machine that makes two busy processes, one per
core; a third (client apart from upstream) would have them queue for a core, which
relaygate's path (one hop more) would pay more often than the direct one. Sharing the loop
also gives the upstream's write times and the client's read times one clock. The loop is
idle while waiting, so a read is seen at once. The client is raw asyncio (a Protocol
reading the socket, its own HTTP/1.1 and chunked parsing) so that each ``data_received``
is one read, with nothing between the socket and the timestamp.

The client does not ask for ``stream_options.include_usage``, as most clients don't, so
relaygate takes its usual path for them: it asks the upstream for usage, and takes the
usage chunk (written with ``[DONE]``) out of the stream.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import itertools
import json
import pathlib
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field

import httpx
import orjson
from tests.support.process import ServeProcess, cli_env
from tests.support.servers import free_port

REQUESTS = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
STREAMS = int(sys.argv[2]) if len(sys.argv) > 2 else 300
WARM_UP = 200
CHUNKS = 50
INTERVAL = 0.002
MODEL = "gpt-bench"
OUT = pathlib.Path(__file__).parent / "out"


# The upstream -----------------------------------------------------------------------------


def _chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _event(index: int, last: bool) -> bytes:
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "delta": {"content": f"w{index} "},
                "finish_reason": "stop" if last else None,
            }
        ],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


_USAGE = (
    b"data: "
    + orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": MODEL,
            "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": CHUNKS, "total_tokens": 55},
        }
    )
    + b"\n\n"
)
_DONE = b"data: [DONE]\n\n"
_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


class Upstream:
    """An OpenAI-shaped upstream on loopback: lists ``gpt-bench`` and streams chat
    completions of ``max_tokens`` chunks, ``INTERVAL`` apart, recording when it wrote each
    event (the client reads :attr:`sent` after each request; one request at a time)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.sent: list[float] = []
        self.received = 0.0
        """When the last request's body was in."""
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._connections.values():  # relaygate's pooled connection
            writer.transport.abort()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                length = 0
                for line in lines:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                self.received = time.perf_counter()
                if method == "GET" and path.startswith("/v1/models"):
                    listing = orjson.dumps(
                        {"object": "list", "data": [{"id": MODEL, "object": "model"}]}
                    )
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        + f"content-length: {len(listing)}\r\n\r\n".encode()
                        + listing
                    )
                else:
                    await self._stream(writer, orjson.loads(body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            del self._connections[task]
            writer.close()

    async def _stream(self, writer: asyncio.StreamWriter, payload: dict[str, object]) -> None:
        count = int(payload.get("max_tokens") or CHUNKS)  # type: ignore[call-overload]
        options = payload.get("stream_options")
        usage = isinstance(options, dict) and options.get("include_usage") is True
        loop = asyncio.get_running_loop()
        sent = self.sent = []
        start = loop.time()
        for index in range(count):
            if index:
                # A fixed schedule: one late wake-up does not push back every later chunk.
                await asyncio.sleep(start + index * INTERVAL - loop.time())
            data = _chunked(_event(index, last=index == count - 1))
            sent.append(time.perf_counter())
            writer.write(_SSE_HEAD + data if index == 0 else data)
        await asyncio.sleep(start + count * INTERVAL - loop.time())
        sent.append(time.perf_counter())
        writer.write((_chunked(_USAGE) if usage else b"") + _chunked(_DONE) + b"0\r\n\r\n")


# The client -------------------------------------------------------------------------------


@dataclass
class Answer:
    """One streamed answer as the client saw it; times from :func:`time.perf_counter`."""

    started: float
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    events: list[bytes] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)
    """When the read that completed each event came."""
    read_of: list[int] = field(default_factory=list)
    """Which read (numbered per answer) completed each event."""
    body: bytes = b""


class Client(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time, timing every read."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._answer: Answer | None = None
        self._done: asyncio.Future[Answer] | None = None
        self._buffer = b""
        self._sse = b""
        self._in_body = False
        self._chunked = False
        self._length = 0
        self._reads = 0

    @classmethod
    async def connect(cls, port: int) -> Client:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(cls, "127.0.0.1", port)
        return client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(ConnectionError(f"connection lost: {exc}"))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        assert self._transport is not None
        lines = [f"POST {path} HTTP/1.1", "host: 127.0.0.1", f"content-length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        self._done = asyncio.get_running_loop().create_future()
        self._buffer, self._sse, self._in_body, self._reads = b"", b"", False, 0
        self._answer = Answer(time.perf_counter())
        self._transport.write(request)
        return await self._done

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        answer = self._answer
        assert answer is not None and self._done is not None
        self._reads += 1
        self._buffer += data
        if not self._in_body:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status_line, *lines = self._buffer[:end].decode("latin-1").split("\r\n")
            answer.status = int(status_line.split(" ", 2)[1])
            for line in lines:
                name, _, value = line.partition(":")
                answer.headers[name.strip().lower()] = value.strip()
            self._chunked = answer.headers.get("transfer-encoding") == "chunked"
            self._length = int(answer.headers.get("content-length", "0"))
            self._buffer = self._buffer[end + 4 :]
            self._in_body = True
        if not self._chunked:  # an error answer, with a content-length
            if len(self._buffer) >= self._length:
                answer.body = self._buffer
                self._done.set_result(answer)
            return
        while True:
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0:
                return
            size = int(self._buffer[:line_end].split(b";")[0], 16)
            if size == 0:
                if self._buffer.find(b"\r\n\r\n", line_end) < 0:
                    return
                self._done.set_result(answer)
                return
            if len(self._buffer) < line_end + 2 + size + 2:
                return
            self._sse += self._buffer[line_end + 2 : line_end + 2 + size]
            self._buffer = self._buffer[line_end + 2 + size + 2 :]
            while (event_end := self._sse.find(b"\n\n")) >= 0:
                answer.events.append(self._sse[:event_end])
                answer.arrived.append(now)
                answer.read_of.append(self._reads)
                self._sse = self._sse[event_end + 2 :]


# The measurements -------------------------------------------------------------------------


@dataclass
class Path:
    """One way to the model: straight to the upstream, or through relaygate."""

    name: str
    client: Client
    url_path: str
    headers: dict[str, str]
    ttfb: list[float] = field(default_factory=list)
    request_leg: list[float] = field(default_factory=list)
    """Of the time to first event, the part until the upstream has the request."""
    relaygate_dur: list[float] = field(default_factory=list)
    """relaygate's own time before calling the upstream (its ``server-timing`` header)."""
    gaps: list[float] = field(default_factory=list)
    transit: list[float] = field(default_factory=list)
    events: int = 0
    coalesced: int = 0
    """Events that came in one read with another the upstream wrote at least half an
    interval apart: joined on the way, not by a late wake-up of the upstream."""
    coalesced_any: int = 0
    """Events that came in one read with any other."""

    async def stream(self, upstream: Upstream, chunks: int) -> Answer:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Say fifty words."}],
            "stream": True,
            "max_tokens": chunks,
        }
        answer = await self.client.post(self.url_path, orjson.dumps(body), self.headers)
        if answer.status != 200:
            raise RuntimeError(f"{self.name}: HTTP {answer.status} {answer.body[:300]!r}")
        if len(answer.events) != chunks + 1 or answer.events[-1] != b"data: [DONE]":
            raise RuntimeError(f"{self.name}: unexpected events {answer.events[-3:]!r}")
        if len(upstream.sent) != len(answer.events):
            raise RuntimeError(f"{self.name}: {len(upstream.sent)} written, events differ")
        return answer

    def record_ttfb(self, answer: Answer, received: float) -> None:
        self.ttfb.append(answer.arrived[0] - answer.started)
        self.request_leg.append(received - answer.started)
        timing = answer.headers.get("server-timing", "")
        if timing.startswith("relaygate;dur="):
            self.relaygate_dur.append(float(timing.split("=", 1)[1].split(",")[0]) / 1000)

    def record_pacing(self, answer: Answer, sent: list[float]) -> None:
        arrived = answer.arrived
        self.gaps += [b - a for a, b in itertools.pairwise(arrived)]
        self.transit += [a - s for a, s in zip(arrived, sent, strict=True)]
        self.events += len(arrived)
        reads = answer.read_of
        for i, read in enumerate(reads):
            together = [j for j, other in enumerate(reads) if other == read and j != i]
            if together:
                self.coalesced_any += 1
                if any(abs(sent[j] - sent[i]) >= INTERVAL / 2 for j in together):
                    self.coalesced += 1


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


async def measure(upstream: Upstream, relaygate_port: int, key: str) -> tuple[Path, Path]:
    direct = Path("direct", await Client.connect(upstream.port), "/v1/chat/completions", {})
    through = Path(
        "relaygate",
        await Client.connect(relaygate_port),
        "/v1/chat/completions",
        {"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    paths = (direct, through)
    try:
        for _ in range(WARM_UP):
            for path in paths:
                await path.stream(upstream, 1)
        gc.collect()
        for _ in range(REQUESTS):
            for path in paths:
                path.record_ttfb(await path.stream(upstream, 1), upstream.received)
        gc.collect()
        for _ in range(STREAMS):
            for path in paths:
                answer = await path.stream(upstream, CHUNKS)
                path.record_pacing(answer, upstream.sent)
    finally:
        for path in paths:
            path.client.close()
    return direct, through


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def report(direct: Path, through: Path, server: ServeProcess) -> dict[str, object]:
    """Print the table (``added``: relaygate's quantile minus the direct one) and return
    what goes into the JSON file."""
    rows: list[tuple[str, float, float]] = []
    for label, attr in (
        ("time to first event", "ttfb"),
        ("of which until the upstream has the request", "request_leg"),
        ("gap between events", "gaps"),
        ("event transit (upstream write to client read)", "transit"),
    ):
        a, b = getattr(direct, attr), getattr(through, attr)
        rows.append((f"{label}, median", statistics.median(a), statistics.median(b)))
        rows.append((f"{label}, p99", p99(a), p99(b)))
    print(
        f"\n{REQUESTS} one-chunk streams, then {STREAMS} streams of {CHUNKS} chunks "
        f"{INTERVAL * 1000:g} ms apart, per path; concurrency 1, paths alternating\n"
    )
    print("| measure | direct | through relaygate | added |")
    print("|---|---|---|---|")
    for label, d, t in rows:
        print(f"| {label} | {ms(d)} | {ms(t)} | {ms(t - d)} |")
    print(
        f"| events coalesced on the way | {direct.coalesced} of {direct.events} "
        f"| {through.coalesced} of {through.events} | |"
    )
    print(
        f"| events in one read with any other | {direct.coalesced_any} of {direct.events} "
        f"| {through.coalesced_any} of {through.events} | |"
    )
    own = statistics.median(through.relaygate_dur)
    print(f"\nrelaygate's own server-timing (relaygate;dur, to the upstream call): {ms(own)}")
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "requests": REQUESTS,
        "streams": STREAMS,
        "chunks": CHUNKS,
        "interval_s": INTERVAL,
        "warm_up": WARM_UP,
        "seconds": [{"measure": r[0], "direct": r[1], "relaygate": r[2]} for r in rows],
        "events": {"direct": direct.events, "relaygate": through.events},
        "coalesced_on_the_way": {"direct": direct.coalesced, "relaygate": through.coalesced},
        "in_one_read_with_another": {
            "direct": direct.coalesced_any,
            "relaygate": through.coalesced_any,
        },
        "relaygate_server_timing_median_s": own,
        "ttfb_s": {"direct": direct.ttfb, "relaygate": through.ttfb},
        "relaygate_exit_code": server.process.returncode,
    }


async def set_up(server: ServeProcess, admin_key: str, upstream: Upstream) -> str:
    """Register the upstream as an endpoint, make an API key, and wait until relaygate
    lists ``gpt-bench`` to it (the endpoint's sync has landed); returns the key. Async, as
    the upstream answering the sync runs on this loop."""
    admin = {"authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(base_url=server.url, headers=admin, timeout=30) as http:
        fields = {"name": "bench", "url": upstream.url}
        created = await http.post("/admin/api/v1/endpoints", json=fields)
        assert created.status_code == 201, created.text
        made = await http.post("/admin/api/v1/keys", json={"name": "streambench"})
        key: str = made.json()["key"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listing = await http.get("/v1/models", headers={"authorization": f"Bearer {key}"})
            if any(m["id"] == MODEL for m in listing.json().get("data", [])):
                return key
            await asyncio.sleep(0.1)
    raise RuntimeError(f"relaygate did not list {MODEL} within 30 s")


async def run(server: ServeProcess, admin_key: str) -> tuple[Path, Path]:
    upstream = Upstream()
    await upstream.start()
    try:
        key = await set_up(server, admin_key, upstream)
        return await measure(upstream, server.port, key)
    finally:
        await upstream.stop()


def main() -> None:
    tmp = pathlib.Path(tempfile.mkdtemp())
    admin_key = "rg-" + secrets.token_urlsafe(32)
    env = cli_env(tmp, RELAYGATE_ADMIN_KEY=admin_key, RELAYGATE_LOG_LEVEL="warning")
    server = ServeProcess(tmp, env).wait_ready()
    try:
        direct, through = asyncio.run(run(server, admin_key))
    finally:
        server.stop()
    summary = report(direct, through, server)
    OUT.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = OUT / f"streaming-{stamp}.json"
    out.write_text(json.dumps(summary, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
