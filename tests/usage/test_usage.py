"""Usage records: tokens as the upstream reported them, written off the request path,
reported by the usage API; metrics, request ids and Server-Timing."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from relaygate.db.tables import UsageRecord
from relaygate.services.usage import prune_once
from tests.conftest import Upstream
from tests.providers.conftest import Running, anthropic_api, anthropic_state  # noqa: F401
from tests.support import databases
from tests.support.gateway import Gateway
from tests.support.process import cli_env, relaygate
from tests.support.providers import AnthropicState, anthropic_model

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    running = Gateway(tmp_path, usage_flush_interval=0.05).start()
    yield running
    running.stop()


@pytest.fixture
def served(gateway: Gateway, upstream: Upstream) -> Gateway:
    gateway.add_endpoint("up", upstream.url)
    return gateway


def records(gateway: Gateway, count: int, timeout: float = 10.0) -> list[UsageRecord]:
    """The usage records once at least ``count`` are written (oldest first)."""

    async def read() -> list[UsageRecord]:
        async with gateway.ctx.sessions() as session:
            return list((await session.scalars(select(UsageRecord).order_by(UsageRecord.id))).all())

    deadline = time.monotonic() + timeout
    while True:
        found = gateway.on_loop(read)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def metric(gateway: Gateway, name: str, **labels: str) -> float:
    text = httpx.get(gateway.url + "/metrics").text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def settled_metric(gateway: Gateway, name: str, value: float, **labels: str) -> float:
    """``name`` once it reads ``value`` (a request's metrics are counted just after its
    last byte went out, so a client can read them a moment before), or after 5 s."""
    deadline = time.monotonic() + 5
    while (found := metric(gateway, name, **labels)) != value and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def test_json_answer_tokens_and_timings_are_recorded(served: Gateway) -> None:
    client = served.openai()
    raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=MESSAGES)
    reply = raw.parse()
    [record] = records(served, 1)
    assert reply.usage is not None
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (
        reply.usage.prompt_tokens,
        reply.usage.completion_tokens,
        reply.usage.total_tokens,
    )
    assert record.model == "gpt-test" and record.upstream_model == "gpt-test"
    assert record.path == "/v1/chat/completions" and record.status == 200
    assert record.stream is False and record.cost is None  # no prices set
    assert record.request_id == raw.headers["x-request-id"]
    assert record.latency_ms > 0 and record.ttfb_ms is not None
    assert record.ttfb_ms <= record.latency_ms
    me = served.admin.get("/admin/api/v1/me").json()
    assert record.user_id == me["user"]["id"] and record.key_id == me["key_id"]


def test_stream_usage_is_asked_for_and_kept_from_a_client_that_did_not(
    served: Gateway, upstream: Upstream
) -> None:
    """relaygate adds stream_options.include_usage, records the usage chunk's tokens, and
    the client — which did not ask — never sees that chunk."""
    client = served.openai()
    chunks = list(client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True))
    assert [c.choices[0].delta.content for c in chunks] == ["c0 ", "c1 ", "c2 ", "c3 ", "c4 "]
    assert all(c.usage is None for c in chunks)
    assert upstream.state.requests[-1].json["stream_options"] == {"include_usage": True}
    [record] = records(served, 1)
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (11, 5, 16)
    assert record.stream is True

    # A client that asked gets the usage chunk, unchanged.
    chunks = list(
        client.chat.completions.create(
            model="gpt-test",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 16
    assert records(served, 2)[1].total_tokens == 16


def test_prices_give_each_record_a_cost_and_the_usage_api_sums_them(
    served: Gateway, upstream: Upstream
) -> None:
    [model] = served.admin.get("/admin/api/v1/models").json()
    patched = served.admin.patch(
        f"/admin/api/v1/models/{model['id']}",
        json={"input_cost_per_million_tokens": 2.5, "output_cost_per_million_tokens": 10},
    )
    assert patched.json()["input_cost_per_million_tokens"] == 2.5
    user = served.create_user("ann")
    key = served.create_key(user_id=user["id"], name="ann-key")["key"]
    client = served.openai(key)
    for _ in range(3):
        client.chat.completions.create(model="gpt-test", messages=MESSAGES)  # 3 in, 4 out
    served.openai().chat.completions.create(model="gpt-test", messages=MESSAGES)
    written = records(served, 4)
    assert written[0].cost == pytest.approx((3 * 2.5 + 4 * 10) / 1e6)

    report = served.admin.get("/admin/api/v1/usage", params={"group_by": "user"}).json()
    rows = {row["name"]: row for row in report["rows"]}
    assert rows["ann"]["requests"] == 3
    assert rows["ann"]["prompt_tokens"] == 9 and rows["ann"]["completion_tokens"] == 12
    assert rows["ann"]["cost"] == pytest.approx(3 * (3 * 2.5 + 4 * 10) / 1e6)
    assert report["total"]["requests"] == 4
    by_model = served.admin.get("/admin/api/v1/usage", params={"group_by": "model"}).json()
    assert [(r["group"], r["requests"]) for r in by_model["rows"]] == [("gpt-test", 4)]
    by_day = served.admin.get("/admin/api/v1/usage", params={"group_by": "day"}).json()
    assert [r["group"] for r in by_day["rows"]] == [datetime.now(UTC).strftime("%Y-%m-%d")]
    for group in ("key", "endpoint"):
        found = served.admin.get("/admin/api/v1/usage", params={"group_by": group}).json()
        assert sum(r["requests"] for r in found["rows"]) == 4
        assert all(r["name"] for r in found["rows"])
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    empty = served.admin.get("/admin/api/v1/usage", params={"from": future})
    assert empty.status_code == 400  # 'from' after the default 'to' (now)

    # Users see their own usage only, and not the admin report.
    own = served.client_for(key).get("/admin/api/v1/me/usage").json()
    assert own["total"]["requests"] == 3
    assert served.client_for(key).get("/admin/api/v1/usage").status_code == 403
    bad = served.admin.get("/admin/api/v1/usage", params={"group_by": "colour"})
    assert bad.status_code == 400


def test_anthropic_messages_tokens_json_and_streamed(
    gateway: Gateway,
    anthropic_api: Running,  # noqa: F811
    anthropic_state: AnthropicState,  # noqa: F811
) -> None:
    anthropic_state.models = [anthropic_model("claude-sonnet-4")]
    gateway.add_endpoint(
        "claude", anthropic_api.url, type="anthropic", api_key=anthropic_state.api_key
    )
    client = gateway.anthropic()
    try:
        message = client.messages.create(model="claude-sonnet-4", max_tokens=32, messages=MESSAGES)  # type: ignore[arg-type]
        with client.messages.stream(
            model="claude-sonnet-4",
            max_tokens=32,
            messages=MESSAGES,  # type: ignore[arg-type]
        ) as stream:
            final = stream.get_final_message()
    finally:
        client.close()
    first, second = records(gateway, 2)
    assert (first.prompt_tokens, first.completion_tokens) == (
        message.usage.input_tokens,
        message.usage.output_tokens,
    )
    assert (second.prompt_tokens, second.completion_tokens) == (
        final.usage.input_tokens,
        final.usage.output_tokens,
    )
    assert second.stream is True and second.path == "/v1/messages"
    assert "stream_options" not in anthropic_state.requests[-1].json


def test_stalled_database_never_blocks_requests_and_drops_are_counted(
    tmp_path: Path, upstream: Upstream
) -> None:
    """With the usage table locked by another transaction, proxied requests are served as
    fast as ever; records beyond the queue's bound are dropped and counted, and every
    request is either written or counted as dropped once the lock goes."""
    gateway = Gateway(tmp_path, usage_queue_size=5, usage_flush_interval=0.05).start()
    try:
        gateway.add_endpoint("up", upstream.url)
        client = gateway.openai()
        client.chat.completions.create(model="gpt-test", messages=MESSAGES)
        assert len(records(gateway, 1)) == 1
        with databases.write_lock(gateway.database_url):
            slowest = 0.0
            for _ in range(20):
                started = time.monotonic()
                client.chat.completions.create(model="gpt-test", messages=MESSAGES)
                slowest = max(slowest, time.monotonic() - started)
            dropped = metric(gateway, "relaygate_usage_dropped_total")
        assert slowest < 2.0  # never waiting on the lock (the writer waits 5 s for it)
        assert dropped >= 10
        written = len(records(gateway, 21 - int(dropped), timeout=15))
        assert written - 1 + metric(gateway, "relaygate_usage_dropped_total") == 20
    finally:
        gateway.stop()


def test_metrics_move_as_requests_are_made(served: Gateway) -> None:
    client = served.openai()
    labels = {"gen_ai_request_model": "gpt-test", "relaygate_endpoint": "up"}
    before = metric(served, "relaygate_requests_total", status="200", **labels)
    for _ in range(3):
        client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    list(client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True))
    total = settled_metric(served, "relaygate_requests_total", before + 4, status="200", **labels)
    assert total == before + 4
    assert metric(served, "gen_ai_client_operation_duration_seconds_count", **labels) == 4
    assert metric(served, "gen_ai_server_time_to_first_token_seconds_count", **labels) == 1
    tokens = metric(served, "relaygate_tokens_total", gen_ai_token_type="input", **labels)
    assert tokens == 3 * 3 + 11
    assert metric(served, "gen_ai_client_token_usage_count", gen_ai_token_type="output") == 4
    assert metric(served, "relaygate_sync_runs_total", relaygate_endpoint="up", status="ok") >= 1
    assert metric(served, "relaygate_snapshot_age_seconds") >= 0
    records(served, 4)
    assert metric(served, "relaygate_usage_written_total") >= 4
    assert metric(served, "relaygate_usage_queue_depth") == 0


def test_request_id_is_taken_or_made_and_returned(served: Gateway, upstream: Upstream) -> None:
    """A client's well-formed x-request-id is returned and recorded, but goes upstream
    only when it is a UUID (else relaygate's own UUID goes); a malformed one is replaced
    by a UUID, sent upstream too."""
    response = served.admin.post(
        "/v1/chat/completions",
        json={"model": "gpt-test", "messages": MESSAGES},
        headers={"x-request-id": "trace-123"},
    )
    assert response.headers["x-request-id"] == "trace-123"
    sent = upstream.state.requests[-1].headers["x-request-id"]
    assert sent != "trace-123" and str(uuid.UUID(sent)) == sent
    given = str(uuid.uuid4())
    served.admin.post(
        "/v1/chat/completions",
        json={"model": "gpt-test", "messages": MESSAGES},
        headers={"x-request-id": given},
    )
    assert upstream.state.requests[-1].headers["x-request-id"] == given
    timing = response.headers["server-timing"]
    assert timing.startswith("relaygate;dur=") and ", upstream;dur=" in timing
    made = served.admin.post(
        "/v1/chat/completions",
        json={"model": "gpt-test", "messages": MESSAGES},
        headers={"x-request-id": "no spaces allowed"},
    )
    assert len(made.headers["x-request-id"]) == 36
    assert made.headers["x-request-id"] == upstream.state.requests[-1].headers["x-request-id"]
    missing = served.admin.post("/v1/chat/completions", json={"model": "nope", "messages": []})
    assert missing.status_code == 404 and len(missing.headers["x-request-id"]) == 36
    assert [r.request_id for r in records(served, 4)][:3] == [
        "trace-123",
        given,
        made.headers["x-request-id"],
    ]


def test_old_records_are_deleted_in_batches(served: Gateway) -> None:
    client = served.openai()
    for _ in range(3):
        client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    records(served, 3)

    async def prune(days: float) -> int:
        return await prune_once(served.ctx, datetime.now(UTC) - timedelta(days=days))

    assert served.on_loop(lambda: prune(1)) == 0
    assert served.on_loop(lambda: prune(-1)) == 3
    assert records(served, 0) == []


def test_usage_cli_prints_a_table(tmp_path: Path, upstream: Upstream) -> None:
    url = databases.database_url(tmp_path, "cli.db")
    secret = secrets.token_urlsafe(32)
    env = cli_env(tmp_path, RELAYGATE_DATABASE_URL=url, RELAYGATE_SECRET_KEY=secret)
    gateway = Gateway(tmp_path, database_url=url, secret_key=secret, usage_flush_interval=0.05)
    gateway.start()
    try:
        gateway.add_endpoint("up", upstream.url)
        gateway.openai().chat.completions.create(model="gpt-test", messages=MESSAGES)
        records(gateway, 1)
    finally:
        gateway.stop()
    try:
        table = relaygate(tmp_path, "usage", "--by", "model", env=env)
        assert table.returncode == 0, table.stderr
        assert "gpt-test" in table.stdout and "REQUESTS" in table.stdout
        bad = relaygate(tmp_path, "usage", "--by", "colour", env=env)
        assert bad.returncode != 0
    finally:
        databases.drop(url)
