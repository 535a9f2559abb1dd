"""The console in a real browser: Debian's chromium driven by playwright, pages that
record their JavaScript errors, and the layout checks every console page must pass."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from playwright.sync_api import Browser, ConsoleMessage, Error, Page, sync_playwright

from tests.support.gateway import Gateway

CHROMIUM = os.environ.get("RELAYGATE_TEST_CHROMIUM") or shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DESKTOP = 1280
NARROW = 400


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless chromium (``CHROMIUM``), closed on leaving."""
    assert CHROMIUM is not None, "chromium is not installed"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Watched:
    """A page and the JavaScript errors it met (console errors and uncaught exceptions)."""

    page: Page
    errors: list[str] = field(default_factory=list)


@contextmanager
def watched_page(browser: Browser, width: int = DESKTOP, height: int = 900) -> Iterator[Watched]:
    """A page ``width`` pixels wide in a fresh context, recording its JavaScript errors."""
    context = browser.new_context(viewport={"width": width, "height": height})
    opened = Watched(context.new_page())
    opened.page.set_default_timeout(10_000)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            opened.errors.append(f"console: {message.text} ({message.location.get('url')})")

    def on_error(error: Error) -> None:
        opened.errors.append(f"uncaught: {error}")

    opened.page.on("console", on_console)
    opened.page.on("pageerror", on_error)
    try:
        yield opened
    finally:
        context.close()


def sign_in(page: Page, gateway: Gateway, key: str) -> None:
    """Sign in to the console with ``key`` through its sign-in form."""
    page.goto(gateway.url + "/ui/login")
    page.fill("input[name=key]", key)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(lambda url: "/ui/login" not in url)


def horizontal_overflow(page: Page) -> int:
    """How many pixels the page is wider than its window (0: it fits)."""
    width: int = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    return max(0, width)
