"""Two real relaygate processes on one database share their rate-limit counters through
Redis (RELAYGATE_TEST_REDIS_URL): a limit holds across the replicas, not per process."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Upstream
from tests.support import databases
from tests.support.process import ServeProcess, cli_env
from tests.support.redis_store import REDIS_URL, keys_under, needs_redis

pytestmark = needs_redis
API = "/admin/api/v1"
HELLO: list[Any] = [{"role": "user", "content": "hi"}]


class Pair:
    """Replicas ``a`` and ``b``: one database, one Redis prefix, one admin key."""

    def __init__(self, tmp_path: Path, database_url: str, prefix: str):
        assert REDIS_URL
        self.admin_key = "rg-" + secrets.token_urlsafe(32)
        self.prefix = prefix
        env = cli_env(
            tmp_path,
            RELAYGATE_DATABASE_URL=database_url,
            RELAYGATE_ADMIN_KEY=self.admin_key,
            RELAYGATE_SECRET_KEY=secrets.token_urlsafe(32),
            RELAYGATE_REDIS_URL=REDIS_URL,
            RELAYGATE_REDIS_PREFIX=prefix,
        )
        self.servers: list[ServeProcess] = []
        self.clients: list[openai.OpenAI] = []
        # One after the other: the first start migrates and seeds the database.
        self.a = self._start(tmp_path, env)
        self.b = self._start(tmp_path, env)
        self.admin = httpx.Client(
            base_url=self.a.url, headers={"authorization": f"Bearer {self.admin_key}"}
        )

    def _start(self, tmp_path: Path, env: dict[str, str]) -> ServeProcess:
        server = ServeProcess(tmp_path, env)
        self.servers.append(server)
        return server.wait_ready()

    def sdk(self, server: ServeProcess, key: str) -> openai.OpenAI:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
        self.clients.append(client)
        return client

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        if hasattr(self, "admin"):
            self.admin.close()
        for server in self.servers:
            server.stop()


@pytest.fixture
def pair(tmp_path: Path, redis_prefix: str) -> Iterator[Pair]:
    url = databases.database_url(tmp_path)
    running: Pair | None = None
    try:
        running = Pair(tmp_path, url, redis_prefix)
        yield running
    finally:
        if running is not None:
            running.stop()
        databases.drop(url)


def snapshot_version(server: ServeProcess) -> int:
    metrics = httpx.get(server.url + "/metrics").text
    found = re.search(r"^relaygate_snapshot_version (\S+)$", metrics, re.M)
    assert found is not None
    return int(float(found.group(1)))


def test_a_limit_holds_across_two_replicas(pair: Pair, upstream: Upstream) -> None:
    """Six requests a minute, sent in turn to two replicas: the six pass with one
    countdown between them, then the next is refused by either replica."""
    created = pair.admin.post(f"{API}/endpoints", json={"name": "up", "url": upstream.url})
    assert created.status_code == 201, created.text
    key = pair.admin.post(f"{API}/keys", json={"name": "shared", "requests_per_minute": 6})
    assert key.status_code == 201, key.text
    secret, key_id = key.json()["key"], key.json()["id"]
    # b picks the changes up from the database; wait without spending the key's requests.
    deadline = time.monotonic() + 10
    while snapshot_version(pair.b) != snapshot_version(pair.a):
        assert time.monotonic() < deadline, "replica b never caught up"
        time.sleep(0.1)

    remaining = []
    for server in (pair.a, pair.b) * 3:
        raw = pair.sdk(server, secret).chat.completions.with_raw_response.create(
            model="gpt-test", messages=HELLO
        )
        assert raw.headers["x-ratelimit-limit-requests"] == "6"
        remaining.append(raw.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["5", "4", "3", "2", "1", "0"]
    for server in (pair.a, pair.b):
        with pytest.raises(openai.RateLimitError) as raised:
            pair.sdk(server, secret).chat.completions.create(model="gpt-test", messages=HELLO)
        assert raised.value.body["type"] == "requests"  # type: ignore[index]
        assert raised.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert len(upstream.state.requests) == 6
    counters = keys_under(pair.prefix)
    assert [value for name, value in counters.items() if name.endswith(f":key:{key_id}")] == [
        {"r": "6"}
    ]
    for server in pair.servers:
        assert "Redis failed" not in server.output
