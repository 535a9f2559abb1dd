"""Rendering console pages: the template context every page gets, filters, redirects."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment

from relaygate.errors import RelaygateError
from relaygate.services.web_sessions import ConsoleSession
from relaygate.web.states import health_state, model_counts, sync_state
from relaygate.wording import plural


def ago(value: datetime | None) -> str:
    """``3 min ago``-style relative time; ``never`` for None."""
    if value is None:
        return "never"
    seconds = int((datetime.now(UTC) - value).total_seconds())
    if seconds < 5:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def thousands(value: int) -> str:
    """``12,345``."""
    return f"{value:,}"


def money(value: float | None) -> str:
    """A cost or price without a currency (the prices' own): two decimals from 1 up, six
    below with trailing zeros dropped (``0.0042``), ``0`` for nothing, ``—`` for None."""
    if value is None:
        return "—"
    if value == 0:
        return "0"
    if abs(value) >= 1:
        return f"{value:,.2f}"
    shown = f"{value:.6f}".rstrip("0").rstrip(".")
    return "< 0.000001" if shown in ("0", "-0") else shown


def add_filters(env: Environment) -> None:
    env.filters["ago"] = ago
    env.filters["thousands"] = thousands
    env.filters["money"] = money
    env.filters["plural"] = plural
    env.globals["sync_state"] = sync_state
    env.globals["health_state"] = health_state
    env.globals["model_counts"] = model_counts


def page(
    request: Request,
    template: str,
    session: ConsoleSession | None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """Render ``template`` with the session, its CSRF token and any flash message."""
    templates: Jinja2Templates = request.app.state.templates
    response = templates.TemplateResponse(
        request,
        template,
        {
            "session": session,
            "csrf": session.csrf_token if session else "",
            "is_admin": bool(session and session.principal.is_admin),
            "flash": request.query_params.get("flash"),
            "flash_kind": request.query_params.get("kind", "ok"),
            **context,
        },
        status_code=status_code,
    )
    protect(response)
    return response


def protect(response: Response) -> None:
    """Console pages are never cached (one may show a new key) nor framed by other sites."""
    response.headers["cache-control"] = "no-store"
    response.headers["content-security-policy"] = "frame-ancestors 'none'"
    response.headers["x-frame-options"] = "DENY"


class GoBack(Exception):
    """Raised by :func:`or_back`; the app answers it with its ``response`` (a redirect
    back to the page a form came from, with the error's message)."""

    def __init__(self, response: RedirectResponse) -> None:
        super().__init__(response.headers.get("location", ""))
        self.response = response


@contextmanager
def or_back(to: str) -> Iterator[None]:
    """Run a form's work; a :class:`RelaygateError` it raises becomes a 303 back to
    ``to`` showing the error's message (raised as :class:`GoBack`): the console's one
    way from a service's refusal to the form's page."""
    try:
        yield
    except RelaygateError as exc:
        raise GoBack(back(to, exc.message, "error")) from None


def back(to: str, message: str | None = None, kind: str = "ok") -> RedirectResponse:
    """A 303 to a console page, carrying a one-line message to show there."""
    path, hash_, fragment = to.partition("#")  # the query goes before any #fragment
    joiner = "&" if "?" in path else "?"
    query = f"{joiner}{urlencode({'flash': message, 'kind': kind})}" if message else ""
    return RedirectResponse(path + query + hash_ + fragment, status_code=303)
