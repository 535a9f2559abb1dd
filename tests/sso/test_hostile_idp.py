"""An identity provider that misbehaves: relaygate's calls to it follow no redirect,
read a bounded answer, give up after the timeout, and refuse a discovery that names
another issuer; each failure is a one-line message on the sign-in page."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from relaygate.sso import oidc
from relaygate.sso.provider import MAX_RESPONSE_BYTES
from relaygate.vault import Vault
from tests.support.gateway import Gateway
from tests.support.servers import ServerThread


class Idp:
    """Answers its discovery document as ``mode`` says; counts its discoveries, its token
    requests (each refused: no code is good here) and requests to ``/elsewhere``."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.elsewhere = 0
        self.discoveries = 0
        self.tokens = 0
        self.server = ServerThread(
            Starlette(
                routes=[
                    Route("/.well-known/openid-configuration", self.discovery),
                    Route("/elsewhere", self.collect),
                    Route("/token", self.token, methods=["POST"]),
                ]
            )
        )

    async def collect(self, request: Request) -> Response:
        self.elsewhere += 1
        return JSONResponse({})

    async def token(self, request: Request) -> Response:
        self.tokens += 1
        return JSONResponse({"error": "invalid_grant"}, status_code=400)

    async def discovery(self, request: Request) -> Response:
        self.discoveries += 1
        issuer = self.server.url
        document = {
            "issuer": issuer,
            "authorization_endpoint": issuer + "/auth",
            "token_endpoint": issuer + "/token",
            "jwks_uri": issuer + "/jwks",
        }
        if self.mode == "redirect":
            # 127.0.0.2 is another host as far as a URL goes, and still this server.
            return RedirectResponse(f"http://127.0.0.2:{self.server.port}/elsewhere", 302)
        if self.mode == "huge":
            return JSONResponse({**document, "padding": "x" * (MAX_RESPONSE_BYTES + 10)})
        if self.mode == "huge-chunked":
            # No Content-Length: the bound must hold while reading.
            return StreamingResponse(
                (b"x" * 65536 for _ in range(8)), media_type="application/json"
            )
        if self.mode == "other-issuer":
            return JSONResponse({**document, "issuer": "https://idp.attacker.example"})
        if self.mode == "slow":
            await asyncio.sleep(3)
        if self.mode == "not-json":
            return Response(b"<html>", media_type="text/html")
        return JSONResponse(document)


@pytest.fixture
def idp() -> Iterator[Idp]:
    running = Idp()
    running.server.start()
    yield running
    running.server.stop()


@pytest.fixture
def gateway(tmp_path: Path, idp: Idp) -> Iterator[Gateway]:
    running = Gateway(
        tmp_path,
        public_url="http://127.0.0.1:1",
        oidc=[
            {"name": name, "issuer": idp.server.url, "client_id": "relaygate", "timeout": 1}
            for name in ("corp", "other")
        ],
    ).start()
    yield running
    running.stop()


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("redirect", "answered 302"),
        ("huge", f"more than {MAX_RESPONSE_BYTES} bytes"),
        ("huge-chunked", f"more than {MAX_RESPONSE_BYTES} bytes"),
        ("other-issuer", "names another issuer"),
        ("slow", "could not be reached"),
        ("not-json", "something other than JSON"),
    ],
)
def test_a_misbehaving_provider_fails_the_sign_in_cleanly(
    gateway: Gateway, idp: Idp, mode: str, message: str
) -> None:
    """Each misbehaviour ends in a 502 sign-in page naming it; no redirect is followed
    and relaygate goes on serving."""
    idp.mode = mode
    page = httpx.get(gateway.url + "/ui/auth/oidc/corp", timeout=10)
    assert page.status_code == 502
    assert message in page.text
    assert idp.elsewhere == 0
    assert httpx.get(gateway.url + "/healthz", timeout=5).status_code == 200


def test_a_good_provider_gets_a_pkce_request(gateway: Gateway, idp: Idp) -> None:
    """A working discovery leads to the provider's authorization endpoint with PKCE
    (S256), a state, a nonce and the registered redirect URI; the state cookie is set."""
    started = httpx.get(gateway.url + "/ui/auth/oidc/corp", timeout=10)
    assert started.status_code == 303
    url = httpx.URL(started.headers["location"])
    assert str(url).startswith(idp.server.url + "/auth?")
    params = url.params
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert params["redirect_uri"] == "http://127.0.0.1:1/ui/auth/oidc/corp/callback"
    assert params["state"] and params["nonce"] and params["state"] != params["nonce"]
    sealed = started.cookies["rg_oidc_state"].strip('"')  # quoted for its "=" padding
    assert params["state"] not in sealed and params["nonce"] not in sealed
    opened = gateway.ctx.vault.unseal(sealed, oidc.ATTEMPT_SECONDS)
    assert opened is not None and orjson.loads(opened)[:4] == [
        oidc.SEALED_AS,
        params["state"],
        "corp",
        params["nonce"],
    ]


