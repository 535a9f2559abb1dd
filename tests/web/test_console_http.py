"""Console security at the HTTP level: cookies, cross-site requests, caching."""

from __future__ import annotations

import re

import httpx

from tests.support.gateway import Gateway


def signed_in(gateway: Gateway, **headers: str) -> tuple[httpx.Client, httpx.Response]:
    client = httpx.Client(base_url=gateway.url, follow_redirects=False)
    response = client.post("/ui/login", data={"key": gateway.admin_key}, headers=headers)
    return client, response


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
    """An endpoint that keeps failing shows as cooling down, with its last error."""
    gateway.add_endpoint("gone", "http://127.0.0.1:9/v1", sync=False)
    endpoint_id = gateway.endpoint("gone")["id"]
    for _ in range(3):
        gateway.ctx.health.failed(endpoint_id, "connection refused")
    client, _ = signed_in(gateway)
    page = client.get("/ui/endpoints").text
    client.close()
    assert "cooling down" in page
    assert "3 failures" in page and "connection refused" in page
