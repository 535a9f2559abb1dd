"""Translation's cost: what Messages and Responses through relaygate add, per request and
per streamed chunk, against plain forwarding of chat completions.

Starts a real ``relaygate serve`` (SQLite, its defaults: auth, usage accounting, metrics)
and one loopback upstream that serves only chat completions (``gpt-bench``), registered
through the admin API with ``"messages_api": "translate", "responses_api": "translate"``
(always translated, no 404 probe). The client's key is made through the admin API too.
Each measurement takes the paths in turn, one request each (the order rotating every
round), at concurrency 1, so the machine's noise falls on all of them alike:

- ``direct``: chat completions straight to the upstream (``/v1/chat/completions``);
- ``plain``: chat completions through relaygate, forwarded as they are;
- ``messages``: Anthropic Messages (``/v1/messages``) through relaygate, translated;
- ``responses``: OpenAI Responses (``/v1/responses``, ``store: false``) through relaygate,
  translated.

The four bodies say the same thing (a system prompt, a user turn, an assistant turn with a
tool call, its result and a new question, one function tool); the chat one is the
Messages one as relaygate translates it.

1. Per request, JSON: ``REQUESTS`` (default 2,000) per path after ``WARM_UP`` each; the
   upstream answers a 100-word chat completion. Timed from just before the request is
   written until the whole answer is in.
2. Per streamed chunk: ``STREAMS`` (default 300) streams per path of ``CHUNKS`` (default
   200) chunks that the upstream writes back to back (no pause, one write each), then the
   usage chunk when ``stream_options.include_usage`` asked for it (relaygate always asks),
   then ``data: [DONE]``; and as many one-chunk streams. Timed per stream: to the read that
   completes the first event, and to the one that completes the last. Added per chunk:
   the difference in median time to the last event against ``plain``, divided by
   ``CHUNKS`` (which charges the per-stream cost to the chunks too), and the slope between
   the one-chunk and the ``CHUNKS``-chunk streams (which does not). The upstream writes
   on the loop the client reads on, so no event of a long stream is read before its last
   write (about 1 ms of writes): the one-chunk streams give the time to first event. The
   client's own parsing (:class:`TimedClient`) is inside every time, and grows with the
   bytes a path sends; it is reported apart.
3. In process, no sockets (timeit on this thread's CPU time, so that time spent
   descheduled on the shared machine does not count; ``REPEAT`` repeats, each timing every
   measure in turn for ``SLICE`` seconds; best and median): what relaygate does per chunk
   on either path, fed one event per read, as a paced stream arrives: ``StreamTokens``
   stripping the usage chunk (plain forwarding); ``StreamTokens`` reading usage, plus
   ``EventReader``, plus the direction's ``Stream`` (translation), and each of the three
   alone. Per chunk: the slope between a one-chunk and a ``CHUNKS``-chunk stream. And per
   request: ``request()`` and ``response()`` of the same bodies, alone and with the JSON
   encoding and decoding the proxy adds around them.

    PYTHONPATH=. .venv/bin/python bench/translation.py [REQUESTS] [STREAMS] [CHUNKS]

Prints markdown tables and writes ``bench/out/translation-<UTC time>.json``.

Where the parts run: relaygate in its own process; the upstream and the client share this
process and its event loop (see ``bench/streaming.py``, whose upstream, client and
helpers this reuses). Importing it reads ``sys.argv[1:3]`` as its own counts: harmless,
as this script's arguments are integers too.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import json
import os
import pathlib
import secrets
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from bench import streaming
from bench.streaming import _DONE, _SSE_HEAD, _USAGE, Answer, Client, _chunked, _event, p99
from tests.support.process import ServeProcess, cli_env

from relaygate.proxy.tokens import StreamTokens
from relaygate.translate import messages_to_chat, responses_to_chat
from relaygate.translate.base import SELF_HOSTED, Json
from relaygate.translate.sse import Event, EventReader

REQUESTS = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
STREAMS = int(sys.argv[2]) if len(sys.argv) > 2 else 300
CHUNKS = int(sys.argv[3]) if len(sys.argv) > 3 else 200
WARM_UP = 100
REPEAT = 21
SLICE = 0.02
MODEL = streaming.MODEL
OUT = pathlib.Path(__file__).parent / "out"


# The bodies: one conversation in each API --------------------------------------------------

SYSTEM = (
    "You are a careful assistant for a travel agency. Answer briefly, in plain sentences, "
    "and use the weather tool whenever the user asks about the weather somewhere. "
) * 3
QUESTION = "What is the weather in Paris today?"
CHECKING = "Let me check the forecast."
RESULT = "18 degrees Celsius, cloudy, light wind from the west."
FOLLOW_UP = "And will it rain tomorrow afternoon?"
SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city, e.g. Paris"},
        "day": {"type": "string", "enum": ["today", "tomorrow"]},
    },
    "required": ["city"],
}
DESCRIPTION = "The weather forecast for a city, today or tomorrow."

MESSAGES_BODY: Json = {
    "model": MODEL,
    "max_tokens": 256,
    "system": SYSTEM,
    "messages": [
        {"role": "user", "content": QUESTION},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": CHECKING},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": RESULT},
                {"type": "text", "text": FOLLOW_UP},
            ],
        },
    ],
    "tools": [{"name": "weather", "description": DESCRIPTION, "input_schema": SCHEMA}],
    "temperature": 0.7,
}
RESPONSES_BODY: Json = {
    "model": MODEL,
    "max_output_tokens": 256,
    "instructions": SYSTEM,
    "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": QUESTION}]},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": CHECKING}],
        },
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": RESULT},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": FOLLOW_UP}]},
    ],
    "tools": [
        {"type": "function", "name": "weather", "description": DESCRIPTION, "parameters": SCHEMA}
    ],
    "temperature": 0.7,
    "store": False,
}
CHAT_BODY: Json = messages_to_chat.request(MESSAGES_BODY, MODEL, SELF_HOSTED).body
"""The Messages body as relaygate sends it upstream: what a chat client would send."""


def body(path: str, stream: bool, chunks: int) -> bytes:
    """The request body of ``path`` for a JSON answer, or a stream of ``chunks`` chunks
    (the upstream writes as many chunks as the body's output cap says)."""
    base = {"plain": CHAT_BODY, "direct": CHAT_BODY, "messages": MESSAGES_BODY}.get(
        path, RESPONSES_BODY
    )
    cap = "max_output_tokens" if path == "responses" else "max_tokens"
    payload = {**base, cap: chunks}
    if stream:
        payload["stream"] = True
    return orjson.dumps(payload)


# The upstream -----------------------------------------------------------------------------

ANSWER_TEXT = " ".join(f"w{i}" for i in range(100))
_COMPLETION = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER_TEXT},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 120, "completion_tokens": 100, "total_tokens": 220},
    }
)
ANSWER: Json = orjson.loads(_COMPLETION)
_JSON_ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    + f"content-length: {len(_COMPLETION)}\r\n\r\n".encode()
    + _COMPLETION
)


