"""Budget alerts: each threshold of a budget alerts once per period, logged and POSTed to
the webhook (retried, never redirected), once across processes, off the request path."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from relaygate.budget import Budget, Window, to_nanos
from relaygate.budget_alerts import BudgetAlerts, prune_budget_rows
from relaygate.budget_stores import Count, Line
from relaygate.changes import unit
from relaygate.db.tables import ApiKey, BudgetAlert, BudgetCounter
from relaygate.metrics import Metrics
from tests.conftest import Upstream
from tests.support.gateway import Clock, Gateway
from tests.support.polling import eventually
from tests.support.servers import ServerThread, free_port

MESSAGES = [{"role": "user", "content": "hi"}]
# The upstream answers 4 completion tokens; at this price each request costs 1.0.
OUTPUT_PRICE = 250_000.0


@dataclass
class ReceiverState:
    """What the webhook receiver saw, and how it answers: ``statuses`` are answered in
    turn (then 200); ``redirect`` answers 302 to ``/elsewhere``; ``hang`` never answers."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    elsewhere: int = 0
    statuses: list[int] = field(default_factory=list)
    redirect: bool = False
    hang: bool = False


def make_receiver(state: ReceiverState) -> Starlette:
    async def hook(request: Request) -> Response:
        state.attempts += 1
        if state.hang:
            await asyncio.sleep(30)
        if state.redirect:
            return RedirectResponse("/elsewhere", status_code=302)
        if state.statuses:
            return Response("try later", status_code=state.statuses.pop(0))
        state.alerts.append(await request.json())
        return JSONResponse({"ok": True})

    async def elsewhere(request: Request) -> Response:
        state.elsewhere += 1
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/hook/secret-token", hook, methods=["POST"]),
            Route("/elsewhere", elsewhere, methods=["GET", "POST"]),
        ]
    )


class Receiver:
    def __init__(self) -> None:
        self.state = ReceiverState()
        self.server = ServerThread(make_receiver(self.state)).start()
        self.url = self.server.url + "/hook/secret-token"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The alerts once ``count`` arrived (or ``timeout`` passed)."""
        deadline = time.monotonic() + timeout
        while len(self.state.alerts) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.state.alerts)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.server.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 12, 1, 12, 0, tzinfo=UTC))


def start(tmp_path: Path, clock: Clock, webhook: str | None, **overrides: Any) -> Gateway:
    gateway = Gateway(tmp_path, clock=clock, budget_alert_webhook_url=webhook, **overrides)
    gateway.app.alert_retry_delay = 0.02
    return gateway.start()


def budgeted_key(
    gateway: Gateway, upstream: Upstream, limit: float = 10.0, period: str = "daily"
) -> tuple[int, str]:
    """An endpoint whose model costs 1.0 a request, and a key of user 'ann' named 'ci'
    with a budget of ``limit`` per ``period``: (the key's id, the key)."""
    gateway.add_endpoint("up", upstream.url)
    [model] = gateway.admin.get("/admin/api/v1/models").json()
    patched = gateway.admin.patch(
        f"/admin/api/v1/models/{model['id']}",
        json={"output_cost_per_million_tokens": OUTPUT_PRICE},
    )
    assert patched.status_code == 200, patched.text
    user = gateway.create_user("ann")
    created = gateway.create_key(user_id=user["id"], name="ci")
    set_budget(gateway, created["id"], limit, period)
    return created["id"], created["key"]


def set_budget(gateway: Gateway, key_id: int, limit: float, period: str) -> None:
    """Set the key's budget in the database (the admin API for it is not here yet)."""

    async def write() -> None:
        async with unit(gateway.ctx) as session:
            key = await session.get(ApiKey, key_id)
            assert key is not None
            key.budget, key.budget_period = limit, period

    gateway.on_loop(write)


def spend(client: openai.OpenAI, requests: int) -> None:
    """Send ``requests`` requests of cost 1.0 each (4 completion tokens, capped so)."""
    for _ in range(requests):
        client.chat.completions.create(model="gpt-test", messages=MESSAGES, max_tokens=4)


def claimed(gateway: Gateway) -> int:
    async def count() -> int:
        async with gateway.ctx.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(BudgetAlert)) or 0)

    return gateway.on_loop(count)


