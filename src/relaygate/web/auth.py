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
from relaygate.context import Context
from relaygate.errors import AuthenticationFailed, PermissionDenied, RelaygateError
from relaygate.services import web_sessions
from relaygate.services.web_sessions import ConsoleSession
from relaygate.web.render import back, page

COOKIE = "rg_session"
router = APIRouter()


class SignInRequired(RelaygateError):
    """The console page needs a session; answered with a redirect to the sign-in page."""

    status = 401


def context_of(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


async def session_of(request: Request) -> ConsoleSession:
    """The caller's session; raises :class:`SignInRequired` without a live one."""
    found = await web_sessions.current(context_of(request), request.cookies.get(COOKIE))
    if found is None:
        raise SignInRequired("sign in first")
    return found


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


@router.get("/login")
async def login_page(request: Request) -> Response:
    return page(request, "login.html", None)


@router.post("/login")
async def login(request: Request, key: Annotated[str, Form()] = "") -> Response:
    ctx = context_of(request)
    if not same_origin(request):
        # Signing in from another site would log the victim into the attacker's account.
        raise PermissionDenied("cross-site sign-in is refused")
    try:
        token, principal = await web_sessions.sign_in(ctx, key)
    except AuthenticationFailed as exc:
        return page(request, "login.html", None, status_code=401, error=exc.message)
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
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(ctx.settings.web_session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=is_https(request),
        path="/ui",
    )
    return response


@router.post("/logout")
async def logout(request: Request, session: Checked) -> Response:
    ctx = context_of(request)
    await web_sessions.sign_out(ctx, request.cookies.get(COOKIE))
    await audit.record(
        ctx, "session.delete", target_type="user", target_id=session.principal.user_id
    )
    response = back("/ui/login", "signed out")
    response.delete_cookie(COOKIE, path="/ui")
    return response


@router.get("/")
async def home(session: Session) -> Response:
    return back("/ui/endpoints" if session.principal.is_admin else "/ui/account")