class Upstream(streaming.Upstream):
    """``bench/streaming.py``'s upstream, answering chat completions as JSON, or as a
    stream of ``max_tokens`` chunks written back to back, one write each (the frames
    built once per length, so that the upstream's own work stays small)."""

    def __init__(self) -> None:
        super().__init__()
        self._frames: dict[int, list[bytes]] = {}
        self.writing_s: list[float] = []
        """Per stream of more than one chunk, the time its writes took (the client waits
        on the same loop meanwhile)."""

    async def _stream(self, writer: asyncio.StreamWriter, payload: dict[str, object]) -> None:
        if payload.get("stream") is not True:
            writer.write(_JSON_ANSWER)
            return
        count = int(payload.get("max_tokens") or CHUNKS)  # type: ignore[call-overload]
        frames = self._frames.get(count)
        if frames is None:
            frames = [_chunked(_event(i, last=i == count - 1)) for i in range(count)]
            frames[0] = _SSE_HEAD + frames[0]
            self._frames[count] = frames
        start = time.perf_counter()
        for frame in frames:
            writer.write(frame)
        if count > 1:
            self.writing_s.append(time.perf_counter() - start)
        options = payload.get("stream_options")
        usage = isinstance(options, dict) and options.get("include_usage") is True
        writer.write((_chunked(_USAGE) if usage else b"") + _chunked(_DONE) + b"0\r\n\r\n")


