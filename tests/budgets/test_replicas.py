"""A budget holds across two real relaygate processes: sharing Redis, and sharing a
PostgreSQL database without Redis. Requests are sent to both at once; the recorded
cost never passes the budget."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.budgets.support import HELLO, PRICE
from tests.conftest import Upstream
from tests.support import databases
from tests.support.process import ServeProcess, cli_env
from tests.support.redis_store import REDIS_URL

API = "/admin/api/v1"


class Replicas:
    """Processes ``a`` and ``b`` on one database (and one Redis prefix when given)."""

    def __init__(self, tmp_path: Path, database_url: str, redis_prefix: str | None):
        self.admin_key = "rg-" + secrets.token_urlsafe(32)
        extra = {"RELAYGATE_REDIS_URL": REDIS_URL or "", "RELAYGATE_REDIS_PREFIX": redis_prefix}
        env = cli_env(
            tmp_path,
            RELAYGATE_DATABASE_URL=database_url,
            RELAYGATE_ADMIN_KEY=self.admin_key,
            RELAYGATE_SECRET_KEY=secrets.token_urlsafe(32),
            RELAYGATE_USAGE_FLUSH_INTERVAL="0.1",
            **({k: v for k, v in extra.items() if v} if redis_prefix else {}),
        )
        self.servers: list[ServeProcess] = []
        self.clients: list[openai.OpenAI] = []
        for _ in range(2):  # one after the other: the first migrates the database
            self.servers.append(ServeProcess(tmp_path, env).wait_ready())
        self.a, self.b = self.servers
        self.admin = httpx.Client(
            base_url=self.a.url, headers={"authorization": f"Bearer {self.admin_key}"}
        )

    def sdk(self, server: ServeProcess, key: str) -> openai.OpenAI:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
        self.clients.append(client)
        return client

    def caught_up(self) -> None:
        """Wait until ``b`` serves the changes made through ``a``."""
        deadline = time.monotonic() + 10
        while _version(self.b) != _version(self.a):
            assert time.monotonic() < deadline, "replica b never caught up"
            time.sleep(0.05)

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.admin.close()
        for server in self.servers:
            server.stop()


def _version(server: ServeProcess) -> int:
    metrics = httpx.get(server.url + "/metrics").text
    found = re.search(r"^relaygate_snapshot_version (\S+)$", metrics, re.M)
    assert found is not None
    return int(float(found.group(1)))


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.skipif(REDIS_URL is None, reason="no Redis")),
        pytest.param(
            "postgres",
            marks=pytest.mark.skipif(databases.SERVER_URL is None, reason="no PostgreSQL"),
        ),
    ]
)
def replicas(
    request: pytest.FixtureRequest, tmp_path: Path, redis_prefix: str
) -> Iterator[Replicas]:
    if request.param == "postgres":
        url = databases.create_postgres_database()
        prefix = None
    else:
        url = databases.database_url(tmp_path)
        prefix = redis_prefix
    running: Replicas | None = None
    try:
        running = Replicas(tmp_path, url, prefix)
        yield running
    finally:
        if running is not None:
            running.stop()
        databases.drop(url)


def _ok(response: httpx.Response) -> Any:
    assert response.status_code < 300, response.text
    return response.json()


def test_a_budget_holds_across_two_replicas(replicas: Replicas, upstream: Upstream) -> None:
    admin = replicas.admin
    _ok(admin.post(f"{API}/endpoints", json={"name": "up", "url": upstream.url}))
    for model in _ok(admin.get(f"{API}/models")):
        prices = {"input_cost_per_million_tokens": PRICE, "output_cost_per_million_tokens": PRICE}
        _ok(admin.patch(f"{API}/models/{model['id']}", json=prices))
    key = _ok(admin.post(f"{API}/keys", json={"name": "shared"}))
    budget = {"budget": 0.1, "budget_period": "daily"}
    assert _ok(admin.patch(f"{API}/keys/{key['id']}", json=budget))["budget"] == 0.1
    replicas.caught_up()
    clients = [replicas.sdk(server, key["key"]) for server in (replicas.a, replicas.b)]

    def one(i: int) -> str:
        try:
            clients[i % 2].chat.completions.create(model="gpt-test", messages=HELLO, max_tokens=4)
        except openai.RateLimitError as exc:
            return str(exc.code)
        return "ok"

    with ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(one, range(50)))
    served = outcomes.count("ok")
    assert served >= 1
    assert outcomes.count("budget_exceeded") == 50 - served
    assert len(upstream.state.requests) == served
    deadline = time.monotonic() + 10
    while True:
        total = _ok(admin.get(f"{API}/usage"))["total"]
        if total["requests"] >= 50 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert total["cost"] == pytest.approx(served * 0.007)
    assert total["cost"] <= 0.1
    [shown] = [k for k in _ok(admin.get(f"{API}/keys")) if k["id"] == key["id"]]
    assert shown["budget_spent"] == pytest.approx(total["cost"])
    for server in replicas.servers:
        assert "Redis failed" not in server.output
