"""Fixtures of the batch tests: an upstream that counts each request it answered by the
batch line it came from, batch input files, and waiting for a batch to end."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from openai import OpenAI
from sqlalchemy import update
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relaygate.db.tables import Batch
from tests.support.gateway import Gateway
from tests.support.servers import ServerThread

MODEL = "batch-model"


@dataclass
class Counts:
    """What a :class:`BatchUpstream` saw: requests received and answered (completed) per
    tag (the user message of a chat request, the input of an embedding), and the
    statuses to answer a tag with, in turn, before answering it."""

    received: Counter[str] = field(default_factory=Counter)
    completed: Counter[str] = field(default_factory=Counter)
    fail_with: dict[str, list[int]] = field(default_factory=dict)
    status: int | None = None
    """A status to answer every request with (None: answer normally)."""
    delay: float = 0.0
    hold_after: int | None = None
    """Once this many requests were let through, later ones are held (not answered)
    until it is set back to None; a held request whose client leaves is never
    completed."""
    held: set[str] = field(default_factory=set)
    """Tags whose requests wait (unanswered) while they are in the set."""
    passed: int = 0
    """Requests let through the holds so far."""
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _tag(body: dict[str, Any]) -> str:
    if "messages" in body:
        return str(body["messages"][-1]["content"])
    return str(body.get("input", body.get("prompt", "")))


class BatchUpstream:
    """An OpenAI-compatible upstream on loopback serving ``models``: chat completions and
    embeddings answered with usage, each request counted by its tag; a request whose
    client left before its answer (``delay`` seconds) is received but not completed."""

    def __init__(self, models: tuple[str, ...] = (MODEL,)) -> None:
        self.models = models
        self.counts = Counts()
        self.server = ServerThread(self._app())
        self.url = ""

    def _app(self) -> Starlette:
        counts = self.counts

        async def models(_: Request) -> Response:
            data = [{"id": m, "object": "model", "owned_by": "test"} for m in self.models]
            return JSONResponse({"object": "list", "data": data})

        async def answer(request: Request) -> Response:
            body = await request.json()
            tag = _tag(body)
            with counts.lock:
                counts.received[tag] += 1
                counts.in_flight += 1
                counts.most_in_flight = max(counts.most_in_flight, counts.in_flight)
                planned = counts.fail_with.get(tag)
                status = planned.pop(0) if planned else counts.status
            try:
                if counts.delay:
                    await asyncio.sleep(counts.delay)
                while True:
                    with counts.lock:  # let through at most hold_after, counted at once
                        hold = tag in counts.held or (
                            counts.hold_after is not None and counts.passed >= counts.hold_after
                        )
                        if not hold:
                            counts.passed += 1
                            break
                    if await request.is_disconnected():
                        return Response(status_code=499)
                    await asyncio.sleep(0.01)
                if await request.is_disconnected():
                    return Response(status_code=499)
                if status is not None:
                    return JSONResponse(
                        {"error": {"message": f"failing with {status}", "type": "server_error"}},
                        status_code=status,
                        headers={"retry-after": "0"} if status == 429 else None,
                    )
                with counts.lock:
                    counts.completed[tag] += 1
                usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
                if request.url.path.endswith("/embeddings"):
                    return JSONResponse(
                        {
                            "object": "list",
                            "model": body["model"],
                            "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}],
                            "usage": {"prompt_tokens": 7, "total_tokens": 7},
                        }
                    )
                return JSONResponse(
                    {
                        "id": "chatcmpl-" + tag,
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": "echo " + tag},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": usage,
                    }
                )
            finally:
                with counts.lock:
                    counts.in_flight -= 1

        return Starlette(
            routes=[
                Route("/v1/models", models),
                Route("/v1/chat/completions", answer, methods=["POST"]),
                Route("/v1/embeddings", answer, methods=["POST"]),
            ]
        )

    def start(self) -> BatchUpstream:
        self.server.start()
        self.url = self.server.url + "/v1"
        return self

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def upstream() -> Iterator[BatchUpstream]:
    server = BatchUpstream().start()
    yield server
    server.stop()


def chat_lines(count: int, model: str = MODEL, prefix: str = "req") -> bytes:
    """A batch input file of ``count`` chat completions, ``custom_id`` and user message
    ``{prefix}-{n}``."""
    lines = [
        json.dumps(
            {
                "custom_id": f"{prefix}-{n}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": model,
                    "messages": [{"role": "user", "content": f"{prefix}-{n}"}],
                },
            }
        )
        for n in range(count)
    ]
    return ("\n".join(lines) + "\n").encode()


def upload(client: OpenAI, data: bytes, name: str = "input.jsonl") -> str:
    """Upload ``data`` as a batch input file; returns its id."""
    return client.files.create(file=(name, io.BytesIO(data)), purpose="batch").id


def wait_for(
    client: OpenAI, batch_id: str, statuses: tuple[str, ...], seconds: float = 60.0
) -> Any:
    """The batch once its status is one of ``statuses`` (fails after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.status}: {batch}"
        time.sleep(0.1)


def output_lines(client: OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    """The lines of a batch output or error file (none for no file)."""
    if file_id is None:
        return []
    text = client.files.content(file_id).text
    return [json.loads(line) for line in text.splitlines() if line]


@pytest.fixture
def gateway(tmp_path: Any, upstream: BatchUpstream) -> Iterator[Gateway]:
    """relaygate with the upstream added as endpoint ``local``, polling for batch work
    often."""
    gateway = Gateway(tmp_path, batch_poll_interval=0.05, batch_retry_seconds=0.05).start()
    gateway.add_endpoint("local", upstream.url)
    yield gateway
    gateway.stop()


def end_window(gateway: Gateway, batch_id: str) -> None:
    """Move the batch ``batch_id``'s completion window to have ended a second ago."""

    async def write() -> None:
        async with gateway.ctx.sessions.begin() as session:
            await session.execute(
                update(Batch)
                .where(Batch.id == batch_id)
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )

    gateway.on_loop(write)
