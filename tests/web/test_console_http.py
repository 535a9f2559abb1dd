"""The console at the HTTP level: cookies, cross-site requests, caching; the usage page
and "My account" after real proxied requests; model prices set from the models page."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta

import httpx
import openai
import pytest

from tests.conftest import Upstream
from tests.support.gateway import Gateway
from tests.web.conftest import (
    console,
    csrf_of,
    past_usage,
    signed_in,
    table_rows,
    wait_for_usage,
    write_usage,
)

MESSAGES = [{"role": "user", "content": "hi"}]
HEAD = ["Requests", "Errors", "Prompt tokens", "Completion tokens", "Total tokens", "Cost"]


def test_session_cookie_flags(gateway: Gateway) -> None:
    """HttpOnly, SameSite=Strict, scoped to /ui; Secure behind an HTTPS proxy."""
    client, response = signed_in(gateway)
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie
    client.close()
    client, response = signed_in(gateway, **{"x-forwarded-proto": "https"})
    assert "Secure" in response.headers["set-cookie"]
    client.close()


def test_cross_site_sign_in_and_posts_are_refused(gateway: Gateway) -> None:
    """A form on another site can neither sign a victim in nor act with their session."""
    evil = {"origin": "https://evil.example"}
    client, response = signed_in(gateway, **evil)
    assert response.status_code == 403 and "set-cookie" not in response.headers
    client.close()
    client, _ = signed_in(gateway)
    csrf = re.search(r'data-csrf="([^"]+)"', client.get("/ui/endpoints").text)
    assert csrf
    response = client.post(
        "/ui/sync-all", headers={"x-csrf-token": csrf.group(1), "sec-fetch-site": "cross-site"}
    )
    assert response.status_code == 403
    odd = client.post("/ui/logout", data={"csrf": "é"})
    assert odd.status_code == 403
    client.close()


def test_pages_are_not_cached_nor_framed(gateway: Gateway) -> None:
    client, _ = signed_in(gateway)
    response = client.get("/ui/account")
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    client.close()


def test_signed_out_or_revoked_sessions_end(gateway: Gateway) -> None:
    """After sign-out the old cookie is refused; revoking the key ends its session."""
    client, _ = signed_in(gateway)
    token = client.cookies.get("rg_session")
    csrf = re.search(r'data-csrf="([^"]+)"', client.get("/ui/account").text)
    assert csrf and token
    client.post("/ui/logout", data={"csrf": csrf.group(1)})
    replay = httpx.get(gateway.url + "/ui/account", cookies={"rg_session": token})
    assert replay.status_code == 303
    user = gateway.create_user("lou")
    created = gateway.create_key(user_id=user["id"])
    other = httpx.Client(base_url=gateway.url, follow_redirects=False)
    other.post("/ui/login", data={"key": created["key"]})
    assert other.get("/ui/account").status_code == 200
    gateway.admin.delete(f"/admin/api/v1/keys/{created['id']}")
    assert other.get("/ui/account").status_code == 303
    other.close()
    client.close()


def test_endpoints_page_shows_health(gateway: Gateway) -> None:
    """An endpoint that keeps failing shows as unhealthy, skipped for a cool-down, with its
    failures in a row and its last error."""
    gateway.add_endpoint("gone", "http://127.0.0.1:9/v1", sync=False)
    endpoint_id = gateway.endpoint("gone")["id"]
    for _ in range(3):
        gateway.ctx.health.failed(endpoint_id, "connection refused")
    client, _ = signed_in(gateway)
    page = client.get("/ui/endpoints").text
    client.close()
    assert ">unhealthy<" in page and "skipped until" in page
    assert "3 failures in a row" in page and "connection refused" in page


def day_groups(page: str) -> dict[str, int]:
    """The chart's bar groups: day → the total it draws."""
    return {
        day: int(total)
        for day, total in re.findall(r'<g class="day" data-day="([^"]+)" data-total="(\d+)"', page)
    }


