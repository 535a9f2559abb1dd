"""The web console under ``/ui/``: server-rendered Jinja2 pages, a little plain
JavaScript of relaygate's own, nothing loaded from elsewhere."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from relaygate.web import (
    account,
    audit,
    auth,
    batches,
    budgets,
    endpoints,
    models,
    people,
    playground,
    requests,
    sso,
    status,
    usage,
    users,
)
from relaygate.web.render import add_filters

HERE = Path(__file__).parent


def console_router() -> APIRouter:
    """Every console page and form handler."""
    router = APIRouter(prefix="/ui", include_in_schema=False)
    for module in (
        auth,
        sso,
        endpoints,
        models,
        people,
        users,
        budgets,
        account,
        usage,
        batches,
        status,
        playground,
        requests,
        audit,
    ):
        router.include_router(module.router)
    return router


def console_static() -> StaticFiles:
    """The console's CSS and JavaScript, served by relaygate itself at ``/ui/static``."""
    return StaticFiles(directory=HERE / "static")


def console_templates() -> Jinja2Templates:
    """The console's templates, autoescaped, with relaygate's filters."""
    templates = Jinja2Templates(directory=HERE / "templates")
    add_filters(templates.env)
    return templates
