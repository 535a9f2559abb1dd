"""Identities asserted by an authenticating proxy's headers: believed from the proxy's
configured addresses, ignored (and logged) from any other."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway import Gateway

ALICE = {"X-Forwarded-Email": "alice@corp.example", "X-Forwarded-Groups": "admins, team-alice"}


def start(tmp_path: Path, addresses: list[str]) -> Gateway:
    running = Gateway(
        tmp_path,
        # As `relaygate serve` runs uvicorn: X-Forwarded-For never names the client.
        {"proxy_headers": False},
        trusted_proxy={
            "addresses": addresses,
            "admin_groups": ["admins"],
            "group_map": {"team-alice": "team-a"},
        },
    ).start()
    assert running.admin.post("/admin/api/v1/groups", json={"name": "team-a"}).status_code == 201
    return running


@pytest.fixture
def trusting(tmp_path: Path) -> Iterator[Gateway]:
    """relaygate trusting its loopback peer (where the tests' requests come from)."""
    running = start(tmp_path, ["127.0.0.0/8"])
    yield running
    running.stop()


@pytest.fixture
def distrusting(tmp_path: Path) -> Iterator[Gateway]:
    """relaygate trusting only 10.0.0.0/8, which the tests' requests never come from."""
    running = start(tmp_path, ["10.0.0.0/8"])
    yield running
    running.stop()


def users(gateway: Gateway) -> dict[str, dict[str, Any]]:
    return {u["name"]: u for u in gateway.admin.get("/admin/api/v1/users").json()}


def test_headers_from_the_proxy_sign_the_user_in(trusting: Gateway) -> None:
    """From a trusted address the user header signs the user in (created on first
    sight), with the role and groups the groups header maps to."""
    with httpx.Client(base_url=trusting.url, headers=ALICE) as browser:
        page = browser.get("/ui/account")
    assert page.status_code == 200
    assert "alice@corp.example" in page.text
    alice = users(trusting)["alice@corp.example"]
    assert alice["role"] == "admin"
    groups = trusting.admin.get("/admin/api/v1/groups").json()
    assert alice["id"] in next(g["users"] for g in groups if g["name"] == "team-a")


def test_a_proxy_session_posts_forms_with_its_csrf_token(trusting: Gateway) -> None:
    """A proxy-asserted user's forms carry a CSRF token that works for them alone."""
    with httpx.Client(base_url=trusting.url, headers=ALICE) as browser:
        page = browser.get("/ui/account")
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found is not None
        made = browser.post("/ui/account/keys", data={"name": "k", "csrf": found.group(1)})
        assert made.status_code == 200 and "rg-" in made.text
        bob = {"X-Forwarded-Email": "bob@corp.example"}
        forged = browser.post(
            "/ui/account/keys", data={"name": "k", "csrf": found.group(1)}, headers=bob
        )
        assert forged.status_code == 403


def test_headers_from_another_address_are_ignored_and_logged(
    distrusting: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """From an address outside the proxy's CIDRs the headers sign no one in, even with
    an X-Forwarded-For naming a trusted address, and a warning names the sender."""
    headers = {**ALICE, "X-Forwarded-For": "10.1.2.3", "X-Real-IP": "10.1.2.3"}
    with (
        caplog.at_level(logging.WARNING, logger="relaygate.sso.proxy"),
        httpx.Client(base_url=distrusting.url, headers=headers) as browser,
    ):
        page = browser.get("/ui/account")
    assert page.status_code in (302, 303, 307) and "/ui/login" in page.headers["location"]
    assert "alice@corp.example" not in users(distrusting)
    assert any("not a trusted proxy address" in r.getMessage() for r in caplog.records)
    assert any("127.0.0.1" in r.getMessage() for r in caplog.records)


def test_oversized_headers_from_the_proxy_sign_no_one_in(trusting: Gateway) -> None:
    """A user header longer than an identity may be signs no one in (no error past the
    sign-in page), and an endless groups header maps only what fits the bounds."""
    with httpx.Client(base_url=trusting.url) as browser:
        long_user = browser.get("/ui/account", headers={"X-Forwarded-Email": "a" * 300 + "@x"})
        many = ",".join(["x" * 300] * 50 + [f"g{i}" for i in range(300)] + ["team-alice"])
        crowded = browser.get(
            "/ui/account",
            headers={"X-Forwarded-Email": "carol@corp.example", "X-Forwarded-Groups": many},
        )
    assert long_user.status_code in (302, 303, 307)
    assert crowded.status_code == 200
    carol = users(trusting)["carol@corp.example"]
    groups = trusting.admin.get("/admin/api/v1/groups").json()
    # team-alice came after the 200th group: past the bound, it is not read.
    assert carol["id"] not in next(g["users"] for g in groups if g["name"] == "team-a")


def test_a_first_visit_loading_many_pages_at_once_makes_one_user(trusting: Gateway) -> None:
    """A browser's first visit behind the proxy sends several requests at once, each a
    first sign-in of the same subject: all are served as the one user they create, and no
    second user is left behind without an identity."""
    dave = {"X-Forwarded-Email": "dave@corp.example", "X-Forwarded-Groups": "team-alice"}

    def visit(_: int) -> int:
        with httpx.Client(base_url=trusting.url, headers=dave, timeout=30) as browser:
            return browser.get("/ui/account").status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(visit, range(16)))
    assert statuses == [200] * 16
    made = [name for name in users(trusting) if name.startswith("dave@corp.example")]
    assert made == ["dave@corp.example"]
    dave_id = users(trusting)["dave@corp.example"]["id"]
    groups = trusting.admin.get("/admin/api/v1/groups").json()
    assert next(g["users"] for g in groups if g["name"] == "team-a") == [dave_id]