def test_usage_page_counts_proxied_requests_by_day_model_and_user(
    metered: Gateway, upstream: Upstream
) -> None:
    """After real requests (JSON and streamed, one failing) the usage page shows each
    user's requests, errors, tokens and cost, totals, and today's bar stacked by model;
    before any request it shows the empty state."""
    upstream.state.models = ["gpt-test", "gpt-mini"]
    metered.add_endpoint("local", upstream.url)
    [priced] = [
        m
        for m in metered.admin.get("/admin/api/v1/models").json()
        if m["upstream_id"] == "gpt-test"
    ]
    metered.admin.patch(
        f"/admin/api/v1/models/{priced['id']}",
        json={"input_cost_per_million_tokens": 1000, "output_cost_per_million_tokens": 2000},
    )  # 3 prompt and 4 completion tokens cost 0.011
    with console(metered) as client:
        empty = client.get("/ui/usage")
    assert empty.status_code == 200
    assert "No requests in the last 7 days" in empty.text and "<svg" not in empty.text

    ann = metered.openai(metered.create_key(user_id=metered.create_user("ann")["id"])["key"])
    bob = metered.openai(metered.create_key(user_id=metered.create_user("bob")["id"])["key"])
    for _ in range(2):
        ann.chat.completions.create(model="gpt-test", messages=MESSAGES)  # 3 + 4 tokens
    list(ann.chat.completions.create(model="gpt-mini", messages=MESSAGES, stream=True))  # 11 + 5
    bob.chat.completions.create(model="gpt-test", messages=MESSAGES)
    upstream.state.fail_status = 500
    with pytest.raises(openai.InternalServerError):
        bob.chat.completions.create(model="gpt-test", messages=MESSAGES)
    wait_for_usage(metered, 5)

    with console(metered) as client:
        page = client.get("/ui/usage")
        month = client.get("/ui/usage", params={"days": 30}).text
        odd = client.get("/ui/usage", params={"days": 9999}).text
    assert page.status_code == 200
    assert table_rows(page.text, "usage-by-user") == [
        ["User", *HEAD],
        ["ann", "3", "0", "17", "13", "30", "0.022"],
        ["bob", "2", "1", "3", "4", "7", "0.011"],
        ["Total", "5", "1", "20", "17", "37", "0.033"],
    ]
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    groups = day_groups(page.text)
    assert len(groups) == 7 and list(groups)[-1] == today
    assert groups == {day: 37 if day == today else 0 for day in groups}
    assert re.findall(r'<li data-series="([^"]+)"', page.text) == ["gpt-test", "gpt-mini"]
    assert re.findall(rf'<rect [^>]*data-series="([^"]+)"><title>{today}', page.text) == [
        "gpt-test",
        "gpt-mini",
    ]
    assert 'role="img" aria-labelledby="usage-chart-title usage-chart-desc"' in page.text
    assert table_rows(page.text, "usage-chart-data")[-1] == [today, "21", "16", "37"]
    assert len(day_groups(month)) == 30
    assert 'href="/ui/usage?days=30" aria-current="page"' in month
    assert len(day_groups(odd)) == 7  # an unknown range falls back to 7 days


def test_records_fall_on_their_utc_day(metered: Gateway) -> None:
    """A record a second before UTC midnight counts for the day before, one at midnight
    for the new day; records older than the range are left out."""
    me = metered.admin.get("/admin/api/v1/me").json()
    midnight = datetime.combine(datetime.now(UTC).date(), time(), UTC)
    owner = {"user_id": me["user"]["id"], "key_id": me["key_id"], "model": "gpt-test"}
    write_usage(
        metered,
        [
            past_usage(midnight - timedelta(seconds=1), prompt=1, completion=1, **owner),
            past_usage(midnight, prompt=2, completion=2, **owner),
            past_usage(midnight - timedelta(days=6), prompt=5, completion=5, **owner),
            past_usage(midnight - timedelta(days=6, seconds=1), prompt=50, completion=50, **owner),
        ],
    )
    with console(metered) as client:
        groups = day_groups(client.get("/ui/usage").text)
    today, yesterday, first = (
        (midnight - timedelta(days=ago)).strftime("%Y-%m-%d") for ago in (0, 1, 6)
    )
    days = list(groups)
    assert days[0] == first and days[-1] == today and len(days) == 7
    assert groups[today] == 4 and groups[yesterday] == 2 and groups[first] == 10
    assert sum(groups.values()) == 16


def test_user_is_refused_the_usage_page_but_sees_own_usage_in_account(
    metered: Gateway, upstream: Upstream
) -> None:
    """A non-admin gets 403 on /ui/usage, no Usage link, and on My account a chart and a
    table by model of their own requests only."""
    metered.add_endpoint("local", upstream.url)
    user = metered.create_user("uma")
    key = metered.create_key(user_id=user["id"])["key"]
    with console(metered, key) as client:
        before = client.get("/ui/account").text
        for _ in range(2):
            metered.openai(key).chat.completions.create(model="gpt-test", messages=MESSAGES)
        metered.openai().chat.completions.create(model="gpt-test", messages=MESSAGES)  # admin's
        wait_for_usage(metered, 3)
        refused = client.get("/ui/usage")
        account = client.get("/ui/account")
    assert "No requests with your keys in the last 7 days" in before
    assert refused.status_code == 403 and "administrators" in refused.text
    assert account.status_code == 200 and 'href="/ui/usage"' not in account.text
    assert table_rows(account.text, "own-usage-by-model") == [
        ["Model", *HEAD],
        ["gpt-test", "2", "0", "6", "8", "14", "0"],
        ["Total", "2", "0", "6", "8", "14", "0"],
    ]
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert day_groups(account.text)[today] == 14


