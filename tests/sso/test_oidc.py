"""Signing in to the console through a real OpenID provider, in a real browser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.sso.conftest import SECRET_ENV, Idp
from tests.support.browser import chromium
from tests.support.browser import sign_in as key_sign_in
from tests.support.gateway import Gateway


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def start(tmp_path: Path, idp: Idp, *providers: dict[str, Any], **settings: Any) -> Gateway:
    return Gateway(
        tmp_path,
        {"port": idp.gateway_port, "proxy_headers": False},
        environ={SECRET_ENV: "test-secret"},
        public_url=f"http://127.0.0.1:{idp.gateway_port}",
        oidc=list(providers) or [idp.provider()],
        **settings,
    ).start()


@pytest.fixture
def gateway(tmp_path: Path, idp: Idp) -> Iterator[Gateway]:
    idp.set_groups("alice", ["team-alice", "relaygate-admins"])
    idp.set_groups("bob", ["team-bob"])
    running = start(tmp_path, idp, idp.provider(allowed_groups=["team-alice", "team-bob"]))
    for name in ("team-a", "team-b", "manual"):
        assert running.admin.post("/admin/api/v1/groups", json={"name": name}).status_code == 201
    yield running
    running.stop()


def sign_in(browser: Browser, gateway: Gateway, login: str, provider: str = "corp") -> Page:
    """Sign ``login`` in through the provider's login page in a fresh browser context;
    returns the page where the sign-in ended."""
    page = browser.new_context().new_page()
    page.set_default_timeout(15_000)
    page.goto(gateway.url + "/ui/login")
    page.click(f"text=Sign in with {provider}")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any")
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: url.startswith(gateway.url))
    page.wait_for_load_state()
    return page


def user_named(gateway: Gateway, name: str) -> dict[str, Any]:
    found = [u for u in gateway.admin.get("/admin/api/v1/users").json() if u["name"] == name]
    assert len(found) == 1, f"no single user {name!r}"
    return found[0]


def members(gateway: Gateway, group: str) -> list[int]:
    groups = gateway.admin.get("/admin/api/v1/groups").json()
    users: list[int] = next(g["users"] for g in groups if g["name"] == group)
    return users


def test_first_sign_in_creates_the_user_with_role_and_groups(
    browser: Browser, gateway: Gateway
) -> None:
    """A first sign-in creates the user from the ID token, an admin by the admin group,
    in the relaygate groups the group map gives; the console opens for them."""
    page = sign_in(browser, gateway, "alice")
    page.wait_for_url(gateway.url + "/ui/endpoints")
    alice = user_named(gateway, "alice@example.org")
    assert alice["role"] == "admin" and alice["email"] == "alice@example.org"
    assert alice["id"] in members(gateway, "team-a")
    assert alice["id"] not in members(gateway, "team-b")
    bob_page = sign_in(browser, gateway, "bob")
    bob_page.wait_for_url(gateway.url + "/ui/account")
    bob = user_named(gateway, "bob@example.org")
    assert bob["role"] == "user" and bob["id"] in members(gateway, "team-b")
    # A user's session reaches no administrator's page.
    refused = bob_page.goto(gateway.url + "/ui/endpoints")
    assert refused is not None and refused.status == 403
    playground = bob_page.goto(gateway.url + "/ui/playground")
    assert playground is not None and playground.status == 200


def test_an_sso_user_makes_api_keys_that_work(browser: Browser, gateway: Gateway) -> None:
    """A signed-in user creates an API key in the console; it authenticates like any
    user's key (the OpenAI SDK lists models with it) and acts as that user."""
    page = sign_in(browser, gateway, "bob")
    page.wait_for_url(gateway.url + "/ui/account")
    page.fill("input[name=name]", "laptop")
    page.click("button:has-text('Create key')")
    key = page.locator("#new-key").inner_text()
    assert key.startswith("rg-")
    assert gateway.openai(key).models.list().object == "list"
    bob = user_named(gateway, "bob@example.org")
    keys = gateway.admin.get("/admin/api/v1/keys").json()
    assert [k["name"] for k in keys if k["user_id"] == bob["id"]] == ["laptop"]


