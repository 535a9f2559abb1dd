"""Upstreams that frame their streams every way SSE allows, never end an event, or list
far too much: relaygate counts what it can, passes every byte on, and stays bounded."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway import Gateway
from tests.support.hostile import lifespan, whole_body
from tests.support.servers import ServerThread

BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "stream": True}


class StreamingUpstream:
    """Lists ``gpt-test`` and answers chat completions with ``chunks`` as an event
    stream, one chunk per send, ``pause`` seconds apart; ``asked`` records the bodies."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.pause = 0.0
        self.listing: bytes | None = None
        self.asked: list[dict[str, Any]] = []
        self.server = ServerThread(self).start()
        self.url = self.server.url + "/v1"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if await lifespan(scope, receive, send):
            return
        body = await whole_body(receive)
        if scope["path"] == "/v1/models":
            listing = (
                self.listing
                or json.dumps(
                    {"object": "list", "data": [{"id": "gpt-test", "object": "model"}]}
                ).encode()
            )
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": listing})
            return
        self.asked.append(json.loads(body))
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk in self.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await asyncio.sleep(self.pause)
        await send({"type": "http.response.body", "body": b""})

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def streaming() -> Iterator[StreamingUpstream]:
    server = StreamingUpstream()
    yield server
    server.stop()


def framed(end: bytes) -> list[bytes]:
    """An OpenAI chat stream (two content chunks, the usage chunk, [DONE]) with every line
    ended by ``end``, cut into 7-byte pieces so events and line ends straddle chunks."""
    events = [
        {"choices": [{"index": 0, "delta": {"content": "hel"}}]},
        {"choices": [{"index": 0, "delta": {"content": "lo"}}]},
        {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 2}},
    ]
    text = b"".join(b"data: " + json.dumps(e).encode() + end + end for e in events)
    text += b"data: [DONE]" + end + end
    return [text[i : i + 7] for i in range(0, len(text), 7)]


def usage_of(gateway: Gateway) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        report = gateway.admin.get("/admin/api/v1/usage", params={"group_by": "model"}).json()
        if report["total"]["requests"] or time.monotonic() > deadline:
            total: dict[str, Any] = report["total"]
            return total
        time.sleep(0.1)


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_every_sse_framing_is_counted_and_the_injected_usage_kept_back(
    tmp_path: Path, streaming: StreamingUpstream, end: bytes
) -> None:
    """A stream framed with LF, CRLF or CR line ends (all valid SSE) reaches the client
    event by event, its tokens are counted, and the usage chunk relaygate asked for on
    the client's behalf never reaches the client."""
    gateway = Gateway(tmp_path, usage_flush_interval=0.05).start()
    try:
        gateway.add_endpoint("up", streaming.url)
        streaming.chunks = framed(end)
        streaming.pause = 0.02
        seen: list[tuple[float, bytes]] = []
        with httpx.stream(
            "POST",
            gateway.url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {gateway.admin_key}"},
            json=BODY,
            timeout=10,
        ) as response:
            assert response.status_code == 200
            for piece in response.iter_raw():
                seen.append((time.monotonic(), piece))
        text = b"".join(piece for _, piece in seen).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        assert b'"usage"' not in text
        assert text.count(b"data: ") == 3 and text.endswith(b"data: [DONE]\n\n")
        assert len(seen) >= 3, "held back instead of passed on event by event"
        assert streaming.asked[0]["stream_options"] == {"include_usage": True}
        total = usage_of(gateway)
        assert (total["prompt_tokens"], total["completion_tokens"]) == (11, 2)
    finally:
        gateway.stop()


def test_an_event_that_never_ends_passes_through_uncounted(
    tmp_path: Path, streaming: StreamingUpstream
) -> None:
    """An upstream that never ends its event: relaygate holds at most max_event_bytes of
    it, then passes every byte through as it comes (usage uncounted, a metric counts the
    stream), and the client gets the whole of it."""
    gateway = Gateway(tmp_path, max_event_bytes=256 * 1024).start()
    try:
        gateway.add_endpoint("up", streaming.url)
        streaming.chunks = [b'data: {"choices": [], "usage": {"x": "'] + [b"y" * 65536] * 80
        received = 0
        first_at = None
        began = time.monotonic()
        with httpx.stream(
            "POST",
            gateway.url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {gateway.admin_key}"},
            json=BODY,
            timeout=30,
        ) as response:
            for piece in response.iter_raw():
                received += len(piece)
                first_at = first_at or time.monotonic()
        assert received == sum(len(c) for c in streaming.chunks)
        assert first_at is not None and first_at - began < 2
        metrics = gateway.admin.get("/metrics").text
        assert "relaygate_usage_unread_streams_total 1.0" in metrics
    finally:
        gateway.stop()


def test_a_huge_listing_is_a_sync_error(tmp_path: Path, streaming: StreamingUpstream) -> None:
    """A model listing over max_listing_bytes is a sync error naming the limit, not a
    process holding it whole."""
    gateway = Gateway(tmp_path, max_listing_bytes=1024 * 1024).start()
    try:
        padding = "x" * (3 * 1024 * 1024)
        streaming.listing = json.dumps(
            {"object": "list", "data": [{"id": "gpt-test", "pad": padding}]}
        ).encode()
        endpoint = gateway.add_endpoint("big", streaming.url)
        assert endpoint["sync"]["status"] == "error"
        assert "max_listing_bytes" in endpoint["sync"]["error"]
    finally:
        gateway.stop()


def test_a_listing_of_too_many_models_is_a_sync_error(
    tmp_path: Path, streaming: StreamingUpstream
) -> None:
    """A listing of 100,000 models (more than max_listing_models) fails its sync with a
    message saying what to do; the endpoint keeps no half catalogue."""
    gateway = Gateway(tmp_path).start()
    try:
        streaming.listing = json.dumps(
            {"object": "list", "data": [{"id": f"m-{i}"} for i in range(100_000)]}
        ).encode()
        endpoint = gateway.add_endpoint("many", streaming.url)
        assert endpoint["sync"]["status"] == "error"
        assert "max_listing_models" in endpoint["sync"]["error"]
        assert endpoint["sync"]["models_online"] == 0
    finally:
        gateway.stop()
