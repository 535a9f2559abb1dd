"""The playground and the recent-requests page in a real browser (Debian's chromium
driven by playwright), at a desktop width and at 400 px."""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import openai
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import Upstream
from tests.support.gateway import Gateway
from tests.web.conftest import (
    console,
    csrf_of,
    past_usage,
    signed_in,
    wait_for_usage,
    write_usage,
)

CHROMIUM = os.environ.get("RELAYGATE_TEST_CHROMIUM") or shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
ARTIFACTS = Path(os.environ.get("RELAYGATE_TEST_ARTIFACTS", "test-artifacts"))
WIDTHS = {"desktop": 1280, "narrow": 400}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        launched.close()


def open_page(browser: Browser, width: int) -> Page:
    context = browser.new_context(viewport={"width": width, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    return opened


@pytest.fixture(params=list(WIDTHS))
def sized(request: pytest.FixtureRequest, browser: Browser) -> Iterator[tuple[Page, str]]:
    """A page at each width, and the width's name."""
    opened = open_page(browser, WIDTHS[request.param])
    yield opened, request.param
    opened.context.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    opened = open_page(browser, WIDTHS["desktop"])
    yield opened
    opened.context.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, gateway: Gateway, key: str) -> None:
    page.goto(gateway.url + "/ui/login")
    page.fill("input[name=key]", key)
    page.click("button:has-text('Sign in')")
    expect(page).not_to_have_url(re.compile(r"/ui/login"))


def no_sideways_scroll(page: Page) -> None:
    """The page is no wider than the window (wide tables scroll inside their box)."""
    width = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert width <= 0, f"the page is {width} px wider than the window"


def private_model(gateway: Gateway, upstream: Upstream) -> None:
    """An endpoint serving ``secret``, granted to no group: only admins may use it."""
    upstream.state.models = ["secret"]
    gateway.add_endpoint("private", upstream.url, groups=[])


def user_key(gateway: Gateway, name: str) -> tuple[dict[str, Any], str]:
    user = gateway.create_user(name)
    return user, gateway.create_key(user_id=user["id"], name="laptop")["key"]


def test_playground_streams_the_reply_with_tokens_and_latency(
    sized: tuple[Page, str], gateway: Gateway, upstream: Upstream, second_upstream: Upstream
) -> None:
    """A user picks one of the models they may use (and only those are offered), sends a
    message and sees the reply arrive in pieces, then its tokens and latency; the copy
    snippets carry the placeholder, never the key."""
    page, width = sized
    gateway.add_endpoint("local", upstream.url)
    private_model(gateway, second_upstream)
    _, key = user_key(gateway, "pia")
    sign_in(page, gateway, key)
    page.click("nav a:has-text('Playground')")
    expect(page).to_have_url(gateway.url + "/ui/playground")
    expect(page.locator("#play-model option")).to_have_text(["gpt-test"])
    assert key not in page.content()

    held = threading.Event()
    upstream.state.hold_stream = held
    page.fill("textarea[name=system]", "Be brief.")
    page.fill("textarea[name=message]", "Say 'hi' to me")
    page.click("#play-send")
    reply = page.locator("#play-reply")
    expect(reply).to_have_text("c0")  # the first piece, while the rest is held upstream
    expect(page.locator("[data-stat=total]")).to_have_text("—")
    held.set()
    expect(reply).to_have_text("c0 c1 c2 c3 c4")
    expect(page.locator("[data-stat=prompt]")).to_have_text("11")
    expect(page.locator("[data-stat=completion]")).to_have_text("5")
    expect(page.locator("[data-stat=ttft]")).to_have_text(re.compile(r"^\d+ ms$"))
    expect(page.locator("[data-stat=total]")).to_have_text(re.compile(r"^\d+ ms$"))
    sent = upstream.state.requests[-1].json
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say 'hi' to me"},
    ]
    assert sent["stream"] is True and sent["max_tokens"] == 512

    curl = page.locator("#snippet-curl").inner_text()
    python = page.locator("#snippet-python").inner_text()
    assert "$RELAYGATE_API_KEY" in curl and f"{gateway.url}/v1/chat/completions" in curl
    assert "Say '\\''hi'\\'' to me" in curl  # the shell's quoting of a single quote
    assert 'os.environ["RELAYGATE_API_KEY"]' in python and '"gpt-test"' in python
    for snippet in (curl, python):
        assert key not in snippet and gateway.admin_key not in snippet
    no_sideways_scroll(page)
    shot(page, f"playground-{width}")


