"""An identity provider that misbehaves: relaygate's calls to it follow no redirect,
read a bounded answer, give up after the timeout, and refuse a discovery that names
another issuer; each failure is a one-line message on the sign-in page."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from relaygate.sso import oidc
from relaygate.sso.provider import MAX_RESPONSE_BYTES
from tests.support.gateway import Gateway
from tests.support.servers import ServerThread


class Idp:
    """Answers its discovery document as ``mode`` says; counts requests to ``/elsewhere``."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.elsewhere = 0
        self.server = ServerThread(
            Starlette(
                routes=[
                    Route("/.well-known/openid-configuration", self.discovery),
                    Route("/elsewhere", self.collect),
                ]
            )
        )

    async def collect(self, request: Request) -> Response:
        self.elsewhere += 1
        return JSONResponse({})

    async def discovery(self, request: Request) -> Response:
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
        oidc=[{"name": "corp", "issuer": idp.server.url, "client_id": "relaygate", "timeout": 1}],
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
    assert started.cookies["rg_oidc_state"] == params["state"]


def test_an_unknown_provider_is_404(gateway: Gateway) -> None:
    """A sign-in through a provider that is not configured is refused."""
    assert httpx.get(gateway.url + "/ui/auth/oidc/nobody", timeout=5).status_code == 404


def test_sign_ins_under_way_are_bounded(
    gateway: Gateway, idp: Idp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone may start a sign-in, so the ones under way are bounded: past the bound a
    new one gets 503 and stores nothing."""
    monkeypatch.setattr(oidc, "MAX_ATTEMPTS", 2)
    statuses = [httpx.get(gateway.url + "/ui/auth/oidc/corp").status_code for _ in range(3)]
    assert statuses == [303, 303, 503]
