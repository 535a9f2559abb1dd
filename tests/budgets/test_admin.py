"""Budgets through the admin API: set, shown with their spend, reset; and from the
side of a user trying to lift, clear or dodge a budget."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.budgets.support import HELLO, price_models
from tests.conftest import Upstream
from tests.support.gateway import Clock, Gateway
from tests.support.polling import eventually

API = "/admin/api/v1"


@pytest.fixture
def served(tmp_path: Path, upstream: Upstream) -> Iterator[Gateway]:
    gateway = Gateway(tmp_path, clock=Clock(), usage_flush_interval=0.1).start()
    gateway.add_endpoint("up", upstream.url)
    price_models(gateway)
    yield gateway
    gateway.stop()


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def chat(gateway: Gateway, key: str) -> None:
    gateway.openai(key).chat.completions.create(model="gpt-test", messages=HELLO, max_tokens=4)


def test_budgets_are_set_shown_with_their_spend_and_reset(served: Gateway) -> None:
    admin = served.admin
    user = ok(admin.post(f"{API}/users", json={"name": "ann", "budget": 5}), 201)
    assert (user["budget"], user["budget_period"]) == (5.0, "monthly")
    assert user["budget_spent"] == 0 and user["budget_resets_at"] == "2031-02-01T00:00:00Z"
    key = ok(
        admin.post(
            f"{API}/keys",
            json={"user_id": user["id"], "name": "k", "budget": 0.04, "budget_period": "daily"},
        ),
        201,
    )
    assert (key["budget"], key["budget_period"], key["budget_spent"]) == (0.04, "daily", 0)
    # A request's spend is settled before the last byte of its answer is sent: its
    # reservation (0.031) no longer holds when the next is sent (0.04 holds one).
    chat(served, key["key"])
    chat(served, key["key"])
    shown = eventually(
        lambda: ok(admin.get(f"{API}/keys/{key['id']}")),
        lambda k: k["budget_spent"] == pytest.approx(0.014),
    )
    assert shown["budget_spent"] == pytest.approx(0.014)
    assert shown["budget_resets_at"] == "2031-01-16T00:00:00Z"
    [listed] = [k for k in ok(admin.get(f"{API}/keys")) if k["id"] == key["id"]]
    assert listed["budget_spent"] == pytest.approx(0.014)
    assert ok(admin.get(f"{API}/users/{user['id']}"))["budget_spent"] == pytest.approx(0.014)
    with pytest.raises(openai.RateLimitError):
        chat(served, key["key"])

    assert isinstance(served.clock, Clock)
    served.clock.move(seconds=1)
    reset = ok(admin.post(f"{API}/keys/{key['id']}/budget/reset"))
    assert reset["budget_spent"] == 0 and reset["budget_reset_at"] is not None
    chat(served, key["key"])  # a new window
    # The user's budget was not reset: it still counts all three requests.
    spent = eventually(
        lambda: ok(admin.get(f"{API}/users/{user['id']}"))["budget_spent"],
        lambda value: value == pytest.approx(0.021),
    )
    assert spent == pytest.approx(0.021)

    cleared = ok(admin.patch(f"{API}/keys/{key['id']}", json={"budget": None}))
    assert (cleared["budget"], cleared["budget_period"], cleared["budget_spent"]) == (
        None,
        None,
        None,
    )
    weekly = ok(admin.patch(f"{API}/users/{user['id']}", json={"budget_period": "weekly"}))
    assert (weekly["budget"], weekly["budget_period"]) == (5.0, "weekly")
    assert weekly["budget_resets_at"] == "2031-01-20T00:00:00Z"  # the next Monday

    group = ok(admin.post(f"{API}/groups", json={"name": "team", "budget": 100}), 201)
    assert group["budget"] == 100.0
    patched = ok(admin.patch(f"{API}/groups/{group['id']}", json={"budget": 50}))
    assert patched["budget"] == 50.0 and patched["budget_spent"] == 0
    ok(admin.post(f"{API}/groups/{group['id']}/budget/reset"))
    ok(admin.post(f"{API}/users/{user['id']}/budget/reset"))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"budget": -1}, "budget"),
        ({"budget": True}, "budget"),
        ({"budget": "5"}, "budget"),
        ({"budget": 1e12}, "budget"),
        ({"budget": 5, "budget_period": "hourly"}, "budget_period"),
    ],
)
def test_a_bad_budget_is_a_400_naming_its_field(
    served: Gateway, body: dict[str, Any], param: str
) -> None:
    for path in ("keys", "users", "groups"):
        sent = {"name": f"x-{path}", **body}
        response = served.admin.post(f"{API}/{path}", json=sent)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"].startswith(param), error
    key = served.create_key(name="ok")
    response = served.admin.patch(f"{API}/keys/{key['id']}", json={"budget_period": "daily"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "budget_period"


def test_a_user_can_neither_lift_nor_dodge_a_budget(served: Gateway) -> None:
    admin = served.admin
    ann = served.create_user("ann")
    team = ok(admin.post(f"{API}/groups", json={"name": "team", "budget": 1}), 201)
    ok(admin.put(f"{API}/groups/{team['id']}/users/{ann['id']}"))
    ok(admin.patch(f"{API}/users/{ann['id']}", json={"budget": 2, "budget_period": "daily"}))
    key = ok(
        admin.post(
            f"{API}/keys",
            json={"user_id": ann["id"], "name": "capped", "budget": 0.5, "budget_period": "daily"},
        ),
        201,
    )
    as_ann = served.client_for(key["key"])
    for method, path, body in [
        ("PATCH", f"{API}/keys/{key['id']}", {"budget": None}),
        ("PATCH", f"{API}/keys/{key['id']}", {"budget": 1000}),
        ("PATCH", f"{API}/users/{ann['id']}", {"budget": None}),
        ("PATCH", f"{API}/groups/{team['id']}", {"budget": 1000}),
        ("POST", f"{API}/keys/{key['id']}/budget/reset", None),
        ("POST", f"{API}/users/{ann['id']}/budget/reset", None),
        ("POST", f"{API}/groups/{team['id']}/budget/reset", None),
        ("POST", f"{API}/keys", {"user_id": ann["id"], "name": "free"}),
    ]:
        response = as_ann.request(method, path, json=body)
        assert response.status_code == 403, (method, path, response.text)

    # A key with a budget cannot mint keys: each would get a budget of its own.
    for body in ({"name": "mine"}, {"name": "small", "budget": 0.1}):
        response = as_ann.post(f"{API}/me/keys", json=body)
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "budgeted_key"
    # A key without one may, and may give its new key a budget; the user's still applies.
    free = ok(admin.post(f"{API}/keys", json={"user_id": ann["id"], "name": "free"}), 201)
    as_free = served.client_for(free["key"])
    own = ok(as_free.post(f"{API}/me/keys", json={"name": "own", "budget": 0.1}), 201)
    assert (own["budget"], own["budget_period"]) == (0.1, "monthly")

    me = ok(as_ann.get(f"{API}/me"))
    kinds = {(b["kind"], b["name"]): b for b in me["budgets"]}
    assert set(kinds) == {("key", "capped"), ("user", "ann"), ("group", "team")}
    assert kinds[("key", "capped")]["budget_left"] == 0.5
    assert kinds[("group", "team")]["budget_period"] == "monthly"
    chat(served, key["key"])
    me = eventually(
        lambda: ok(as_ann.get(f"{API}/me")),
        lambda me: (
            {b["kind"]: b["budget_left"] for b in me["budgets"]}["key"] == pytest.approx(0.493)
        ),
    )
    left = {b["kind"]: b["budget_left"] for b in me["budgets"]}
    assert left["key"] == pytest.approx(0.493) and left["user"] == pytest.approx(1.993)


def test_a_models_default_output_tokens_is_what_an_uncapped_request_reserves(
    served: Gateway,
) -> None:
    [model] = ok(served.admin.get(f"{API}/models"))
    key = served.create_key(name="k", budget=0.05, budget_period="daily")
    client = served.openai(key["key"])
    with pytest.raises(openai.RateLimitError):  # 4096 completion tokens reserved
        client.chat.completions.create(model="gpt-test", messages=HELLO)
    patched = ok(
        served.admin.patch(f"{API}/models/{model['id']}", json={"default_output_tokens": 10})
    )
    assert patched["default_output_tokens"] == 10
    assert client.chat.completions.create(model="gpt-test", messages=HELLO).choices
    bad = served.admin.patch(f"{API}/models/{model['id']}", json={"default_output_tokens": 0})
    assert bad.status_code == 400
