"""The finished console in a real browser: one vocabulary for sync and health, the full
endpoint form, per-user pages (keys, limits, usage), and every page usable at 400 px."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest
from playwright.sync_api import Browser, expect

from tests.conftest import Upstream
from tests.support.browser import (
    CHROMIUM,
    DESKTOP,
    NARROW,
    chromium,
    horizontal_overflow,
    sign_in,
    watched_page,
)
from tests.support.gateway import Gateway
from tests.web.conftest import console, csrf_of, wait_for_usage

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
REFUSED = "http://127.0.0.1:9/v1"  # nothing listens on the discard port


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def test_sync_and_health_read_the_same_on_endpoints_and_status(
    browser: Browser, gateway: Gateway, upstream: Upstream
) -> None:
    """A failing sync reads "failing" with its reason inline and health "unknown" (never a
    green healthy) on both pages; Status's figures agree with its rows."""
    gateway.add_endpoint("good", upstream.url)
    gateway.add_endpoint("broken", REFUSED)
    with watched_page(browser) as watched:
        page = watched.page
        sign_in(page, gateway, gateway.admin_key)
        page.goto(gateway.url + "/ui/endpoints")
        broken = page.locator("tr[data-endpoint]", has_text="broken")
        expect(broken.locator("[data-role=status]")).to_have_text("failing")
        expect(broken.locator("[data-role=reason]")).to_be_visible()
        expect(broken.locator("[data-role=reason]")).to_contain_text("connection refused")
        expect(broken.locator("[data-role=health-label]")).to_have_text("unknown")
        expect(broken.locator("[data-role=health-reason]")).to_contain_text("sync is failing")
        good = page.locator("tr[data-endpoint]", has_text="good")
        expect(good.locator("[data-role=status]")).to_have_text("ok")
        expect(good.locator("[data-role=health-label]")).to_have_text("healthy")
        expect(good.locator("[data-role=counts]")).to_have_text("1 model online, 0 offline")

        broken.locator("button.sync").click()
        expect(broken.locator("[data-role=result]")).to_contain_text("sync failing")
        expect(broken.locator("[data-role=status]")).to_have_text("failing")
        expect(broken.locator("[data-role=health-label]")).to_have_text("unknown")

        page.goto(gateway.url + "/ui/status")
        rows = page.locator("#status-endpoints tbody tr")
        expect(rows.filter(has_text="broken").locator("[data-role=status]")).to_have_text("failing")
        expect(rows.filter(has_text="broken").locator("[data-role=reason]")).to_contain_text(
            "connection refused"
        )
        expect(rows.filter(has_text="good").locator("[data-role=health-label]")).to_have_text(
            "healthy"
        )
        summary = page.locator("#status-summary")
        expect(summary).to_contain_text("2 endpoints (2 enabled)")
        expect(summary).to_contain_text("1 model online, 0 offline")
        expect(summary.locator("[data-role=latest-sync]")).not_to_have_text("never")
        expect(summary).not_to_contain_text("1 models")
        assert watched.errors == []