def test_an_email_alone_links_no_one_unless_allowed(
    tmp_path: Path, idp: Idp, browser: Browser
) -> None:
    """A first sign-in whose email matches an existing user makes a new user, unless the
    provider has link_by_email: then it joins that user (and brings its role)."""
    # corp-short's answers come late (see idp.mjs): its skew allows that, to test linking.
    linking = idp.provider("corp-short", link_by_email=True, clock_skew=30)
    running = start(tmp_path, idp, idp.provider(), linking)
    try:
        for name, email in (("robert", "bob@example.org"), ("alison", "alice@example.org")):
            made = running.admin.post("/admin/api/v1/users", json={"name": name, "email": email})
            assert made.status_code == 201, made.text
        sign_in(browser, running, "bob")
        assert user_named(running, "bob@example.org")["id"] != user_named(running, "robert")["id"]
        sign_in(browser, running, "alice", "corp-short")
        names = [u["name"] for u in running.admin.get("/admin/api/v1/users").json()]
        assert "alice@example.org" not in names
        assert user_named(running, "alison")["role"] == "admin"
    finally:
        running.stop()


def test_groups_are_synced_at_each_sign_in_leaving_manual_ones(
    browser: Browser, gateway: Gateway, idp: Idp
) -> None:
    """At the next sign-in a group the provider no longer lists is left, and the admin
    role is lost; a membership an administrator added stays."""
    sign_in(browser, gateway, "alice")
    alice = user_named(gateway, "alice@example.org")
    manual = next(
        g for g in gateway.admin.get("/admin/api/v1/groups").json() if g["name"] == "manual"
    )
    added = gateway.admin.put(f"/admin/api/v1/groups/{manual['id']}/users/{alice['id']}")
    assert added.status_code == 200, added.text
    idp.set_groups("alice", ["team-bob"])
    page = sign_in(browser, gateway, "alice")
    page.wait_for_url(gateway.url + "/ui/account")
    again = user_named(gateway, "alice@example.org")
    assert again["id"] == alice["id"] and again["role"] == "user"
    assert alice["id"] not in members(gateway, "team-a")
    assert alice["id"] in members(gateway, "team-b")
    assert alice["id"] in members(gateway, "manual")


def test_a_user_the_mapping_removes_loses_their_keys(
    browser: Browser, gateway: Gateway, idp: Idp
) -> None:
    """A known user who signs in outside every allowed group is refused, and their API
    keys are revoked at once."""
    sign_in(browser, gateway, "bob")
    bob = user_named(gateway, "bob@example.org")
    key = gateway.create_key(name="bob's", user_id=bob["id"])
    assert gateway.client_for(key["key"]).get("/v1/models").status_code == 200
    idp.set_groups("bob", [])
    page = sign_in(browser, gateway, "bob")
    expect(page.locator(".flash.error")).to_contain_text("none of the groups allowed")
    assert gateway.client_for(key["key"]).get("/v1/models").status_code == 401


def test_a_disabled_user_cannot_sign_in(browser: Browser, gateway: Gateway) -> None:
    """Once an administrator disables a user (console or admin API), a user the provider
    still vouches for is refused, and their session opened before ends."""
    before = sign_in(browser, gateway, "bob")
    bob = user_named(gateway, "bob@example.org")
    admin = browser.new_context().new_page()
    admin.on("dialog", lambda dialog: dialog.accept())
    key_sign_in(admin, gateway, gateway.admin_key)
    admin.goto(f"{gateway.url}/ui/users/{bob['id']}")
    admin.click("#user-facts button:has-text('Disable')")
    expect(admin.locator("#user-facts")).to_contain_text("disabled")
    assert user_named(gateway, "bob@example.org")["disabled"] is True
    before.goto(gateway.url + "/ui/account")
    assert before.url.startswith(gateway.url + "/ui/login")
    page = sign_in(browser, gateway, "bob")
    expect(page.locator(".flash.error")).to_contain_text("disabled")
    enabled = gateway.admin.patch(f"/admin/api/v1/users/{bob['id']}", json={"disabled": False})
    assert enabled.status_code == 200 and enabled.json()["disabled"] is False
    sign_in(browser, gateway, "bob").wait_for_url(gateway.url + "/ui/account")