def test_each_threshold_alerts_once_per_period(
    tmp_path: Path, clock: Clock, upstream: Upstream, receiver: Receiver
) -> None:
    """80% and then 100% of a daily budget each POST one alert, in the documented shape;
    further spend and refused requests add none; the next day alerts again."""
    gateway = start(tmp_path, clock, receiver.url)
    try:
        key_id, key = budgeted_key(gateway, upstream, limit=10.0)
        client = gateway.openai(key)
        spend(client, 7)
        time.sleep(0.3)
        assert receiver.state.alerts == []
        spend(client, 1)  # 8.0: 80%
        [first] = receiver.wait_for(1)
        assert first == {
            "budget": f"key:{key_id}",
            "subject": {"kind": "key", "id": key_id, "name": "ci"},
            "threshold": 0.8,
            "spent": 8.0,
            "limit": 10.0,
            "period": "daily",
            "period_start": "2026-12-01T00:00:00Z",
            "resets_at": "2026-12-02T00:00:00Z",
            "time": "2026-12-01T12:00:00Z",
        }
        spend(client, 1)  # 9.0
        spend(client, 1)  # 10.0: 100%
        alerts = receiver.wait_for(2)
        assert [a["threshold"] for a in alerts] == [0.8, 1.0]
        assert alerts[1]["spent"] == 10.0
        with pytest.raises(openai.RateLimitError):
            spend(client, 1)  # the budget is spent
        time.sleep(0.3)
        assert len(receiver.state.alerts) == 2 and receiver.state.attempts == 2

        clock.move(days=1)
        spend(client, 8)
        alerts = receiver.wait_for(3)
        assert [(a["threshold"], a["period_start"]) for a in alerts[2:]] == [
            (0.8, "2026-12-02T00:00:00Z")
        ]
        assert claimed(gateway) == 3
        assert wait_metric(gateway, "sent", 3) == 3
    finally:
        gateway.stop()


def test_a_failing_receiver_gets_the_alert_after_retries(
    tmp_path: Path, clock: Clock, upstream: Upstream, receiver: Receiver
) -> None:
    """A webhook that answers 500 and then 503 gets the alert on the third attempt."""
    receiver.state.statuses = [500, 503]
    gateway = start(tmp_path, clock, receiver.url, budget_alert_thresholds=[0.5])
    try:
        _, key = budgeted_key(gateway, upstream, limit=4.0)
        spend(gateway.openai(key), 2)
        [alert] = receiver.wait_for(1)
        assert alert["threshold"] == 0.5 and receiver.state.attempts == 3
        # The receiver holds the alert before the gateway has read its answer.
        assert wait_metric(gateway, "sent", 1) == 1 and metric_value(gateway, "failed") == 0
    finally:
        gateway.stop()