def test_playground_refuses_what_the_user_may_not_do(
    page: Page, gateway: Gateway, upstream: Upstream, second_upstream: Upstream
) -> None:
    """A model not granted is refused with a readable message and never reaches its
    upstream; a chat without the CSRF token, from another site, or with a huge message is
    refused before anything is sent."""
    gateway.add_endpoint("local", upstream.url)
    private_model(gateway, second_upstream)
    _, key = user_key(gateway, "rex")
    sign_in(page, gateway, key)
    page.goto(gateway.url + "/ui/playground")
    # The page offers no such model: a user editing the page could still ask for it.
    page.evaluate(
        "document.getElementById('play-model').add(new Option('secret', 'secret', true, true))"
    )
    page.fill("textarea[name=message]", "let me in")
    page.click("#play-send")
    expect(page.locator("#play-error")).to_have_text(
        "you do not have access to the model 'secret'; ask an admin to grant it"
    )
    expect(page.locator("#play-reply")).to_have_text("")
    assert second_upstream.state.requests == []

    chat = {"model": "gpt-test", "message": "hi"}
    url = gateway.url + "/ui/playground/chat"
    csrf = page.locator("body").get_attribute("data-csrf") or ""
    json = {"accept": "application/json"}
    missing = page.request.post(url, data=chat, headers=json)
    assert missing.status == 403 and "CSRF" in missing.json()["error"]["message"]
    forged = page.request.post(url, data=chat, headers={**json, "x-csrf-token": "forged"})
    assert forged.status == 403
    cross = page.request.post(
        url, data=chat, headers={**json, "x-csrf-token": csrf, "sec-fetch-site": "cross-site"}
    )
    assert cross.status == 403
    huge = page.request.post(
        url, data={**chat, "message": "x" * 200_000}, headers={**json, "x-csrf-token": csrf}
    )
    assert huge.status == 413 and "at most 65,536 bytes" in huge.json()["error"]["message"]
    for field, value in (("max_tokens", 100_000), ("max_tokens", 0), ("message", "")):
        bad = page.request.post(
            url, data={**chat, field: value}, headers={**json, "x-csrf-token": csrf}
        )
        assert bad.status == 400 and bad.json()["error"]["param"] == field, bad.text()
    assert upstream.state.requests == []
    ok = page.request.post(url, data=chat, headers={**json, "x-csrf-token": csrf})
    assert ok.status == 200 and "c4" in ok.text()
    assert ok.headers["cache-control"] == "no-store"


def test_huge_chat_is_refused_before_its_body_is_read(gateway: Gateway) -> None:
    """A chat declaring more than 64 KiB is answered 413 at once, without waiting for a
    body that never comes."""
    _, key = user_key(gateway, "sam")
    client, answer = signed_in(gateway, key)
    try:
        assert answer.status_code == 303, answer.text
        cookie, csrf = client.cookies["rg_session"], csrf_of(client, "/ui/playground")
    finally:
        client.close()
    address = urlsplit(gateway.url)
    assert address.hostname is not None and address.port is not None
    with socket.create_connection((address.hostname, address.port), timeout=5) as sock:
        sock.sendall(
            b"POST /ui/playground/chat HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nAccept: application/json\r\n"
            b"Content-Length: 100000\r\n"
            + f"Cookie: rg_session={cookie}\r\nX-CSRF-Token: {csrf}\r\n\r\n".encode()
            + b'{"model": "gpt-test", "message": "'
        )
        reply = b""
        while b"}}" not in reply:  # the whole error object, not the rest of a body
            piece = sock.recv(65536)
            assert piece, reply
            reply += piece
    assert reply.startswith(b"HTTP/1.1 413"), reply
    assert b"at most 65,536 bytes" in reply


