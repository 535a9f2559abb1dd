"""Signing in to the console through a real OpenID provider, in a real browser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.sso.conftest import SECRET_ENV, Idp
from tests.support.browser import chromium
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
    assert bob_page.goto(gateway.url + "/ui/endpoints").status == 403  # type: ignore[union-attr]


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