def test_a_redirecting_receiver_is_not_followed(
    tmp_path: Path,
    clock: Clock,
    upstream: Upstream,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A webhook answering 302 fails the alert: the URL it names receives nothing, and
    the log names the webhook by host only, never its path (which may hold a token)."""
    receiver.state.redirect = True
    gateway = start(tmp_path, clock, receiver.url, budget_alert_thresholds=[0.5])
    try:
        _, key = budgeted_key(gateway, upstream, limit=4.0)
        spend(gateway.openai(key), 2)
        assert wait_metric(gateway, "failed", 1) == 1
        assert receiver.state.attempts == 1  # a redirect is not retried either
        assert receiver.state.elsewhere == 0
        failure = eventually(  # logged just after it is counted
            lambda: [
                r.getMessage() for r in caplog.records if "could not be sent" in r.getMessage()
            ],
            bool,
        )
        assert failure and "HTTP 302" in failure[0]
        assert all("secret-token" not in r.getMessage() for r in caplog.records)
    finally:
        gateway.stop()


@pytest.mark.parametrize("hang", [False, True], ids=["refused", "hanging"])
def test_an_unreachable_webhook_never_slows_requests(
    tmp_path: Path, clock: Clock, upstream: Upstream, receiver: Receiver, hang: bool
) -> None:
    """Whether the webhook refuses connections or never answers, requests past the
    thresholds are as quick as any and succeed; the alerts are still claimed (one by
    one: behind a webhook that never answers, the first waits out its timeouts)."""
    receiver.state.hang = True
    webhook = receiver.url if hang else f"http://127.0.0.1:{free_port()}/hook"
    gateway = start(tmp_path, clock, webhook, budget_alert_thresholds=[0.1, 0.2, 0.3])
    try:
        _, key = budgeted_key(gateway, upstream, limit=10.0)
        client = gateway.openai(key)
        started = time.monotonic()
        spend(client, 5)
        assert time.monotonic() - started < 3.0
        expected = 1 if hang else 3
        deadline = time.monotonic() + 5
        while claimed(gateway) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert claimed(gateway) == expected
        assert metric_value(gateway, "sent") == 0
    finally:
        started = time.monotonic()
        gateway.stop()
        assert time.monotonic() - started < 8.0  # shutdown gives up on the rest


def test_two_gateways_on_one_database_send_one_alert(
    tmp_path: Path, clock: Clock, upstream: Upstream, receiver: Receiver
) -> None:
    """Two processes that both see a budget pass a threshold send one alert between
    them: the first to claim it in the database."""
    first = start(tmp_path, clock, receiver.url, budget_alert_thresholds=[0.5])
    second: Gateway | None = None
    try:
        key_id, key = budgeted_key(first, upstream, limit=4.0)
        second = start(
            tmp_path,
            clock,
            receiver.url,
            budget_alert_thresholds=[0.5],
            database_url=first.database_url,
            admin_key=first.admin_key,
            secret_key=first.settings.secret_key,
        )
        spend(first.openai(key), 2)
        receiver.wait_for(1)
        # The second process's own counter (in its memory, rebuilt from the usage
        # records) also passes 50%: its claim finds the row and it sends nothing.
        wait_recorded(second, 2)
        spend(second.openai(key), 1)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and len(receiver.state.alerts) < 2:
            time.sleep(0.05)
        assert [a["budget"] for a in receiver.state.alerts] == [f"key:{key_id}"]
        labels = {"kind": "key", "id": str(key_id), "name": "ci"}
        assert second.app.metrics.registry.get_sample_value("relaygate_budget_spent", labels) == 3.0
        deadline = time.monotonic() + 10
        while metric_value(first, "sent") + metric_value(second, "sent") < 1:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert metric_value(first, "sent") + metric_value(second, "sent") == 1
    finally:
        if second is not None:
            second.stop()
        first.stop()


def wait_recorded(gateway: Gateway, count: int) -> None:
    """Wait until ``count`` usage records are written (a new counter is rebuilt from them)."""
    from relaygate.db.tables import UsageRecord

    async def written() -> int:
        async with gateway.ctx.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(UsageRecord)) or 0)

    deadline = time.monotonic() + 10
    while gateway.on_loop(written) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def test_ended_counters_and_old_alerts_are_pruned(tmp_path: Path, clock: Clock) -> None:
    """Counters whose window ended over 7 days ago and alerts claimed over 400 days ago
    are deleted; a recent counter, a total one and a recent alert stay."""
    gateway = start(tmp_path, clock, None)
    try:
        now = clock.now
        old = datetime.now(UTC) - timedelta(days=401)

        async def fill() -> None:
            async with gateway.ctx.engine.begin() as connection:
                await connection.execute(
                    BudgetCounter.__table__.insert(),
                    [
                        {
                            "name": "key:1:old",
                            "spent": 1,
                            "reserved": 0,
                            "ends_at": now - timedelta(days=8),
                        },
                        {
                            "name": "key:1:recent",
                            "spent": 1,
                            "reserved": 0,
                            "ends_at": now - timedelta(days=6),
                        },
                        {"name": "key:1:0", "spent": 1, "reserved": 0, "ends_at": None},
                    ],
                )
                await connection.execute(
                    BudgetAlert.__table__.insert(),
                    [
                        {"counter": "key:1:old", "threshold": 0.8, "created_at": old},
                        {"counter": "key:1:old", "threshold": 1.0, "created_at": old},
                        {"counter": "key:1:recent", "threshold": 0.8, "created_at": now},
                    ],
                )

        gateway.on_loop(fill)
        assert gateway.on_loop(lambda: prune_budget_rows(gateway.ctx, now)) == (1, 2)

        async def left() -> tuple[list[str], list[str]]:
            async with gateway.ctx.sessions() as session:
                counters = list(await session.scalars(select(BudgetCounter.name)))
                alerts = list(await session.scalars(select(BudgetAlert.counter)))
            return sorted(counters), alerts

        assert gateway.on_loop(left) == (["key:1:0", "key:1:recent"], ["key:1:recent"])
    finally:
        gateway.stop()


def wait_metric(gateway: Gateway, outcome: str, count: float, timeout: float = 10.0) -> float:
    """The alerts counted with ``outcome`` once they reach ``count`` (or ``timeout`` s
    passed): the count moves only after the gateway has read the receiver's answer."""
    deadline = time.monotonic() + timeout
    while metric_value(gateway, outcome) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return metric_value(gateway, outcome)


def metric_value(gateway: Gateway, outcome: str) -> float:
    return float(
        gateway.app.metrics.registry.get_sample_value(
            "relaygate_budget_alerts_total", {"outcome": outcome}
        )
        or 0.0
    )


# check() itself.

DAILY = Budget("key", 1, "ci", 10.0, "daily")
WINDOW = DAILY.window(datetime(2026, 12, 1, tzinfo=UTC))
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def seen(alerts: BudgetAlerts) -> list[float]:
    out = []
    while not alerts.queue.empty():
        out.append(alerts.queue.get_nowait().threshold)
    return out


def test_check_queues_each_threshold_reached_once() -> None:
    """A settlement that jumps past two thresholds queues both; repeats queue nothing;
    a budget of 0 never alerts."""
    alerts = BudgetAlerts([0.5, 0.8, 1.0], Metrics())
    line = Line(DAILY, WINDOW)
    alerts.check(line, Count(to_nanos(4.9), 0), NOW)
    assert seen(alerts) == []
    alerts.check(line, Count(to_nanos(8.0), 0), NOW)
    assert seen(alerts) == [0.5, 0.8]
    alerts.check(line, Count(to_nanos(9.0), 0), NOW)
    alerts.check(line, Count(to_nanos(12.0), 0), NOW)
    alerts.check(line, Count(to_nanos(13.0), 0), NOW)
    assert seen(alerts) == [1.0]
    zero = Budget("key", 2, "free", 0.0, "daily")
    alerts.check(Line(zero, zero.window(NOW)), Count(0, 0), NOW)
    assert seen(alerts) == []


def test_check_drops_past_the_bound_and_counts_it() -> None:
    """Past the queue's bound alerts are dropped and counted as ``dropped``."""
    metrics = Metrics()
    alerts = BudgetAlerts([1.0], metrics, max_queued=2)
    for subject in range(5):
        budget = Budget("user", subject, f"u{subject}", 1.0, "total")
        alerts.check(
            Line(budget, Window(f"user:{subject}:0", budget.window(NOW).start, None)),
            Count(to_nanos(1.0), 0),
            NOW,
        )
    assert alerts.queue.qsize() == 2
    assert (
        metrics.registry.get_sample_value("relaygate_budget_alerts_total", {"outcome": "dropped"})
        == 3
    )