def test_a_wrong_state_is_refused(browser: Browser, gateway: Gateway) -> None:
    """A callback whose state is not the one this browser started with signs no one in
    (an attacker planting their own sign-in's answer in a victim's browser)."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    started = context.request.get(gateway.url + "/ui/auth/oidc/corp", max_redirects=0)
    assert started.status == 303
    location = started.headers["location"]
    assert "state=" in location and "code_challenge_method=S256" in location
    page.goto(location.replace("state=", "state=x"))
    page.fill("input[name=login]", "bob")
    page.fill("input[name=password]", "any")
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: url.startswith(gateway.url))
    expect(page.locator(".flash.error")).to_contain_text("state does not match")
    users = gateway.admin.get("/admin/api/v1/users").json()
    assert "bob@example.org" not in [u["name"] for u in users]


def test_expired_and_tampered_id_tokens_are_refused(
    tmp_path: Path, idp: Idp, browser: Browser
) -> None:
    """An ID token past its expiry (it lives 1 s, the provider answers 2.5 s late, no
    clock skew is allowed), or one whose claims were
    changed after the provider signed them, signs no one in."""
    running = start(
        tmp_path,
        idp,
        idp.provider("corp-short", clock_skew=0),
        idp.provider("corp-tampered"),
    )
    try:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(15_000)

        page.goto(running.url + "/ui/login")
        page.click("text=Sign in with corp-short")
        page.fill("input[name=login]", "bob")
        page.fill("input[name=password]", "any")
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: url.startswith(running.url))
        expect(page.locator(".flash.error")).to_contain_text(
            "ID token from 'corp-short' was refused (ExpiredTokenError)"
        )
        tampered = sign_in(browser, running, "bob", "corp-tampered")
        expect(tampered.locator(".flash.error")).to_contain_text(
            "ID token from 'corp-tampered' was refused (BadSignatureError)"
        )
        users = [u["name"] for u in running.admin.get("/admin/api/v1/users").json()]
        assert "alice@example.org" not in users and "bob@example.org" not in users
    finally:
        running.stop()


def test_sign_out_ends_the_session_and_the_providers(browser: Browser, gateway: Gateway) -> None:
    """Signing out ends the console session and goes on to the provider's end-session
    page; the old cookie then opens nothing."""
    page = sign_in(browser, gateway, "bob")
    page.wait_for_url(gateway.url + "/ui/account")
    cookies = page.context.cookies(gateway.url + "/ui/")
    page.click("button:has-text('Sign out')")
    page.wait_for_url(lambda url: "/session/end" in url)
    fresh = browser.new_context()
    fresh.add_cookies(cookies)
    probe = fresh.new_page()
    probe.goto(gateway.url + "/ui/account")
    assert probe.url.startswith(gateway.url + "/ui/login")


def test_key_sign_in_can_be_turned_off(tmp_path: Path, idp: Idp, browser: Browser) -> None:
    """With console_key_sign_in off, the sign-in page offers only the providers and a
    posted key is refused."""
    running = start(tmp_path, idp, console_key_sign_in=False)
    try:
        page = browser.new_context().new_page()
        page.goto(running.url + "/ui/login")
        assert page.locator("input[name=key]").count() == 0
        assert page.locator("text=Sign in with corp").count() == 1
        refused = page.context.request.post(
            running.url + "/ui/login", form={"key": running.admin_key}, max_redirects=0
        )
        assert refused.status == 403
    finally:
        running.stop()