# The measurements -------------------------------------------------------------------------


class TimedClient(Client):
    """``bench/streaming.py``'s client, keeping a chunked answer that is not an event
    stream as the body (translated JSON answers come chunked, without a length), and
    adding up the time its own parsing of the last answer took (:attr:`parse_s`): it is
    inside the times measured, and grows with the bytes and events a path sends."""

    parse_s = 0.0

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        self.parse_s = 0.0
        answer = await super().post(path, body, headers)
        if not answer.body and not answer.events:
            answer.body = self._sse
        return answer

    def data_received(self, data: bytes) -> None:
        start = time.perf_counter()
        super().data_received(data)
        self.parse_s += time.perf_counter() - start


# What ends each path's stream, and what marks one of its chunks' text.
_LAST = {
    "direct": b"data: [DONE]",
    "plain": b"data: [DONE]",
    "messages": b"event: message_stop\n",
    "responses": b"event: response.completed\n",
}
_TEXT = {
    "direct": b'"delta":{"content"',
    "plain": b'"delta":{"content"',
    "messages": b"event: content_block_delta\n",
    "responses": b"event: response.output_text.delta\n",
}


@dataclass
class Route:
    """One path: its connection, URL path and headers, and what was measured on it."""

    name: str
    client: TimedClient
    url_path: str
    headers: dict[str, str]
    json_s: list[float] = field(default_factory=list)
    server_timing_s: list[float] = field(default_factory=list)
    first_s: dict[int, list[float]] = field(default_factory=dict)
    """Per stream length: time to the first event."""
    last_s: dict[int, list[float]] = field(default_factory=dict)
    """Per stream length: time to the last event."""
    stream_bytes: dict[int, int] = field(default_factory=dict)
    parse_s: list[float] = field(default_factory=list)
    """Per long stream: the client's own parsing time."""
    reads: list[int] = field(default_factory=list)
    """Per long stream: the reads it came in."""
    json_bytes: int = 0

    async def post(self, payload: bytes) -> tuple[Answer, float]:
        answer = await self.client.post(self.url_path, payload, self.headers)
        took = time.perf_counter() - answer.started
        if answer.status != 200:
            raise RuntimeError(f"{self.name}: HTTP {answer.status} {answer.body[:300]!r}")
        translated = "x-relaygate-translated" in answer.headers
        if translated != (self.name in ("messages", "responses")):
            raise RuntimeError(f"{self.name}: translated is {translated}, {answer.headers}")
        return answer, took

    async def json(self, record: bool) -> None:
        answer, took = await self.post(body(self.name, False, 256))
        answer_body = orjson.loads(answer.body)
        text = (
            answer_body.get("content", [{}])[0].get("text")
            if self.name == "messages"
            else answer_body["output"][0]["content"][0]["text"]
            if self.name == "responses"
            else answer_body["choices"][0]["message"]["content"]
        )
        if text != ANSWER_TEXT:
            raise RuntimeError(f"{self.name}: unexpected answer {answer.body[:300]!r}")
        if record:
            self.json_s.append(took)
            self.json_bytes = len(answer.body)
            timing = answer.headers.get("server-timing", "")
            if timing.startswith("relaygate;dur="):
                dur = float(timing.split("=", 1)[1].split(",")[0]) / 1000
                self.server_timing_s.append(dur)

    async def stream(self, chunks: int, record: bool) -> None:
        answer, _ = await self.post(body(self.name, True, chunks))
        events = answer.events
        texts = sum(1 for event in events if _TEXT[self.name] in event)
        if texts != chunks or not events[-1].startswith(_LAST[self.name]):
            raise RuntimeError(f"{self.name}: {texts} text events, ends {events[-1][:80]!r}")
        if record:
            self.first_s.setdefault(chunks, []).append(answer.arrived[0] - answer.started)
            self.last_s.setdefault(chunks, []).append(answer.arrived[-1] - answer.started)
            self.stream_bytes[chunks] = sum(len(event) + 2 for event in events)
            if chunks > 1:
                self.parse_s.append(self.client.parse_s)
                self.reads.append(answer.read_of[-1])


