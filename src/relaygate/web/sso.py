"""Signing in to the console through an OpenID Connect provider.

``GET /ui/auth/oidc/{name}`` sends the browser to the provider (the sign-in sealed in a
cookie scoped to these routes); the provider sends it back to ``…/{name}/callback``,
which verifies everything (:mod:`relaygate.sso.oidc`), signs the user in
(:mod:`relaygate.services.identities`) and starts a console session. The callback
answers a page that moves on by itself rather than a redirect: the session cookie is
``SameSite=Strict``, and a browser leaves it off a redirect chain begun on the
provider's site.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from relaygate import audit
from relaygate.errors import AuthenticationFailed, PermissionDenied, UpstreamFailed
from relaygate.services import identities, web_sessions
from relaygate.sign_in_settings import OidcProvider
from relaygate.sso import oidc
from relaygate.web.auth import context_of, is_https, login_page_for, set_session_cookie

STATE_COOKIE = "rg_oidc_state"
MAX_PARAM_CHARS = 4096
MAX_EMAIL_CHARS = 320
router = APIRouter()


def _mapping(provider: OidcProvider) -> identities.Mapping:
    return identities.Mapping(
        frozenset(provider.admin_groups),
        dict(provider.group_map),
        None if provider.allowed_groups is None else frozenset(provider.allowed_groups),
        None if provider.allowed_email_domains is None else tuple(provider.allowed_email_domains),
        provider.link_by_email,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def asserted_by(provider: OidcProvider, claims: dict[str, object]) -> identities.Asserted:
    """Who the ID token's claims say signs in (the claims the provider's settings name);
    raises :class:`AuthenticationFailed` without a subject."""
    subject = _text(claims.get(provider.subject_claim))
    if subject is None or len(subject) > 255:
        raise AuthenticationFailed(f"the ID token has no usable {provider.subject_claim!r}")
    email = _text(claims.get(provider.email_claim))
    if email is not None and len(email) > MAX_EMAIL_CHARS:
        raise AuthenticationFailed(f"the ID token's {provider.email_claim!r} is too long")
    groups = claims.get(provider.groups_claim)
    listed = (
        frozenset(g for g in groups if isinstance(g, str))
        if isinstance(groups, list)
        else frozenset()
    )
    verified = claims.get("email_verified")
    return identities.Asserted(
        provider.name,
        subject,
        email,
        _text(claims.get(provider.name_claim)),
        listed,
        verified if isinstance(verified, bool) else None,
    )


@router.get("/auth/oidc/{name}")
async def begin(request: Request, name: str) -> Response:
    ctx = context_of(request)
    provider = oidc.find_provider(ctx, name)
    try:
        started = await oidc.start(ctx, provider)
    except UpstreamFailed as exc:
        return login_page_for(request, exc.status, exc.message)
    response = RedirectResponse(started.url, status_code=303)
    response.set_cookie(
        STATE_COOKIE,
        started.cookie,
        max_age=oidc.ATTEMPT_SECONDS,
        httponly=True,
        samesite="lax",  # sent on the provider's top-level redirect back to the callback
        secure=is_https(request),
        path="/ui/auth/oidc",
    )
    return response


@router.get("/auth/oidc/{name}/callback")
async def callback(request: Request, name: str) -> Response:
    ctx = context_of(request)
    provider = oidc.find_provider(ctx, name)
    query = request.query_params
    code, state = query.get("code", ""), query.get("state", "")
    if query.get("error") or not code or not state:
        return login_page_for(request, 401, f"{provider.name} did not sign you in")
    if len(code) > MAX_PARAM_CHARS or len(state) > MAX_PARAM_CHARS:
        return login_page_for(request, 400, "the sign-in's answer is too long")
    try:
        finished = await oidc.finish(ctx, provider, code, state, request.cookies.get(STATE_COOKIE))
        asserted = asserted_by(provider, finished.claims)
        # What the sign-in changes (a new user, its role and mapped groups) is the
        # identity provider's doing, recorded as such.
        idp = audit.Actor(
            "system", name=f"oidc:{provider.name}", address=audit.client_address(request)
        )
        with ctx.audit.acting(idp):
            user_id = await identities.sign_in(ctx, asserted, _mapping(provider))
    except (AuthenticationFailed, PermissionDenied, UpstreamFailed) as exc:
        response = login_page_for(request, exc.status, exc.message)
        response.delete_cookie(STATE_COOKIE, path="/ui/auth/oidc")
        return response
    token = await web_sessions.sign_in_user(ctx, user_id, provider.name, finished.id_token)
    await audit.record(
        ctx,
        "session.create",
        target_type="user",
        target_id=user_id,
        values={"method": "oidc", "provider": provider.name},
        actor=audit.user_actor(user_id, request),
    )
    target = "/ui/"
    response = HTMLResponse(
        f'<!doctype html><meta http-equiv="refresh" content="0;url={escape(target)}">'
        f'<title>Signed in</title><p>Signed in. <a href="{escape(target)}">Continue</a></p>'
    )
    set_session_cookie(request, response, token)
    response.delete_cookie(STATE_COOKIE, path="/ui/auth/oidc")
    return response