def test_recent_requests_show_the_playground_request_and_filter(
    sized: tuple[Page, str], metered: Gateway, upstream: Upstream, second_upstream: Upstream
) -> None:
    """A request made in the playground shows on Recent requests with its user, key,
    model, endpoint, status and tokens; filters by user, model, endpoint, outcome and time
    narrow the list; pages go back in time; a non-admin gets 403."""
    page, width = sized
    metered.add_endpoint("local", upstream.url)
    private_model(metered, second_upstream)
    user, key = user_key(metered, "quinn")
    admin = metered.openai()
    admin.chat.completions.create(model="secret", messages=[])
    second_upstream.state.fail_status = 500
    with pytest.raises(openai.InternalServerError, match="failing"):
        admin.with_options(max_retries=0).chat.completions.create(model="secret", messages=[])
    long_ago = datetime.now(UTC) - timedelta(days=3)
    old = [
        past_usage(
            long_ago + timedelta(minutes=i),
            user_id=user["id"],
            key_id=1,
            model="gpt-old",
            prompt=5,
            completion=5,
        )
        for i in range(55)
    ]
    write_usage(metered, old)

    sign_in(page, metered, key)
    page.goto(metered.url + "/ui/playground")
    page.fill("textarea[name=message]", "hello")
    page.click("#play-send")
    expect(page.locator("[data-stat=total]")).to_have_text(re.compile(r"ms$"))
    wait_for_usage(metered, 3 + len(old))
    response = page.goto(metered.url + "/ui/requests")
    assert response is not None and response.status == 403
    expect(page.locator("h1")).to_contain_text("403")
    expect(page.locator("nav a:has-text('Requests')")).to_have_count(0)

    sign_in(page, metered, metered.admin_key)
    page.click("nav a:has-text('Requests')")
    expect(page).to_have_url(metered.url + "/ui/requests")
    rows = page.locator("#requests tbody tr")
    expect(rows).to_have_count(50)
    newest = rows.first.locator("td")
    expect(newest.nth(1)).to_have_text("quinn")
    expect(newest.nth(2)).to_contain_text("laptop")
    expect(newest.nth(3)).to_have_text("gpt-test")
    expect(newest.nth(4)).to_have_text("local")
    expect(newest.nth(5)).to_contain_text("/v1/chat/completions")
    expect(newest.nth(6)).to_have_text("200")
    expect(newest.nth(8)).to_contain_text("16")  # 11 prompt + 5 completion
    expect(newest.nth(8)).to_contain_text("11 + 5")
    no_sideways_scroll(page)
    shot(page, f"requests-{width}")

    page.locator("#request-filters select[name=status]").select_option("error")
    page.click("#request-filters button:has-text('Filter')")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("td").nth(6)).to_have_text("500")
    expect(rows.first.locator("td").nth(4)).to_have_text("private")

    page.goto(metered.url + "/ui/requests")
    page.locator("#request-filters select[name=endpoint]").select_option(label="private")
    page.click("#request-filters button:has-text('Filter')")
    expect(rows).to_have_count(2)
    page.goto(metered.url + "/ui/requests")
    page.fill("#request-filters input[name=model]", "gpt-test")
    page.locator("#request-filters select[name=user]").select_option(label="quinn")
    page.click("#request-filters button:has-text('Filter')")
    expect(rows).to_have_count(1)
    page.locator("#request-filters select[name=user]").select_option(label="admin")
    page.click("#request-filters button:has-text('Filter')")
    expect(page.locator("section.empty")).to_contain_text("No requests match these filters")

    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    page.goto(f"{metered.url}/ui/requests?from={since}")
    expect(rows).to_have_count(3)
    page.goto(f"{metered.url}/ui/requests?model=gpt-old")
    expect(rows).to_have_count(50)
    page.click("nav.pages a:has-text('Older')")
    expect(rows).to_have_count(5)
    expect(page.locator("nav.pages a:has-text('Older')")).to_have_count(0)
    expect(page.locator("#request-filters input[name=model]")).to_have_value("gpt-old")
    bad = page.goto(f"{metered.url}/ui/requests?from=yesterday")
    assert bad is not None and bad.status == 400
    expect(page.locator("main")).to_contain_text("from must be a date and time")


def test_stop_cancels_the_request_upstream(
    page: Page, gateway: Gateway, upstream: Upstream
) -> None:
    """Stop, pressed while the reply streams, ends the upstream request too."""
    gateway.add_endpoint("local", upstream.url)
    _, key = user_key(gateway, "stu")
    upstream.state.hold_stream = threading.Event()
    sign_in(page, gateway, key)
    page.goto(gateway.url + "/ui/playground")
    page.fill("textarea[name=message]", "a long story")
    page.click("#play-send")
    expect(page.locator("#play-reply")).to_have_text("c0")
    page.click("#play-stop")
    expect(page.locator("#play-error")).to_have_text("stopped")
    assert upstream.state.stream_cancelled.wait(5), "the upstream stream was not cancelled"
    expect(page.locator("#play-send")).to_be_enabled()


def test_playground_keeps_the_keys_rate_limit(gateway: Gateway, upstream: Upstream) -> None:
    """The playground is no way around a limit: a key allowed one request a minute gets
    its second chat refused with the proxy's 429, as it would on /v1."""
    gateway.add_endpoint("local", upstream.url)
    user = gateway.create_user("lim")
    key = gateway.create_key(user_id=user["id"], requests_per_minute=1)["key"]
    with console(gateway, key) as client:
        headers = {"x-csrf-token": csrf_of(client, "/ui/playground"), "accept": "application/json"}
        chat = {"model": "gpt-test", "message": "hi"}
        first = client.post("/ui/playground/chat", json=chat, headers=headers)
        assert first.status_code == 200 and "data: [DONE]" in first.text
        second = client.post("/ui/playground/chat", json=chat, headers=headers)
    assert second.status_code == 429, second.text
    assert second.json()["error"]["code"] == "rate_limit_exceeded"
    assert len(upstream.state.requests) == 1