def _rotated(routes: list[Route], i: int) -> list[Route]:
    k = i % len(routes)
    return routes[k:] + routes[:k]


async def measure(routes: list[Route]) -> None:
    for _ in range(WARM_UP):
        for route in routes:
            await route.json(record=False)
            await route.stream(CHUNKS, record=False)
    gc.collect()
    for i in range(REQUESTS):
        for route in _rotated(routes, i):
            await route.json(record=True)
    gc.collect()
    for i in range(STREAMS):
        for route in _rotated(routes, i):
            await route.stream(CHUNKS, record=True)
        for route in _rotated(routes, i + 1):
            await route.stream(1, record=True)


async def set_up(server: ServeProcess, admin_key: str, upstream: Upstream) -> str:
    """Register the upstream as an endpoint that always translates Messages and
    Responses, make an API key, and wait until relaygate lists ``gpt-bench`` to it."""
    admin = {"authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(base_url=server.url, headers=admin, timeout=30) as http:
        fields = {
            "name": "bench",
            "url": upstream.url,
            "messages_api": "translate",
            "responses_api": "translate",
        }
        created = await http.post("/admin/api/v1/endpoints", json=fields)
        assert created.status_code == 201, created.text
        made = await http.post("/admin/api/v1/keys", json={"name": "translationbench"})
        key: str = made.json()["key"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listing = await http.get("/v1/models", headers={"authorization": f"Bearer {key}"})
            if any(m["id"] == MODEL for m in listing.json().get("data", [])):
                return key
            await asyncio.sleep(0.1)
    raise RuntimeError(f"relaygate did not list {MODEL} within 30 s")


async def run(server: ServeProcess, admin_key: str) -> tuple[list[Route], list[float]]:
    """The measurements; returns the routes and the upstream's writing times."""
    upstream = Upstream()
    await upstream.start()
    routes: list[Route] = []
    try:
        key = await set_up(server, admin_key, upstream)
        bearer = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        anthropic = {
            "x-api-key": key,
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
        }
        for name, port, url_path, headers in (
            ("direct", upstream.port, "/v1/chat/completions", {"content-type": "application/json"}),
            ("plain", server.port, "/v1/chat/completions", bearer),
            ("messages", server.port, "/v1/messages", anthropic),
            ("responses", server.port, "/v1/responses", bearer),
        ):
            routes.append(Route(name, await TimedClient.connect(port), url_path, headers))
        await measure(routes)
        return routes, upstream.writing_s
    finally:
        for route in routes:
            route.client.close()
        await upstream.stop()


# In process: the translation alone ---------------------------------------------------------


def _frames(chunks: int) -> list[bytes]:
    """A chat stream of ``chunks`` chunks as the endpoint sends it (usage asked for),
    one event per read."""
    return [_event(i, last=i == chunks - 1) for i in range(chunks)] + [_USAGE, _DONE]


def plain_stream(frames: list[bytes]) -> None:
    """Plain forwarding's work on a stream: reading usage, taking its chunk out."""
    tokens = StreamTokens(strip=True)
    for frame in frames:
        tokens.feed(frame)
    tokens.finish()


def usage_only(frames: list[bytes]) -> None:
    """The translated path's usage reading (``StreamTokens``, not stripping)."""
    tokens = StreamTokens()
    for frame in frames:
        tokens.feed(frame)
    tokens.finish()


def parse_only(frames: list[bytes]) -> None:
    """The ``EventReader`` alone: the translated path's parsing, without a stream."""
    reader = EventReader()
    for frame in frames:
        reader.feed(frame)
    reader.finish()


def translated_stream(frames: list[bytes], make: Callable[[], Any]) -> None:
    """Translation's work on a stream (as ``relaygate.proxy.translation.StreamReply``
    does it, after the proxy's ``StreamTokens``): reading usage, and every event through
    ``make()``'s stream."""
    tokens = StreamTokens()
    reader = EventReader()
    stream = make()
    for frame in frames:
        tokens.feed(frame)
        for event in reader.feed(frame):
            stream.event(event)
    tokens.finish()
    for event in reader.finish():
        stream.event(event)
    stream.end()


def stream_only(events: list[Event], make: Callable[[], Any]) -> None:
    """``make()``'s stream alone, fed events already parsed."""
    stream = make()
    for event in events:
        stream.event(event)
    stream.end()


def _parsed(frames: list[bytes]) -> list[Event]:
    reader = EventReader()
    return [event for frame in frames for event in reader.feed(frame)] + reader.finish()


def _messages_stream() -> Any:
    return messages_to_chat.Stream(MODEL)


def _responses_stream() -> Any:
    return responses_to_chat.Stream(
        MODEL, request=RESPONSES_BODY, response_id="resp_" + "0" * 48, created_at=1
    )


def _messages_request(encode: bool) -> Callable[[], Any]:
    def once() -> Any:
        sent = messages_to_chat.request(MESSAGES_BODY, MODEL, SELF_HOSTED).body
        if encode:
            orjson.dumps(sent)
            return orjson.dumps(messages_to_chat.response(orjson.loads(_COMPLETION), MODEL))
        return messages_to_chat.response(ANSWER, MODEL)

    return once


def _responses_request(encode: bool) -> Callable[[], Any]:
    ident = "resp_" + "0" * 48

    def once() -> Any:
        sent = responses_to_chat.request(RESPONSES_BODY, MODEL, SELF_HOSTED).body
        answer = orjson.loads(_COMPLETION) if encode else ANSWER
        made = responses_to_chat.response(
            answer, MODEL, request=RESPONSES_BODY, response_id=ident, created_at=1
        )
        if encode:
            orjson.dumps(sent)
            return orjson.dumps(made)
        return made

    return once


def _timer(fn: Callable[[], Any]) -> timeit.Timer:
    # This thread's CPU time: time the thread spent descheduled (the machine is shared)
    # does not count.
    return timeit.Timer(fn, timer=time.thread_time)


def _time_all(fns: dict[str, Callable[[], Any]]) -> dict[str, list[float]]:
    """Seconds per call of each of ``fns``, ``REPEAT`` times: each repeat times every
    function in turn (``SLICE`` seconds each), so that noise falls on all alike."""
    numbers = {}
    for name, fn in fns.items():
        number = 1
        while (took := _timer(fn).timeit(number)) < SLICE / 4:
            number *= 4
        numbers[name] = max(1, int(number * SLICE / took))
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(REPEAT):
        for name, fn in fns.items():
            runs[name].append(_timer(fn).timeit(numbers[name]) / numbers[name])
    return runs


def micro() -> dict[str, dict[str, float]]:
    """Seconds, best and median over the repeats, of each in-process measure (see the
    module docstring). Per chunk: the slope between a ``CHUNKS``-chunk stream and a
    one-chunk one, timed side by side in each repeat; per stream, fixed: the one-chunk
    stream less one chunk's slope."""
    long, short = _frames(CHUNKS), _frames(1)
    parsed_long, parsed_short = _parsed(long), _parsed(short)
    per_chunk: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "plain forwarding: StreamTokens, stripping usage": (
            lambda: plain_stream(long),
            lambda: plain_stream(short),
        ),
        "translated, part: StreamTokens, reading usage": (
            lambda: usage_only(long),
            lambda: usage_only(short),
        ),
        "translated, part: EventReader": (lambda: parse_only(long), lambda: parse_only(short)),
        "translated, part: messages Stream": (
            lambda: stream_only(parsed_long, _messages_stream),
            lambda: stream_only(parsed_short, _messages_stream),
        ),
        "translated, part: responses Stream": (
            lambda: stream_only(parsed_long, _responses_stream),
            lambda: stream_only(parsed_short, _responses_stream),
        ),
        "translated Messages, all three": (
            lambda: translated_stream(long, _messages_stream),
            lambda: translated_stream(short, _messages_stream),
        ),
        "translated Responses, all three": (
            lambda: translated_stream(long, _responses_stream),
            lambda: translated_stream(short, _responses_stream),
        ),
    }
    per_request = {
        "Messages: request() + response()": _messages_request(False),
        "Messages: the same, with the JSON the proxy adds": _messages_request(True),
        "Responses: request() + response()": _responses_request(False),
        "Responses: the same, with the JSON the proxy adds": _responses_request(True),
    }
    fns: dict[str, Callable[[], Any]] = {}
    for name, (on_long, on_short) in per_chunk.items():
        fns[name + " (long)"], fns[name + " (short)"] = on_long, on_short
    fns.update(per_request)
    gc.collect()
    runs = _time_all(fns)
    out: dict[str, dict[str, float]] = {}
    for name in per_chunk:
        longs, shorts = runs[name + " (long)"], runs[name + " (short)"]
        slopes = [(a - b) / (CHUNKS - 1) for a, b in zip(longs, shorts, strict=True)]
        fixed = [b - s for b, s in zip(shorts, slopes, strict=True)]
        best = (min(longs) - min(shorts)) / (CHUNKS - 1)
        out[name] = {
            "per_chunk_best": best,
            "per_chunk_median": statistics.median(slopes),
            "per_stream_fixed_best": min(shorts) - best,
            "per_stream_fixed_median": statistics.median(fixed),
        }
    for name in per_request:
        out[name] = {
            "per_request_best": min(runs[name]),
            "per_request_median": statistics.median(runs[name]),
        }
    return out


# The report -------------------------------------------------------------------------------


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def signed_ms(seconds: float) -> str:
    return f"{seconds * 1000:+.3f} ms"


def both(samples: list[float]) -> str:
    """The median, and the p99 in brackets."""
    return f"{ms(statistics.median(samples))} ({ms(p99(samples))})"


def report(
    routes: list[Route], writing_s: list[float], in_process: dict[str, dict[str, float]]
) -> dict[str, Any]:
    by = {route.name: route for route in routes}
    direct, plain = by["direct"], by["plain"]
    med = statistics.median

    print(f"\n**Per request, JSON** ({REQUESTS} per path, concurrency 1, paths alternating)\n")
    print(
        "| path | median | p99 | added to plain, median | added to plain, p99 "
        "| added to direct, median | relaygate's server-timing, median | answer bytes |"
    )
    print("|---|---|---|---|---|---|---|---|")
    json_rows = []
    for route in routes:
        m, p = med(route.json_s), p99(route.json_s)
        timing = ms(med(route.server_timing_s)) if route.server_timing_s else "—"
        print(
            f"| {route.name} | {ms(m)} | {ms(p)} | {signed_ms(m - med(plain.json_s))} "
            f"| {signed_ms(p - p99(plain.json_s))} | {signed_ms(m - med(direct.json_s))} "
            f"| {timing} | {route.json_bytes:,} |"
        )
        json_rows.append({"path": route.name, "median_s": m, "p99_s": p})

    print(
        f"\n**Per streamed chunk** ({STREAMS} streams per path of {CHUNKS} chunks written "
        f"back to back, and {STREAMS} of one chunk; medians, p99 in brackets)\n"
    )
    print(
        f"| path | first event, 1 chunk | last event, 1 chunk | first event, {CHUNKS} chunks "
        f"| last event, {CHUNKS} chunks | added to plain | ÷ {CHUNKS}: added per chunk "
        f"| slope: added per chunk | bytes to the client | reads, median "
        f"| the client's parsing, median |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    n = CHUNKS
    plain_long, plain_short = med(plain.last_s[n]), med(plain.last_s[1])
    stream_rows = []
    for route in routes:
        long, short = route.last_s[n], route.last_s[1]
        added = med(long) - plain_long
        slope = ((med(long) - med(short)) - (plain_long - plain_short)) / (n - 1)
        print(
            f"| {route.name} | {both(route.first_s[1])} | {both(short)} "
            f"| {both(route.first_s[n])} | {both(long)} | {signed_ms(added)} "
            f"| {us(added / n)} | {us(slope)} | {route.stream_bytes[n]:,} "
            f"| {med(route.reads):g} | {ms(med(route.parse_s))} |"
        )
        stream_rows.append(
            {
                "path": route.name,
                "first_event_median_s": med(route.first_s[n]),
                "first_event_p99_s": p99(route.first_s[n]),
                "last_event_median_s": med(long),
                "last_event_p99_s": p99(long),
                "one_chunk_first_event_median_s": med(route.first_s[1]),
                "one_chunk_first_event_p99_s": p99(route.first_s[1]),
                "one_chunk_last_event_median_s": med(short),
                "one_chunk_last_event_p99_s": p99(short),
                "added_per_chunk_vs_plain_s": added / n,
                "slope_added_per_chunk_vs_plain_s": slope,
                "bytes": route.stream_bytes[n],
                "reads_median": med(route.reads),
                "client_parsing_median_s": med(route.parse_s),
            }
        )
    print(
        f"\nThe upstream's {CHUNKS} writes of a stream took {ms(med(writing_s))} (median; "
        "the client, on the same loop, reads nothing meanwhile)."
    )

    print(f"\n**In process** (no sockets; CPU time, best / median of {REPEAT} repeats)\n")
    print("| what | per chunk | per stream, fixed | per request |")
    print("|---|---|---|---|")
    for name, figures in in_process.items():
        cells = []
        for key in ("per_chunk", "per_stream_fixed", "per_request"):
            if f"{key}_best" in figures:
                cells.append(f"{us(figures[f'{key}_best'])} / {us(figures[f'{key}_median'])}")
            else:
                cells.append("")
        print(f"| {name} | {' | '.join(cells)} |")

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "requests": REQUESTS,
        "streams": STREAMS,
        "chunks": CHUNKS,
        "warm_up": WARM_UP,
        "upstream_writing_median_s": med(writing_s),
        "json": json_rows,
        "streamed": stream_rows,
        "in_process_s": in_process,
        "samples_s": {
            route.name: {
                "json": route.json_s,
                "first": route.first_s[n],
                "last": route.last_s[n],
                "first_one_chunk": route.first_s[1],
                "last_one_chunk": route.last_s[1],
            }
            for route in routes
        },
    }


def main() -> None:
    load_before = os.getloadavg()
    tmp = pathlib.Path(tempfile.mkdtemp())
    admin_key = "rg-" + secrets.token_urlsafe(32)
    env = cli_env(tmp, RELAYGATE_ADMIN_KEY=admin_key, RELAYGATE_LOG_LEVEL="warning")
    server = ServeProcess(tmp, env).wait_ready()
    started = time.monotonic()
    try:
        routes, writing_s = asyncio.run(run(server, admin_key))
    finally:
        code = server.stop()
    socket_s = time.monotonic() - started
    load_after_sockets = os.getloadavg()
    in_process = micro()
    summary = report(routes, writing_s, in_process)
    summary["relaygate_exit_code"] = code
    summary["load_average"] = {"before": load_before, "after_sockets": load_after_sockets}
    summary["socket_phase_s"] = socket_s
    print(
        f"\nload average (1, 5, 15 min) before: {load_before}, after the socket runs "
        f"({socket_s:.0f} s): {load_after_sockets}; relaygate exit code {code}"
    )
    OUT.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = OUT / f"translation-{stamp}.json"
    out.write_text(json.dumps(summary, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
