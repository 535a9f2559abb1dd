"""The web console in a real browser: Debian's chromium driven by playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import openai
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import Upstream
from tests.support.gateway import Gateway
from tests.web.conftest import past_usage, wait_for_usage, write_usage

CHROMIUM = os.environ.get("RELAYGATE_TEST_CHROMIUM") or shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
ARTIFACTS = Path(os.environ.get("RELAYGATE_TEST_ARTIFACTS", "test-artifacts"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    yield opened
    context.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, gateway: Gateway, key: str) -> None:
    page.goto(gateway.url + "/ui/login")
    page.fill("input[name=key]", key)
    page.click("button:has-text('Sign in')")


def test_sign_in_add_endpoint_and_sync(page: Page, gateway: Gateway, upstream: Upstream) -> None:
    """Sign in, test a connection, add the endpoint, see its models; after the upstream
    drops a model, Sync turns it offline without a reload."""
    upstream.state.models = ["alpha", "beta"]
    page.goto(gateway.url + "/ui/endpoints")
    expect(page).to_have_url(gateway.url + "/ui/login")
    shot(page, "login")
    sign_in(page, gateway, "rg-wrong")
    expect(page.locator(".flash.error")).to_contain_text("invalid API key")
    sign_in(page, gateway, gateway.admin_key)
    expect(page).to_have_url(gateway.url + "/ui/endpoints")

    page.fill("#add-endpoint input[name=name]", "local")
    page.fill("#add-endpoint input[name=url]", upstream.url)
    page.click("#test-connection")
    expect(page.locator("#test-result")).to_contain_text("2 models found")
    expect(page.locator("#test-result li")).to_have_text(["alpha", "beta"])
    page.click("#add-endpoint button:has-text('Add endpoint')")
    expect(page.locator(".flash")).to_have_text("endpoint 'local' synced: 2 models (alpha, beta)")
    row = page.locator("tr[data-endpoint]")
    expect(row.locator("[data-role=counts]")).to_have_text("2 models online, 0 offline")
    expect(row.locator("[data-role=status]")).to_have_text("ok")

    upstream.state.models = ["alpha"]
    page.evaluate("window.marker = 'same page'")
    row.locator("button.sync").click()
    expect(row.locator("[data-role=result]")).to_contain_text("deactivated 1")
    expect(row.locator("[data-role=counts]")).to_have_text("1 model online, 1 offline")
    assert page.evaluate("window.marker") == "same page"  # no reload happened
    shot(page, "endpoints")
    page.goto(gateway.url + "/ui/models?status=offline")
    expect(page.locator("table.list tbody tr")).to_have_count(1)
    expect(page.locator("table.list tbody tr")).to_contain_text("beta")
    shot(page, "models")


def test_key_created_in_my_account_works_then_revoked(
    page: Page, gateway: Gateway, upstream: Upstream
) -> None:
    """A user creates a key in My account (shown once), uses it with the SDK, revokes it."""
    gateway.add_endpoint("local", upstream.url)
    user = gateway.create_user("uma")
    user_key = gateway.create_key(user_id=user["id"], name="sign-in")["key"]
    sign_in(page, gateway, user_key)
    expect(page).to_have_url(gateway.url + "/ui/account")
    page.fill("input[name=name][aria-label='key name']", "notebook")
    page.click("button:has-text('Create key')")
    new_key = page.locator("#new-key").inner_text().strip()
    assert new_key.startswith("rg-")
    expect(page.locator(".new-key")).to_contain_text("will not be shown again")
    shot(page, "account")
    client = gateway.openai(key=new_key)
    reply = client.chat.completions.create(model="gpt-test", messages=[])
    assert reply.choices[0].message.content == "hello from upstream"

    page.goto(gateway.url + "/ui/account")
    assert new_key not in page.content()
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("tr", has_text="notebook").locator("button:has-text('Revoke')").click()
    expect(page.locator(".flash")).to_contain_text("key revoked")
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_user_cannot_open_or_post_to_admin_pages(
    page: Page, gateway: Gateway, upstream: Upstream
) -> None:
    """A non-admin gets the 403 page on admin pages, and admin forms refuse them too."""
    gateway.add_endpoint("local", upstream.url)
    user = gateway.create_user("ned")
    sign_in(page, gateway, gateway.create_key(user_id=user["id"])["key"])
    for path in ("/ui/endpoints", "/ui/models", "/ui/people", "/ui/status"):
        response = page.goto(gateway.url + path)
        assert response is not None and response.status == 403, path
        expect(page.locator("h1")).to_contain_text("403")
    page.goto(gateway.url + "/ui/account")
    csrf = page.locator("body").get_attribute("data-csrf")
    answer = page.request.post(
        gateway.url + "/ui/endpoints/1/delete", form={"csrf": csrf or ""}, max_redirects=0
    )
    assert answer.status == 403
    assert gateway.admin.get("/admin/api/v1/endpoints/1").status_code == 200


def test_form_without_csrf_token_is_refused(
    page: Page, gateway: Gateway, upstream: Upstream
) -> None:
    gateway.add_endpoint("local", upstream.url)
    sign_in(page, gateway, gateway.admin_key)
    expect(page).to_have_url(gateway.url + "/ui/endpoints")
    answer = page.request.post(gateway.url + "/ui/endpoints/1/delete", form={}, max_redirects=0)
    assert answer.status == 403
    wrong = page.request.post(gateway.url + "/ui/endpoints/1/delete", form={"csrf": "forged"})
    assert wrong.status == 403
    assert gateway.admin.get("/admin/api/v1/endpoints/1").status_code == 200
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("form.confirm button:has-text('Delete')").click()
    expect(page.locator(".flash")).to_contain_text("deleted with its 1 model")


def test_people_and_status_pages(page: Page, gateway: Gateway, upstream: Upstream) -> None:
    """Create a group, add a member and grant it a model from the browser."""
    gateway.add_endpoint("local", upstream.url)
    gateway.create_user("olga")
    sign_in(page, gateway, gateway.admin_key)
    page.goto(gateway.url + "/ui/people")
    page.locator("section", has_text="Add group").locator("input[name=name]").fill("team")
    page.click("button:has-text('Add group')")
    group = page.locator("section.group[data-group=team]")
    group.locator("select[name=user_id]").select_option(label="olga")
    group.locator("button:has-text('Add member')").click()
    group = page.locator("section.group[data-group=team]")
    group.locator("button:has-text('Grant model')").click()
    group = page.locator("section.group[data-group=team]")
    expect(group).to_contain_text("olga")
    expect(group).to_contain_text("gpt-test")
    shot(page, "people")
    teams = [g for g in gateway.admin.get("/admin/api/v1/groups").json() if g["name"] == "team"]
    assert teams[0]["users"] and teams[0]["models"]
    page.goto(gateway.url + "/ui/status")
    expect(page.locator("table.list")).to_contain_text("local")
    shot(page, "status")


def test_usage_page_draws_tokens_per_day_by_model(
    page: Page, metered: Gateway, upstream: Upstream
) -> None:
    """With a week of usage — today's from real requests, the six days before written to
    the database — the usage page draws one bar group per day, a legend entry per model
    and a table by user; the range switches to 30 days."""
    upstream.state.models = ["gpt-test", "gpt-mini"]
    metered.add_endpoint("local", upstream.url)
    prices = {"input_cost_per_million_tokens": 2.5, "output_cost_per_million_tokens": 10}
    for model in metered.admin.get("/admin/api/v1/models").json():
        metered.admin.patch(f"/admin/api/v1/models/{model['id']}", json=prices)
    people = {}
    for name in ("ann", "bob"):
        user = metered.create_user(name)
        key = metered.create_key(user_id=user["id"])
        people[name] = {"user_id": user["id"], "key_id": key["id"], "key": key["key"]}
    ann, bob = (metered.openai(people[n]["key"]) for n in ("ann", "bob"))
    for _ in range(3):
        ann.chat.completions.create(model="gpt-test", messages=[])
    list(bob.chat.completions.create(model="gpt-mini", messages=[], stream=True))
    midnight = datetime.combine(datetime.now(UTC).date(), time(), UTC)
    earlier = [
        past_usage(
            midnight - timedelta(days=ago, hours=-hour),
            user_id=people[who]["user_id"],
            key_id=people[who]["key_id"],
            model=model,
            prompt=prompt,
            completion=prompt // 2,
            cost=(prompt * 2.5 + prompt // 2 * 10) / 1e6,
        )
        for ago in range(1, 7)
        for hour, who, model, prompt in (
            (9, "ann", "gpt-test", 6 * ago + 8),
            (11, "bob", "gpt-mini", 6 + 5 * (ago % 3)),
            (15, "ann", "gpt-large", 20 if ago in (2, 5) else 0),
        )
        if prompt
    ]
    write_usage(metered, earlier)
    wait_for_usage(metered, 4 + len(earlier))

    sign_in(page, metered, metered.admin_key)
    page.click("nav a:has-text('Usage')")
    expect(page).to_have_url(metered.url + "/ui/usage")
    chart = page.locator("svg.chart[role=img]")
    expect(chart.locator("> title")).to_have_text("Tokens per day by model, last 7 days (UTC)")
    expect(chart.locator("g.day")).to_have_count(7)
    for group in chart.locator("g.day").all():
        expect(group.locator("rect").first).to_be_visible()  # every day had requests
    today = chart.locator(f"g.day[data-day='{midnight:%Y-%m-%d}']")
    expect(today.locator("rect")).to_have_count(2)
    expect(page.locator("ul.legend li")).to_have_count(3)
    for model in ("gpt-test", "gpt-mini", "gpt-large"):
        expect(page.locator(f"ul.legend li[data-series='{model}']")).to_contain_text(model)
    box = chart.bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 200
    rows = page.locator("#usage-by-user tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first.locator("th")).to_have_text("ann")
    expect(page.locator("#usage-by-user tfoot")).to_contain_text(str(4 + len(earlier)))
    page.locator("details.data summary").click()
    expect(page.locator("#usage-chart-data tbody tr")).to_have_count(7)
    page.locator("details.data summary").click()
    shot(page, "usage")

    page.click("nav.range a:has-text('Last 30 days')")
    expect(page).to_have_url(metered.url + "/ui/usage?days=30")
    expect(page.locator("svg.chart g.day")).to_have_count(30)
