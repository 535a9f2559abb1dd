"""Console test helpers: a gateway that writes usage records at once, signing in over
HTTP, and reading a page's tables back as text."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from relaygate.db.tables import UsageRecord
from tests.support.gateway import Gateway


@pytest.fixture
def metered(tmp_path: Path) -> Iterator[Gateway]:
    """relaygate writing its usage records every 50 ms, so tests see them quickly."""
    running = Gateway(tmp_path, usage_flush_interval=0.05).start()
    yield running
    running.stop()


def wait_for_usage(gateway: Gateway, requests: int, timeout: float = 10.0) -> None:
    """Wait until the usage API counts ``requests`` requests in the last 7 days."""
    deadline = time.monotonic() + timeout
    while True:
        seen = gateway.admin.get("/admin/api/v1/usage").json()["total"]["requests"]
        if seen >= requests:
            assert seen == requests, f"{seen} requests recorded, expected {requests}"
            return
        assert time.monotonic() < deadline, f"{seen} of {requests} requests recorded"
        time.sleep(0.05)


def past_usage(
    at: datetime,
    *,
    user_id: int,
    key_id: int,
    model: str,
    prompt: int,
    completion: int,
    cost: float | None = None,
) -> UsageRecord:
    """A record of a successful request at ``at``, as the proxy would have written it."""
    return UsageRecord(
        created_at=at,
        user_id=user_id,
        key_id=key_id,
        model=model,
        upstream_model=model,
        path="/v1/chat/completions",
        status=200,
        stream=False,
        latency_ms=120.0,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        cost=cost,
    )


def write_usage(gateway: Gateway, records: Sequence[UsageRecord]) -> None:
    """Store usage records directly: requests on earlier days cannot be made now."""

    async def write() -> None:
        async with gateway.ctx.sessions.begin() as session:
            session.add_all(records)

    gateway.on_loop(write)


def signed_in(
    gateway: Gateway, key: str | None = None, **headers: str
) -> tuple[httpx.Client, httpx.Response]:
    """A client that signed in to the console with ``key`` (default: the admin key), and
    the sign-in answer; the caller closes the client."""
    client = httpx.Client(base_url=gateway.url, follow_redirects=False)
    response = client.post("/ui/login", data={"key": key or gateway.admin_key}, headers=headers)
    return client, response


@contextmanager
def console(gateway: Gateway, key: str | None = None) -> Iterator[httpx.Client]:
    """A client signed in to the console with ``key`` (default: the admin key), closed
    on leaving."""
    client, response = signed_in(gateway, key)
    try:
        assert response.status_code == 303, response.text
        yield client
    finally:
        client.close()


def csrf_of(client: httpx.Client, path: str = "/ui/account") -> str:
    """The session's CSRF token, read from a console page."""
    found = re.search(r'data-csrf="([^"]+)"', client.get(path).text)
    assert found, f"no CSRF token on {path}"
    return found.group(1)


class _Tables(HTMLParser):
    def __init__(self, table_id: str):
        super().__init__()
        self.table_id = table_id
        self.depth = 0  # tables open inside the wanted one, itself included
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and (self.depth or dict(attrs).get("id") == self.table_id):
            self.depth += 1
        elif self.depth == 1 and tag == "tr":
            self.rows.append([])
        elif self.depth == 1 and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self.depth:
            self.depth -= 1
        elif self.depth == 1 and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def table_rows(html: str, table_id: str) -> list[list[str]]:
    """The text of every row's cells (head, body and foot) of the table ``table_id``."""
    parser = _Tables(table_id)
    parser.feed(html)
    parser.close()
    assert parser.rows, f"no table {table_id!r} in the page"
    return parser.rows