def test_endpoint_form_round_trip_with_every_field(
    browser: Browser, gateway: Gateway, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adding an endpoint with a key variable, no groups, timeouts and a pool stores them
    all and says which models it found; Edit opens below the row without squeezing the
    URL, and saving changes them."""
    monkeypatch.setenv("CONSOLE_TEST_API_KEY", "sk-from-env")
    upstream.state.models = ["alpha", "beta"]
    with watched_page(browser) as watched:
        page = watched.page
        sign_in(page, gateway, gateway.admin_key)
        form = page.locator("#add-endpoint")
        form.locator("input[name=name]").fill("local")
        form.locator("input[name=url]").fill(upstream.url)
        form.locator("input[name=api_key_env]").fill("CONSOLE_TEST_API_KEY")
        form.locator("input[name=groups][value=everyone]").uncheck()
        form.locator("details.more summary").click()
        form.locator("input[name=timeout_connect]").fill("3")
        form.locator("input[name=timeout_total]").fill("60")
        form.locator("input[name=pool]").fill("shared")
        form.locator("select[name=chat_api]").select_option("native")
        form.locator("textarea[name=extra_routes]").fill("POST /infill")
        form.locator("button:has-text('Add endpoint')").click()
        expect(page.locator(".flash")).to_have_text(
            "endpoint 'local' synced: 2 models (alpha, beta)"
        )
        stored = gateway.endpoint("local")
        assert stored["api_key_source"] == "env" and stored["api_key_env"] == "CONSOLE_TEST_API_KEY"
        assert stored["timeouts"] == {"connect": 3.0, "total": 60.0}
        assert stored["pool"] == "shared" and stored["chat_api"] == "native"
        assert stored["extra_routes"] == ["POST /infill"] and not stored["requires_user_key"]
        everyone = [g for g in gateway.admin.get("/admin/api/v1/groups").json() if g["builtin"]]
        assert stored["id"] not in everyone[0]["endpoints"]  # nothing checked: private

        row = page.locator("tr[data-endpoint]")
        url_cell = row.locator("td.url")
        before = url_cell.bounding_box()
        row.locator("button.edit-toggle").click()
        edit = page.locator(f"#edit-{stored['id']}")
        expect(edit).to_be_visible()
        after = url_cell.bounding_box()
        assert before and after and after["width"] >= before["width"] - 2  # not squeezed
        expect(edit.locator("input[name=timeout_total]")).to_have_value("60")
        edit.locator("input[name=requires_user_key]").check()
        edit.locator("details.more summary").click()
        edit.locator("input[name=timeout_total]").fill("90")
        edit.locator("input[name=pool]").fill("")
        edit.locator("button:has-text('Save')").click()
        expect(page.locator(".flash")).to_have_text("endpoint 'local' saved")
        stored = gateway.endpoint("local")
        assert stored["timeouts"] == {"connect": 3.0, "total": 90.0}
        assert stored["pool"] is None and stored["requires_user_key"]
        assert stored["api_key_env"] == "CONSOLE_TEST_API_KEY"  # blank key field keeps it

        page.locator("#add-endpoint input[name=name]").fill("bad")
        page.locator("#add-endpoint input[name=url]").fill(upstream.url)
        page.locator("#add-endpoint details.more summary").click()
        page.locator("#add-endpoint input[name=timeout_idle]").fill("soon")
        page.locator("#add-endpoint button:has-text('Add endpoint')").click()
        expect(page.locator(".flash.error")).to_have_text(
            "the idle timeout must be a number, or blank"
        )
        assert watched.errors == []


def test_admin_creates_a_users_key_then_revokes_it(
    browser: Browser, metered: Gateway, upstream: Upstream
) -> None:
    """From a user's page an admin creates a key for them (shown once) that works through
    the openai SDK, sees its usage there, and revokes it: the SDK is refused after."""
    metered.add_endpoint("local", upstream.url)
    uma = metered.create_user("uma")
    with watched_page(browser) as watched:
        page = watched.page
        sign_in(page, metered, metered.admin_key)
        page.goto(metered.url + "/ui/people")
        page.click("a[aria-label='keys, limits and usage of uma']")
        expect(page).to_have_url(f"{metered.url}/ui/users/{uma['id']}")
        expect(page.locator("#user-usage")).to_contain_text("No requests")
        page.locator("#create-user-key input[name=name]").fill("laptop")
        page.locator("#create-user-key button").click()
        key = page.locator("#new-key").inner_text().strip()
        assert key.startswith("rg-")
        expect(page.locator(".new-key")).to_contain_text("will not be shown again")

        client = metered.openai(key=key)
        reply = client.chat.completions.create(model="gpt-test", messages=[])
        assert reply.choices[0].message.content == "hello from upstream"
        wait_for_usage(metered, 1)

        page.goto(f"{metered.url}/ui/users/{uma['id']}")
        assert key not in page.content()
        expect(page.locator("#user-usage-by-model tbody")).to_contain_text("gpt-test")
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("tr", has_text="laptop").locator("button:has-text('Revoke')").click()
        expect(page.locator(".flash")).to_have_text("key 'laptop' revoked")
        expect(page.locator("tr", has_text="laptop")).to_contain_text("revoked")
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
        assert watched.errors == []


def test_rate_limit_edited_in_the_console_takes_effect(
    browser: Browser, gateway: Gateway, upstream: Upstream
) -> None:
    """A key's requests-per-minute set on its user's page refuses the next request over
    it (429 through the SDK); clearing it lets requests through again; a user's limit
    lands in the admin API."""
    gateway.add_endpoint("local", upstream.url)
    vic = gateway.create_user("vic")
    created = gateway.create_key(user_id=vic["id"], name="script")
    client = gateway.openai(key=created["key"])
    with watched_page(browser) as watched:
        page = watched.page
        sign_in(page, gateway, gateway.admin_key)
        page.goto(f"{gateway.url}/ui/users/{vic['id']}")
        row = page.locator(f"tr[data-key='{created['id']}']")
        row.locator("input[name=requests_per_minute]").fill("1")
        row.locator("button:has-text('Save limits')").click()
        expect(page.locator(".flash")).to_have_text("rate limits of key 'script' saved")
        client.chat.completions.create(model="gpt-test", messages=[])
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="gpt-test", messages=[])

        row = page.locator(f"tr[data-key='{created['id']}']")
        expect(row.locator("input[name=requests_per_minute]")).to_have_value("1")
        row.locator("input[name=requests_per_minute]").fill("")
        row.locator("button:has-text('Save limits')").click()
        expect(page.locator(".flash")).to_have_text("rate limits of key 'script' saved")
        client.chat.completions.create(model="gpt-test", messages=[])

        limits = page.locator("#user-limits")
        limits.locator("input[name=tokens_per_minute]").fill("5000")
        limits.locator("button").click()
        expect(page.locator(".flash")).to_have_text("rate limits of 'vic' saved")
        assert (
            gateway.admin.get(f"/admin/api/v1/users/{vic['id']}").json()["tokens_per_minute"]
            == 5000
        )
        limits = page.locator("#user-limits")
        limits.locator("input[name=tokens_per_minute]").fill("-3")
        limits.locator("button").click()
        expect(page.locator(".flash.error")).to_contain_text("tokens_per_minute")
        assert watched.errors == []


def test_user_pages_are_for_admins_only(gateway: Gateway, upstream: Upstream) -> None:
    """A non-admin gets 403 on another user's page (and their own), and cannot create,
    revoke or re-limit keys there; an admin cannot revoke a key through another user's
    page; a user that does not exist is 404."""
    gateway.add_endpoint("local", upstream.url)
    eve = gateway.create_user("eve")
    bob = gateway.create_user("bob")
    bob_key = gateway.create_key(user_id=bob["id"], name="bobs")
    eve_key = gateway.create_key(user_id=eve["id"])["key"]
    with console(gateway, eve_key) as eve_console:
        csrf = csrf_of(eve_console)
        for user_id in (bob["id"], eve["id"]):
            assert eve_console.get(f"/ui/users/{user_id}").status_code == 403
        for path, form in (
            (f"/ui/users/{bob['id']}/keys", {"name": "mine-now"}),
            (f"/ui/users/{bob['id']}/keys/{bob_key['id']}/revoke", {}),
            (f"/ui/users/{bob['id']}/keys/{bob_key['id']}/limits", {"requests_per_minute": ""}),
            (f"/ui/users/{eve['id']}/limits", {"requests_per_minute": ""}),
        ):
            assert eve_console.post(path, data={"csrf": csrf, **form}).status_code == 403, path
    keys = gateway.admin.get("/admin/api/v1/keys").json()
    assert [k["name"] for k in keys if k["user_id"] == bob["id"]] == ["bobs"]
    gateway.openai(key=bob_key["key"]).models.list()  # still works

    with console(gateway) as admin:
        csrf = csrf_of(admin)
        wrong = admin.post(
            f"/ui/users/{eve['id']}/keys/{bob_key['id']}/revoke", data={"csrf": csrf}
        )
        assert wrong.status_code == 303 and "no+API+key" in wrong.headers["location"]
        assert admin.get("/ui/users/99999").status_code == 404
        no_token = admin.post(f"/ui/users/{bob['id']}/keys", data={"name": "x"})
        assert no_token.status_code == 403
    gateway.openai(key=bob_key["key"]).models.list()


def test_snippets_and_empty_grants_explain_themselves(gateway: Gateway, upstream: Upstream) -> None:
    """Both snippets read the key from RELAYGATE_API_KEY; a group with every endpoint
    granted says so instead of showing an empty list."""
    gateway.add_endpoint("local", upstream.url)
    with console(gateway) as admin:
        account = admin.get("/ui/account").text
        people = admin.get("/ui/people").text
    assert "$RELAYGATE_API_KEY" in account
    assert "os.environ[&#34;RELAYGATE_API_KEY&#34;]" in account or (
        'os.environ["RELAYGATE_API_KEY"]' in account
    )
    assert "YOUR_RELAYGATE_KEY" not in account
    assert "Every endpoint is already granted to everyone" in people


@pytest.mark.parametrize("width", [DESKTOP, NARROW])
def test_every_page_fits_the_window(
    browser: Browser, metered: Gateway, upstream: Upstream, width: int
) -> None:
    """At 1280 and 400 px every console page (Edit opened, too) fits its window without
    horizontal scrolling, the usage chart included, with no JavaScript error."""
    long_path = "/" + "very-long-segment-" * 6 + "v1"
    metered.add_endpoint("local", upstream.url)
    metered.add_endpoint("far-away-with-a-long-name", "http://127.0.0.1:9" + long_path)
    user = metered.create_user("wanda")
    key = metered.create_key(user_id=user["id"])["key"]
    metered.openai(key=key).chat.completions.create(model="gpt-test", messages=[])
    wait_for_usage(metered, 1)
    with watched_page(browser, width) as watched:
        page = watched.page
        sign_in(page, metered, metered.admin_key)
        for path in (
            "/ui/endpoints",
            "/ui/models",
            "/ui/people",
            f"/ui/users/{user['id']}",
            "/ui/usage",
            "/ui/status",
            "/ui/account",
        ):
            page.goto(metered.url + path)
            assert horizontal_overflow(page) == 0, path
        page.goto(metered.url + "/ui/usage")
        chart = page.locator("svg.chart[role=img]").bounding_box()
        assert chart is not None and chart["width"] <= width - 20 and chart["height"] > 100
        page.goto(metered.url + "/ui/endpoints")
        page.locator("tr[data-endpoint] button.edit-toggle").first.click()
        page.locator("tr.edit-row:not([hidden]) details.more summary").click()
        assert horizontal_overflow(page) == 0, "endpoints with Edit open"
        url = page.locator("td.url span").nth(1)
        assert url.get_attribute("title") == "http://127.0.0.1:9" + long_path
        time.sleep(0.1)  # let any late script error surface
        assert watched.errors == []
