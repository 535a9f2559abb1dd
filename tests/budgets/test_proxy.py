"""Budgets as clients see them, through the official openai SDK: reserved before a
request is forwarded, settled to its cost after, refused with ``budget_exceeded`` once
spent — in one process, with the counters in Redis, and in PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.budgets.support import (
    HELLO,
    price_models,
    recorded_cost,
    set_budget,
    settled,
    standing,
)
from tests.conftest import Upstream
from tests.support import databases
from tests.support.gateway import Clock, Gateway
from tests.support.redis_store import REDIS_URL, UNREACHABLE_URL, needs_redis

API = "/admin/api/v1"
needs_postgres = pytest.mark.skipif(
    databases.SERVER_URL is None or databases.ON_POSTGRES,
    reason="RELAYGATE_TEST_DATABASE_URL is not set, or the whole suite runs on PostgreSQL",
)


@pytest.fixture(
    params=[
        "default",
        pytest.param("redis", marks=needs_redis),
        pytest.param("postgres", marks=needs_postgres),
    ]
)
def budgeted(
    request: pytest.FixtureRequest, tmp_path: Path, upstream: Upstream, redis_prefix: str
) -> Iterator[Gateway]:
    """relaygate serving a priced ``gpt-test``, its budget counters where the backend
    keeps them: in the process on SQLite (in the database when the suite runs on
    PostgreSQL), in Redis, or in a PostgreSQL database without Redis."""
    options: dict[str, Any] = {"usage_flush_interval": 0.1}
    if request.param == "redis":
        options |= {"redis_url": REDIS_URL, "redis_prefix": redis_prefix}
    if request.param == "postgres":
        options["database_url"] = databases.create_postgres_database()
    gateway = Gateway(tmp_path, clock=Clock(), **options).start()
    try:
        gateway.add_endpoint("up", upstream.url)
        price_models(gateway)
        yield gateway
    finally:
        gateway.stop()
        if request.param == "postgres":
            databases.drop(options["database_url"])


@pytest.fixture
def clocked(tmp_path: Path, upstream: Upstream) -> Iterator[tuple[Gateway, Clock]]:
    clock = Clock()
    gateway = Gateway(tmp_path, clock=clock, usage_flush_interval=0.1).start()
    gateway.add_endpoint("up", upstream.url)
    price_models(gateway)
    yield gateway, clock
    gateway.stop()


def new_key(
    gateway: Gateway, user: dict[str, Any] | None = None, name: str = "ci"
) -> dict[str, Any]:
    fields: dict[str, Any] = {"name": name}
    if user is not None:
        fields["user_id"] = user["id"]
    return gateway.create_key(**fields)


def chat(gateway: Gateway, key: str, **options: Any) -> Any:
    return gateway.openai(key).chat.completions.create(
        model=options.pop("model", "gpt-test"), messages=HELLO, **options
    )


def refusal(gateway: Gateway, key: str, **options: Any) -> openai.RateLimitError:
    with pytest.raises(openai.RateLimitError) as raised:
        chat(gateway, key, **options)
    return raised.value


def test_concurrent_requests_never_spend_more_than_the_budget(budgeted: Gateway) -> None:
    """50 requests at once with max_tokens set, on a key whose budget holds a handful:
    the recorded cost never passes the budget, every other request is refused with
    budget_exceeded, and once all are answered nothing is left reserved."""
    key = new_key(budgeted)
    set_budget(budgeted, "key", key["id"], 0.1)
    client = budgeted.openai(key["key"])

    def one(_: int) -> str:
        try:
            client.chat.completions.create(model="gpt-test", messages=HELLO, max_tokens=4)
        except openai.RateLimitError as exc:
            return str(exc.code)
        return "ok"

    with ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(one, range(50)))
    served = outcomes.count("ok")
    assert served >= 1
    assert outcomes.count("budget_exceeded") == 50 - served
    cost = recorded_cost(budgeted, served)
    assert cost == pytest.approx(served * 0.007)
    assert cost <= 0.1
    after = settled(budgeted, "key", key["id"])
    assert after.reserved == 0
    assert after.spent == pytest.approx(cost)
    assert after.left == pytest.approx(0.1 - cost)


def test_refusal_names_the_budget_what_is_left_and_when_it_resets(budgeted: Gateway) -> None:
    """A request that does not fit is a 429 of type insufficient_quota, code
    budget_exceeded, naming the key's budget, what is left and the reset, with
    Retry-After until the next midnight (UTC); /v1/models still answers."""
    key = new_key(budgeted, name="batch-job")
    set_budget(budgeted, "key", key["id"], 0.04)
    chat(budgeted, key["key"], max_tokens=4)
    chat(budgeted, key["key"], max_tokens=4)
    error = refusal(budgeted, key["key"], max_tokens=4)
    assert error.status_code == 429
    body = error.body
    assert isinstance(body, dict)
    assert (body["type"], body["code"]) == ("insufficient_quota", "budget_exceeded")
    message = body["message"]
    assert "API key 'batch-job'" in message and "daily budget is 0.04" in message
    assert "0.026 is left" in message
    assert "resets at 2031-01-16T00:00:00Z" in message
    assert error.response.headers["retry-after"] == str(12 * 3600)
    listing = budgeted.openai(key["key"]).models.list()
    assert [m.id for m in listing.data] == ["gpt-test"]


def test_a_streamed_request_is_settled_from_its_final_usage(budgeted: Gateway) -> None:
    key = new_key(budgeted)
    set_budget(budgeted, "key", key["id"], 1.0)
    stream = budgeted.openai(key["key"]).chat.completions.create(
        model="gpt-test", messages=HELLO, stream=True, max_tokens=50
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    after = settled(budgeted, "key", key["id"])
    # The upstream's usage chunk: 11 prompt and 5 completion tokens.
    assert after.spent == pytest.approx(0.016)
    assert after.reserved == 0


def test_the_spend_is_in_before_the_answer_ends(budgeted: Gateway) -> None:
    """The reservation is settled before the client can hold the whole answer: once the
    SDK returns it (JSON, or a stream read to its ``[DONE]``, where the openai SDK stops
    reading), the budget already shows its cost and nothing reserved, without waiting.
    Each of the three budget stores is asked (default, Redis, PostgreSQL)."""
    key = new_key(budgeted)
    set_budget(budgeted, "key", key["id"], 1.0)
    chat(budgeted, key["key"], max_tokens=4)
    after = standing(budgeted, "key", key["id"])
    assert (after.reserved, after.spent) == (0, pytest.approx(0.007))
    stream = budgeted.openai(key["key"]).chat.completions.create(
        model="gpt-test", messages=HELLO, stream=True, max_tokens=50
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    after = standing(budgeted, "key", key["id"])
    assert (after.reserved, after.spent) == (0, pytest.approx(0.007 + 0.016))


def test_a_failed_request_releases_its_reservation(budgeted: Gateway, upstream: Upstream) -> None:
    key = new_key(budgeted)
    set_budget(budgeted, "key", key["id"], 1.0)
    upstream.state.fail_status = 500
    with pytest.raises(openai.InternalServerError):
        chat(budgeted, key["key"], max_tokens=100)
    after = settled(budgeted, "key", key["id"])
    assert (after.reserved, after.spent) == (0, 0)


def test_a_stream_cancelled_midway_is_charged_its_reservation(
    budgeted: Gateway, upstream: Upstream
) -> None:
    """A client that stops a stream after its answer began cannot get the tokens for
    free: no usage arrived, so the whole reservation is charged (and released as such)."""
    key = new_key(budgeted)
    set_budget(budgeted, "key", key["id"], 1.0)
    upstream.state.hold_stream = threading.Event()
    with httpx.stream(
        "POST",
        budgeted.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {key['key']}"},
        json={"model": "gpt-test", "messages": HELLO, "stream": True, "max_tokens": 100},
        timeout=10,
    ) as response:
        assert response.status_code == 200
        lines = response.iter_lines()  # kept: a dropped iterator closes the response
        first = next(lines)
        assert first.startswith("data: ")
        held = standing(budgeted, "key", key["id"])
        assert held.reserved > 0
    assert upstream.state.stream_cancelled.wait(5)
    after = settled(budgeted, "key", key["id"])
    assert after.reserved == 0
    assert after.spent == pytest.approx(held.reserved)


def test_user_and_group_budgets_refuse_a_key_without_its_own(
    budgeted: Gateway, second_upstream: Upstream
) -> None:
    """A key with no budget is refused by its user's; another user's key, by a group
    budget shared with a fellow member — and only on the models that group grants."""
    ann = budgeted.create_user("ann")
    ann_key = new_key(budgeted, ann)["key"]
    set_budget(budgeted, "user", ann["id"], 0.04)
    chat(budgeted, ann_key, max_tokens=4)
    chat(budgeted, ann_key, max_tokens=4)
    error = refusal(budgeted, ann_key, max_tokens=4)
    assert "user 'ann'" in str(error.body)

    second_upstream.state.models = ["other-model"]
    budgeted.add_endpoint("other", second_upstream.url)
    price_models(budgeted)
    team = budgeted.admin.post(f"{API}/groups", json={"name": "team"}).json()
    [model] = [
        m for m in budgeted.admin.get(f"{API}/models").json() if m["upstream_id"] == "gpt-test"
    ]
    assert budgeted.admin.put(f"{API}/groups/{team['id']}/models/{model['id']}").status_code < 300
    bob, cy = budgeted.create_user("bob"), budgeted.create_user("cy")
    for user in (bob, cy):
        added = budgeted.admin.put(f"{API}/groups/{team['id']}/users/{user['id']}")
        assert added.status_code < 300
    set_budget(budgeted, "group", team["id"], 0.04)
    bob_key, cy_key = new_key(budgeted, bob)["key"], new_key(budgeted, cy)["key"]
    chat(budgeted, bob_key, max_tokens=4)
    chat(budgeted, cy_key, max_tokens=4)
    error = refusal(budgeted, bob_key, max_tokens=4)
    assert "group 'team'" in str(error.body)
    refusal(budgeted, cy_key, max_tokens=4)
    # The group grants gpt-test only: other-model is outside its budget.
    assert chat(budgeted, cy_key, model="other-model", max_tokens=4).choices


def test_a_new_period_resets_a_budget_and_total_never_does(
    clocked: tuple[Gateway, Clock],
) -> None:
    gateway, clock = clocked
    daily, total = new_key(gateway, name="daily"), new_key(gateway, name="total")
    set_budget(gateway, "key", daily["id"], 0.04, "daily")
    set_budget(gateway, "key", total["id"], 0.04, "total")
    for key in (daily, total):
        chat(gateway, key["key"], max_tokens=4)
        chat(gateway, key["key"], max_tokens=4)
        refusal(gateway, key["key"], max_tokens=4)
    error = refusal(gateway, total["key"], max_tokens=4)
    assert "retry-after" not in error.response.headers
    assert "does not reset by itself" in str(error.body)
    clock.move(hours=12)  # midnight UTC: a new day
    assert chat(gateway, daily["key"], max_tokens=4).choices
    refusal(gateway, total["key"], max_tokens=4)
    assert settled(gateway, "key", daily["id"]).spent == pytest.approx(0.007)


def test_spend_is_rebuilt_from_usage_records_after_a_restart(
    tmp_path: Path, upstream: Upstream
) -> None:
    """A budget's counter lives in the process on SQLite: a restarted relaygate finds
    the spend again in the usage records."""
    url = databases.database_url(tmp_path)
    first = Gateway(tmp_path, database_url=url, usage_flush_interval=0.1).start()
    try:
        first.add_endpoint("up", upstream.url)
        price_models(first)
        key = new_key(first)
        set_budget(first, "key", key["id"], 0.04)
        chat(first, key["key"], max_tokens=4)
        chat(first, key["key"], max_tokens=4)
        recorded_cost(first, 2)
    finally:
        first.stop()
    settings = first.settings.model_dump()
    second = Gateway(
        tmp_path,
        database_url=url,
        admin_key=first.admin_key,
        secret_key=settings["secret_key"],
    ).start()
    try:
        second.admin_key = first.admin_key
        assert standing(second, "key", key["id"]).spent == pytest.approx(0.014)
        refusal(second, key["key"], max_tokens=4)
    finally:
        second.stop()
        databases.drop(url)


def test_free_models_never_consume_a_budget(budgeted: Gateway) -> None:
    key = new_key(budgeted)
    set_budget(budgeted, "key", key["id"], 0.0)
    refusal(budgeted, key["key"], max_tokens=4)
    price_models(budgeted, None)
    for _ in range(3):
        assert chat(budgeted, key["key"], max_tokens=4).choices
    assert settled(budgeted, "key", key["id"]).spent == 0


def test_choices_and_a_missing_cap_are_reserved_in_full(tmp_path: Path, upstream: Upstream) -> None:
    """A caller cannot shrink its reservation: ``n`` choices multiply the cap, a request
    with no cap reserves the budget_output_tokens default, a huge cap is refused, and a
    large prompt is counted by its bytes."""
    gateway = Gateway(tmp_path, budget_output_tokens=100).start()
    try:
        gateway.add_endpoint("up", upstream.url)
        price_models(gateway)
        key = new_key(gateway)
        set_budget(gateway, "key", key["id"], 0.08)
        forwarded = len(upstream.state.requests)
        refusal(gateway, key["key"], max_tokens=10, n=8)  # 80 completion tokens
        refusal(gateway, key["key"])  # no cap: 100 tokens
        refusal(gateway, key["key"], max_tokens=2**62)
        # The largest of the caps stated counts, whatever its JSON type.
        refusal(gateway, key["key"], max_completion_tokens=1, max_tokens=1000)
        refusal(gateway, key["key"], extra_body={"max_tokens": 1000.0})
        refusal(gateway, key["key"], extra_body={"max_tokens": "1000"})
        with pytest.raises(openai.RateLimitError):
            gateway.openai(key["key"]).chat.completions.create(
                model="gpt-test", messages=[{"role": "user", "content": "x" * 300}], max_tokens=1
            )
        assert len(upstream.state.requests) == forwarded  # none of them went out
        assert chat(gateway, key["key"], max_tokens=10).choices
    finally:
        gateway.stop()


@needs_redis
@pytest.mark.parametrize("failure", ["closed", "open"])
def test_redis_down_fails_closed_or_open_as_set(
    tmp_path: Path, upstream: Upstream, failure: str
) -> None:
    gateway = Gateway(
        tmp_path, redis_url=UNREACHABLE_URL, budget_store_failure=failure, redis_timeout=0.2
    ).start()
    try:
        gateway.add_endpoint("up", upstream.url)
        price_models(gateway)
        key = new_key(gateway)
        set_budget(gateway, "key", key["id"], 1.0)
        unbudgeted = new_key(gateway, name="free")["key"]
        assert chat(gateway, unbudgeted, max_tokens=4).choices  # no budget: not affected
        if failure == "closed":
            with pytest.raises(openai.InternalServerError) as raised:
                chat(gateway, key["key"], max_tokens=4)
            assert raised.value.status_code == 503
            assert raised.value.code == "budget_store_unavailable"
        else:
            assert chat(gateway, key["key"], max_tokens=4).choices
    finally:
        gateway.stop()


@needs_redis
def test_an_emptied_redis_rebuilds_spend_from_usage_records(
    tmp_path: Path, upstream: Upstream, redis_prefix: str
) -> None:
    from tests.support.redis_store import delete_under

    gateway = Gateway(
        tmp_path, redis_url=REDIS_URL, redis_prefix=redis_prefix, usage_flush_interval=0.1
    ).start()
    try:
        gateway.add_endpoint("up", upstream.url)
        price_models(gateway)
        key = new_key(gateway)
        set_budget(gateway, "key", key["id"], 0.04)
        chat(gateway, key["key"], max_tokens=4)
        chat(gateway, key["key"], max_tokens=4)
        recorded_cost(gateway, 2)
        delete_under(redis_prefix)  # a Redis restart without persistence
        time.sleep(0.05)
        refusal(gateway, key["key"], max_tokens=4)
        assert settled(gateway, "key", key["id"]).spent == pytest.approx(0.014)
    finally:
        gateway.stop()