def test_an_unknown_provider_is_404(gateway: Gateway) -> None:
    """A sign-in through a provider that is not configured is refused."""
    assert httpx.get(gateway.url + "/ui/auth/oidc/nobody", timeout=5).status_code == 404


def test_starting_sign_ins_stores_nothing_and_asks_the_provider_once(
    gateway: Gateway, idp: Idp
) -> None:
    """Anyone may start a sign-in: 200 of them at once store nothing (the database is
    byte for byte what it was) and cost the provider one discovery, so a flood neither
    fills relaygate nor locks others out, and each still gets its own state."""
    before = gateway.dump()

    def begin(_: int) -> httpx.Response:
        return httpx.get(gateway.url + "/ui/auth/oidc/corp", timeout=30)

    with ThreadPoolExecutor(16) as pool:
        started = list(pool.map(begin, range(200)))
    assert {s.status_code for s in started} == {303}
    states = {httpx.URL(s.headers["location"]).params["state"] for s in started}
    assert len(states) == 200
    assert idp.discoveries == 1
    assert gateway.dump() == before


def test_a_provider_down_costs_one_call_not_one_per_sign_in(gateway: Gateway, idp: Idp) -> None:
    """Sign-ins started at once while the provider does not answer share one discovery
    and its failure (each gets the 502 page), and the failure is kept a few seconds:
    they do not queue up one timeout each behind one another."""
    idp.mode = "slow"

    def begin(_: int) -> httpx.Response:
        return httpx.get(gateway.url + "/ui/auth/oidc/corp", timeout=30)

    with ThreadPoolExecutor(8) as pool:
        pages = list(pool.map(begin, range(8)))
    pages.append(begin(8))
    assert {p.status_code for p in pages} == {502}
    assert all("could not be reached" in p.text for p in pages)
    assert idp.discoveries == 1


def _callback(
    gateway: Gateway, cookie: str | None, state: str, name: str = "corp"
) -> httpx.Response:
    cookies = {} if cookie is None else {"rg_oidc_state": cookie}
    return httpx.get(
        f"{gateway.url}/ui/auth/oidc/{name}/callback",
        params={"code": "a-code", "state": state},
        cookies=cookies,
        timeout=10,
    )


def test_a_forged_altered_old_or_foreign_state_cookie_is_refused(
    gateway: Gateway, idp: Idp
) -> None:
    """The callback believes only a cookie relaygate sealed, unaltered, under this secret
    key, at most ``ATTEMPT_SECONDS`` ago, for this provider and this state; each other is
    refused with a sign-in page before the provider is asked anything."""
    started = httpx.get(gateway.url + "/ui/auth/oidc/corp", timeout=10)
    sealed = started.cookies["rg_oidc_state"].strip('"')
    state = httpx.URL(started.headers["location"]).params["state"]
    fields = [oidc.SEALED_AS, state, "corp", "n", "v"]
    other_key = Vault(secrets.token_urlsafe(32))
    cases = {
        "no cookie": (None, state, "corp", "state does not match"),
        "another state": (sealed, state + "x", "corp", "state does not match"),
        "forged in clear": (orjson.dumps(fields).decode(), state, "corp", "unknown or expired"),
        "altered": (sealed[:-6] + "AAAAAA", state, "corp", "unknown or expired"),
        "another secret key": (
            other_key.seal(orjson.dumps(fields).decode()),
            state,
            "corp",
            "unknown or expired",
        ),
        "too old": (
            gateway.ctx.vault.seal(
                orjson.dumps(fields).decode(), at=int(time.time()) - oidc.ATTEMPT_SECONDS - 5
            ),
            state,
            "corp",
            "unknown or expired",
        ),
        "another provider's": (sealed, state, "other", "started at another provider"),
        "not a sign-in": (gateway.ctx.vault.seal('{"a": 1}'), state, "corp", "unknown or expired"),
        "sealed for something else": (
            gateway.ctx.vault.seal(orjson.dumps(["other/1", *fields[1:]]).decode()),
            state,
            "corp",
            "unknown or expired",
        ),
    }
    for case, (cookie, sent_state, name, message) in cases.items():
        page = _callback(gateway, cookie, sent_state, name)
        assert page.status_code == 401, case
        assert message in page.text, case
    assert idp.tokens == 0
    # The genuine cookie reaches the provider, which refuses this made-up code; sent
    # again, it is refused before the provider is asked: a callback is taken once.
    page = _callback(gateway, sealed, state)
    assert page.status_code == 502 and "answered 400" in page.text
    assert idp.tokens == 1
    again = _callback(gateway, sealed, state)
    assert again.status_code == 401 and "used already" in again.text
    assert idp.tokens == 1