def test_prices_set_on_the_models_page_land_in_the_admin_api(
    gateway: Gateway, upstream: Upstream
) -> None:
    """The price form saves both prices (shown in the table), refuses what is not a price
    with a message and no change, and clears them when emptied; an emptied alias clears
    the alias."""
    gateway.add_endpoint("local", upstream.url)
    [model] = gateway.admin.get("/admin/api/v1/models").json()
    url = f"/ui/models/{model['id']}"

    def saved() -> dict[str, object]:
        [found] = gateway.admin.get("/admin/api/v1/models").json()
        assert isinstance(found, dict)
        return found

    def prices() -> tuple[object, object]:
        found = saved()
        return found["input_cost_per_million_tokens"], found["output_cost_per_million_tokens"]

    with console(gateway) as client:
        csrf = csrf_of(client, "/ui/models")

        def post(input_price: str, output_price: str) -> httpx.Response:
            fields = {
                "csrf": csrf,
                "input_cost_per_million_tokens": input_price,
                "output_cost_per_million_tokens": output_price,
                "back_to": "/ui/models?q=gpt",
            }
            return client.post(url, data=fields)

        done = post("2.5", "10")
        assert done.status_code == 303
        assert (
            done.headers["location"] == "/ui/models?q=gpt&flash=model+%27gpt-test%27+saved&kind=ok"
        )
        assert prices() == (2.5, 10.0)
        page = client.get("/ui/models").text
        assert [
            p.split()[-1] for p in re.findall(r'<input class="price"[^>]*value="[^"]*"', page)
        ] == [
            'value="2.5"',
            'value="10.0"',
        ]
        for bad in ("cheap", "-1", "nan", "1e400"):
            refused = post(bad, "10")
            assert "kind=error" in refused.headers["location"], bad
            assert prices() == (2.5, 10.0)
        assert "must+be+a+number" in post("cheap", "10").headers["location"]
        assert post("", "").status_code == 303
        assert prices() == (None, None)

        client.post(url, data={"csrf": csrf, "alias": "house"})
        assert saved()["alias"] == "house" and saved()["input_cost_per_million_tokens"] is None
        client.post(url, data={"csrf": csrf, "alias": ""})
        assert saved()["alias"] is None
        forged = client.post(url, data={"input_cost_per_million_tokens": "1"})
    assert forged.status_code == 403 and prices() == (None, None)


def test_models_page_shows_a_name_conflict_beside_the_model(
    gateway: Gateway, upstream: Upstream, second_upstream: Upstream
) -> None:
    """The models page marks the model left without traffic with the endpoint and model
    holding its name, and stops once both endpoints are in one pool."""
    first = gateway.add_endpoint("first", upstream.url)
    second = gateway.add_endpoint("second", second_upstream.url)
    held = next(
        m["id"]
        for m in gateway.admin.get("/admin/api/v1/models").json()
        if m["endpoint_id"] == first["id"]
    )
    with console(gateway) as client:
        rows = table_rows(client.get("/ui/models").text, "models")
        assert [row[:2] for row in rows[1:]] == [
            ["gpt-test", "first"],
            [f"gpt-test conflict: held by endpoint 'first' (model {held})", "second"],
        ]
        for endpoint in (first, second):
            gateway.admin.patch(f"/admin/api/v1/endpoints/{endpoint['id']}", json={"pool": "p"})
        pooled = client.get("/ui/models").text
    assert [row[0] for row in table_rows(pooled, "models")[1:]] == ["gpt-test", "gpt-test"]
    assert "conflict" not in pooled


def test_a_key_with_a_budget_cannot_mint_keys_in_the_console(gateway: Gateway) -> None:
    """Signed in with a key that has a budget of its own, a user cannot create another
    key on My account (it would not share the budget), as ``/me/keys`` refuses it: the
    page says why and the user still has one key."""
    user = gateway.create_user("capped")
    key = gateway.create_key(user_id=user["id"], budget=0.5, budget_period="daily")
    with console(gateway, key["key"]) as client:
        answer = client.post("/ui/account/keys", data={"name": "free", "csrf": csrf_of(client)})
        assert answer.status_code == 303
        assert "kind=error" in answer.headers["location"]
        assert "budget" in client.get(answer.headers["location"]).text
    keys = gateway.admin.get("/admin/api/v1/keys").json()
    assert [k["name"] for k in keys if k["user_id"] == user["id"]] == [key["name"]]
