"""Signing in and out, the session dependency, CSRF checks and admin-only pages.

The cookie is ``HttpOnly``, ``SameSite=Strict``, and ``Secure`` when served over HTTPS
(directly or behind a proxy that sets ``X-Forwarded-Proto: https``). Every form carries
the session's CSRF token; script calls send it as ``X-CSRF-Token``.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from relaygate import audit
from relaygate.app_state import state_of
from relaygate.context import Context
from relaygate.errors import AuthenticationFailed, PermissionDenied, RelaygateError
from relaygate.services import identities, web_sessions
from relaygate.services.web_sessions import ConsoleSession
from relaygate.sso import oidc
from relaygate.sso import proxy as trusted
from relaygate.web.render import back, page

COOKIE = "rg_session"
router = APIRouter()


class SignInRequired(RelaygateError):
    """The console page needs a session; answered with a redirect to the sign-in page."""

    status = 401


def context_of(request: Request) -> Context:
    ctx: Context = state_of(request).ctx
    return ctx


async def session_of(request: Request) -> ConsoleSession:
    """The caller's session: a trusted proxy's asserted user when there is one, else the
    cookie's; raises :class:`SignInRequired` without either."""
    ctx = context_of(request)
    if ctx.settings.trusted_proxy is not None:
        by_proxy = await proxy_session(ctx, request)
        if by_proxy is not None:
            return by_proxy
    found = await web_sessions.current(ctx, request.cookies.get(COOKIE))
    if found is None:
        raise SignInRequired("sign in first")
    return found


async def proxy_session(ctx: Context, request: Request) -> ConsoleSession | None:
    """The session of the user a trusted proxy's headers name (synced like a sign-in at
    each request), or None without such headers. Its CSRF token is an HMAC of the user
    id: the proxy, not a cookie of relaygate's, keeps this session."""
    proxy = ctx.settings.trusted_proxy
    assert proxy is not None
    asserted = trusted.asserted(proxy, request)
    if asserted is None:
        return None
    # What the sign-in changes (a new user, its role, mapped groups) is the proxy's doing.
    actor = audit.Actor("system", name="trusted_proxy", address=audit.client_address(request))
    with ctx.audit.acting(actor):
        user_id = await identities.sign_in(ctx, asserted, trusted.mapping(proxy))
    principal = web_sessions.user_principal(ctx, user_id)
    if principal is None:
        return None
    return ConsoleSession(principal, ctx.vault.sign(f"proxy session {user_id}"))


def same_origin(request: Request) -> bool:
    """Whether a browser sent this request from the console itself (``Sec-Fetch-Site`` or
    ``Origin``); requests without either header (non-browser clients) pass."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"


async def checked_session(request: Request) -> ConsoleSession:
    """The session of a state-changing request, whose CSRF token must match; raises
    :class:`PermissionDenied` otherwise."""
    if not same_origin(request):
        raise PermissionDenied("cross-site requests to the console are refused")
    session = await session_of(request)
    # Whatever this request changes is this user's doing (see relaygate.audit).
    context_of(request).audit.set(audit.user_actor(session.principal.user_id, request))
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf")
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
        raise PermissionDenied("the form's CSRF token is missing or wrong; reload the page")
    return session


async def admin_session(session: ConsoleSession = Depends(session_of)) -> ConsoleSession:
    if not session.principal.is_admin:
        raise PermissionDenied("this page is for administrators")
    return session


async def admin_checked(session: ConsoleSession = Depends(checked_session)) -> ConsoleSession:
    if not session.principal.is_admin:
        raise PermissionDenied("this action is for administrators")
    return session


Session = Annotated[ConsoleSession, Depends(session_of)]
Checked = Annotated[ConsoleSession, Depends(checked_session)]
Admin = Annotated[ConsoleSession, Depends(admin_session)]
AdminChecked = Annotated[ConsoleSession, Depends(admin_checked)]


def is_https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


def login_page_for(request: Request, status_code: int = 200, error: str | None = None) -> Response:
    """The sign-in page: the configured OIDC providers, and the API-key form unless
    ``console_key_sign_in`` is off."""
    settings = context_of(request).settings
    return page(
        request,
        "login.html",
        None,
        status_code=status_code,
        error=error,
        providers=[(p.name, p.display_name or p.name) for p in settings.oidc],
        key_sign_in=settings.console_key_sign_in,
    )


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(context_of(request).settings.web_session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=is_https(request),
        path="/ui",
    )


@router.get("/login")
async def login_page(request: Request) -> Response:
    return login_page_for(request)


@router.post("/login")
async def login(request: Request, key: Annotated[str, Form()] = "") -> Response:
    ctx = context_of(request)
    if not same_origin(request):
        # Signing in from another site would log the victim into the attacker's account.
        raise PermissionDenied("cross-site sign-in is refused")
    if not ctx.settings.console_key_sign_in:
        return login_page_for(request, 403, "signing in with an API key is turned off")
    try:
        token, principal = await web_sessions.sign_in(ctx, key)
    except AuthenticationFailed as exc:
        return login_page_for(request, 401, exc.message)
    await audit.record(
        ctx,
        "session.create",
        target_type="user",
        target_id=principal.user_id,
        values={"method": "api_key", "key_id": principal.key_id},
        actor=audit.user_actor(principal.user_id, request),
    )
    response = RedirectResponse(
        "/ui/endpoints" if principal.is_admin else "/ui/account", status_code=303
    )
    set_session_cookie(request, response, token)
    return response


@router.post("/logout")
async def logout(request: Request, session: Checked) -> Response:
    """End the session; a single sign-on session then goes on to the provider's
    end-session endpoint when it has one."""
    ctx = context_of(request)
    row = await web_sessions.find(ctx, request.cookies.get(COOKIE))
    await web_sessions.sign_out(ctx, request.cookies.get(COOKIE))
    await audit.record(
        ctx, "session.delete", target_type="user", target_id=session.principal.user_id
    )
    target = None
    if row is not None and row.provider is not None:
        provider = next((p for p in ctx.settings.oidc if p.name == row.provider), None)
        if provider is not None:
            target = await oidc.end_session_url(ctx, provider, row.id_token)
    response = (
        RedirectResponse(target, status_code=303) if target else back("/ui/login", "signed out")
    )
    response.delete_cookie(COOKIE, path="/ui")
    return response


@router.get("/")
async def home(session: Session) -> Response:
    return back("/ui/endpoints" if session.principal.is_admin else "/ui/account")
