"""``create_app(settings)``: wires the proxy, the admin API and the ops routes.

``/v1/...`` goes straight to the raw-ASGI proxy (the hot path skips FastAPI's
router); everything else, the ``/v1/registry`` routes included, to FastAPI.
The lifespan owns the context (database, HTTP client, snapshot) and the
background tasks.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException
from starlette.routing import Match, Router

from relaygate import __version__
from relaygate.admin import admin_router, registry_router
from relaygate.app_state import SCOPE_KEY, AppState
from relaygate.background import (
    flush_key_activity,
    follow_changes,
    publish_metrics,
    watch_loop_lag,
)
from relaygate.batches.runner import BatchRunner
from relaygate.bodies import BoundedReceive, GuardedSend
from relaygate.budget_alerts import (
    RETRY_DELAY,
    BudgetAlerts,
    prune_budgets,
    prune_budgets_once,
    run_budget_alerts,
)
from relaygate.context import Context, open_context
from relaygate.errors import RelaygateError, error_body, render
from relaygate.files.upload import UploadSlots
from relaygate.logs import configure_logging
from relaygate.metrics import Metrics
from relaygate.ops import router as ops_router
from relaygate.proxy import Proxy
from relaygate.proxy.asgi import Receive, Scope, Send, send_error
from relaygate.proxy.checks import check_header_size
from relaygate.proxy.translation import Translation
from relaygate.ratelimit import RateLimiter
from relaygate.resources import BATCHES_PATH, FILES_PATH, resources_router
from relaygate.services.api_findings import ApiFindings, write_api_findings
from relaygate.services.api_keys import KeyActivity
from relaygate.services.audit import prune_audit
from relaygate.services.bootstrap import bootstrap
from relaygate.services.files import prune_files
from relaygate.services.stored_responses import ResponseStore, write_stored_responses
from relaygate.services.usage import prune_usage
from relaygate.settings import Settings, load_settings
from relaygate.sync.scheduler import run_scheduler
from relaygate.usage_records import UsageQueue, write_usage
from relaygate.web import console_router, console_static, console_templates
from relaygate.web.auth import SignInRequired
from relaygate.web.render import GoBack
from relaygate.workers import metrics_dir, rate_limit_table

log = logging.getLogger(__name__)
# The framework's own errors (unknown route, wrong method) as (type, code).
_HTTP_ERRORS: dict[int, tuple[str, str | None]] = {
    401: ("authentication_error", None),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
}
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
UPLOAD_SLACK = 64 * 1024
"""Bytes an upload's body may hold beyond its file: the form's boundaries and fields."""


def _wants_console_page(request: Request) -> bool:
    """Console pages get HTML errors; its script calls (Accept: application/json) JSON."""
    return request.url.path.startswith("/ui") and "application/json" not in request.headers.get(
        "accept", ""
    )


def console_error(request: Request, status: int, message: str) -> Response:
    """An error page of the console (403 for a user on an admin page, 404, …)."""
    titles = {401: "Sign in required", 403: "Not allowed", 404: "Not found"}
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request,
        "error.html",
        {
            "session": None,
            "csrf": "",
            "is_admin": False,
            "flash": None,
            "status_code": status,
            "title": titles.get(status, "Error"),
            "message": message,
        },
        status_code=status,
    )


def _json(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _allowed_methods(request: Request) -> str:
    """The methods some route takes at the request's path. Starlette's own 405 names
    those of the first route matching the path only (GET, where POST is another route)."""
    routes = request.app.router.routes
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in routes):
            allowed.append(method)
    return ", ".join(allowed)


def _install_error_handlers(app: FastAPI) -> None:
    """The one place errors become responses (OpenAI's error shape everywhere)."""

    async def relaygate_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RelaygateError)
        if _wants_console_page(request):
            if isinstance(exc, SignInRequired):
                return RedirectResponse("/ui/login", status_code=303)
            return console_error(request, exc.status, exc.message)
        headers = {name.decode(): value.decode() for name, value in exc.headers}
        return _json(*render(exc), headers=headers)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0]
        loc = [str(part) for part in first.get("loc", ()) if part != "body"]
        param = ".".join(loc) or None
        message = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            message, param = "request body is not valid JSON", None
        elif param:
            message = f"{param}: {message}"
        if _wants_console_page(request):
            # A path naming no row that can exist is a page not found; a bad field, a 400.
            in_path = first.get("loc", ("",))[0] == "path"
            return console_error(request, 404 if in_path else 400, message)
        return _json(400, error_body(message, "invalid_request_error", "invalid_request", param))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        headers = exc.headers
        if exc.status_code == 405:
            allow = _allowed_methods(request) or (exc.headers or {}).get("Allow", "")
            headers = {"allow": allow}
            message = f"{request.method} is not allowed on {request.url.path}; it takes {allow}"
        if _wants_console_page(request):
            return console_error(request, exc.status_code, message)
        kind, code = _HTTP_ERRORS.get(exc.status_code, ("invalid_request_error", None))
        return _json(exc.status_code, error_body(message, kind, code), headers=headers)

    async def unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error", exc_info=exc)
        return _json(500, error_body("internal error; see the server log", "server_error", None))

    async def go_back(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, GoBack)
        return exc.response

    app.add_exception_handler(GoBack, go_back)
    app.add_exception_handler(RelaygateError, relaygate_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def build_api() -> FastAPI:
    """The FastAPI application of the admin API, the console, the registry, files and
    batches, and ``/healthz``, ``/readyz`` and ``/metrics``: routes, error handlers and
    templates, and nothing of one gateway (see :mod:`relaygate.app_state`), so one may
    serve several :class:`RelaygateApp`. Building it costs a few hundred milliseconds
    (FastAPI analyses every route's parameters and answers)."""
    api = FastAPI(
        title="relaygate",
        version=__version__,
        docs_url="/admin/docs",
        openapi_url="/admin/openapi.json",
        redoc_url=None,
    )
    api.state.templates = console_templates()
    _install_error_handlers(api)
    api.include_router(ops_router)
    api.include_router(admin_router())
    api.include_router(registry_router())
    api.include_router(resources_router())
    api.mount("/ui/static", console_static(), name="console-static")
    api.include_router(console_router())
    return api


class RelaygateApp:
    """The ASGI entry point: dispatches ``/v1/`` to the proxy, the rest to FastAPI."""

    def __init__(
        self,
        settings: Settings,
        *,
        bootstrap: bool = True,
        clock: Callable[[], datetime] | None = None,
        workers: bool = False,
        freeze_heap: bool = False,
        api: FastAPI | None = None,
    ):
        self.settings = settings
        self.freeze_heap = freeze_heap
        self.bootstrap = bootstrap
        self.clock = clock
        self.workers = workers
        shared = Path(settings.workers_dir) if settings.workers_dir else None
        self.metrics = Metrics(metrics_dir(shared) if shared else None)
        self.shared_table = rate_limit_table(shared) if shared else None
        self.proxy: Proxy | None = None
        self.limiter: RateLimiter | None = None
        self.alert_retry_delay = RETRY_DELAY
        """Seconds before a failed budget alert's first retry (tests shorten it)."""
        self.api = api or build_api()
        self.state = AppState(self.metrics, UploadSlots())
        """What this gateway's handlers reach through their requests (:func:`state_of`)."""
        self._lifespans = Router(lifespan=self._lifespan)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespans(scope, receive, send)
            return
        scope[SCOPE_KEY] = self.state
        if scope["type"] == "http":
            try:
                # uvicorn's default parser (httptools) puts no bound on headers.
                check_header_size(scope["headers"], self.settings.max_header_bytes)
            except RelaygateError as exc:
                await send_error(send, exc)
                return
            path: str = scope["path"]
            resource = path.startswith((FILES_PATH, BATCHES_PATH))
            if (
                self.proxy is not None
                and path.startswith("/v1/")
                and not path.startswith("/v1/registry/")
                and not resource
            ):
                await self.proxy(scope, receive, send)
                return
            settings = self.settings
            if resource and path == FILES_PATH:  # an upload: its own bounds
                limit, timeout = (
                    settings.max_file_bytes + UPLOAD_SLACK,
                    settings.file_upload_timeout,
                )
            else:
                limit, timeout = settings.max_admin_body_bytes, settings.body_timeout
            body = BoundedReceive(receive, scope["headers"], limit, timeout)
            if body.whole:
                await self.api(scope, receive, send)
                return
            guarded = GuardedSend(send, body)
            if body.refusal is None:
                await self.api(scope, body, guarded)
            await guarded.finish(settings.refused_body_drain_seconds)
            return
        await self.api(scope, receive, send)

    @asynccontextmanager
    async def _lifespan(self, _: object) -> AsyncIterator[None]:
        async with open_context(
            self.settings, self.metrics, clock=self.clock, shared_budgets=self.workers
        ) as ctx:
            if self.bootstrap:
                result = await bootstrap(ctx)
                if result.new_admin_key:
                    print_first_admin_key(result.new_admin_key)
            await ctx.snapshots.load()
            activity = KeyActivity()
            usage = UsageQueue(
                self.metrics, self.settings.usage_queue_size, self.settings.usage_batch_size
            )
            self.state.running = ctx
            self.state.usage_queue = usage
            self.limiter = RateLimiter(
                ctx.redis,
                prefix=self.settings.redis_prefix,
                metrics=self.metrics,
                shared_table=self.shared_table,
            )
            self._track(ctx, usage)
            findings = ApiFindings()
            responses = ResponseStore(ctx, self.settings.max_body_bytes)
            self.proxy = Proxy(
                ctx.snapshots,
                ctx.http,
                ctx.upstream,
                activity,
                self.metrics,
                ctx.health,
                usage,
                max_body_bytes=self.settings.max_body_bytes,
                max_concurrent=self.settings.max_concurrent_requests,
                limiter=self.limiter,
                via=ctx.vault.mark,
                body_timeout=self.settings.body_timeout,
                drain_seconds=self.settings.refused_body_drain_seconds,
                max_per_key=self.settings.max_concurrent_per_key,
                max_per_user=self.settings.max_concurrent_per_user,
                max_event_bytes=self.settings.max_event_bytes,
                budgets=ctx.budgets,
                translation=Translation(
                    findings,
                    responses,
                    max_event=self.settings.max_event_bytes,
                    max_body=self.settings.max_body_bytes,
                ),
                access_log=self.settings.access_log,
            )
            self.state.proxy = self.proxy  # the console's playground sends through it
            ctx.files.prepare()  # raises ConfigError naming an unwritable files_dir
            runner = BatchRunner(ctx, self.proxy, self.metrics)
            self.state.batch_runner = runner
            alerts = BudgetAlerts(self.settings.budget_alert_thresholds, self.metrics)
            ctx.budgets.on_spent = alerts.check
            # Pruned before ready, so what start-up prunes is done once a client sees it.
            await prune_budgets_once(ctx)
            stop = asyncio.Event()
            tasks = [
                asyncio.create_task(run_scheduler(ctx, stop)),
                asyncio.create_task(follow_changes(ctx, stop)),
                asyncio.create_task(flush_key_activity(ctx, activity, stop)),
                asyncio.create_task(write_usage(ctx, usage, self.metrics, stop)),
                asyncio.create_task(prune_usage(ctx, stop)),
                asyncio.create_task(prune_audit(ctx, stop)),
                asyncio.create_task(prune_budgets(ctx, stop)),
                asyncio.create_task(
                    run_budget_alerts(ctx, alerts, stop, retry_delay=self.alert_retry_delay)
                ),
                asyncio.create_task(watch_loop_lag(self.metrics, stop)),
                asyncio.create_task(write_api_findings(ctx, findings, stop)),
                asyncio.create_task(write_stored_responses(responses, stop)),
                asyncio.create_task(runner.run(stop)),
                asyncio.create_task(prune_files(ctx, stop)),
            ]
            if self.metrics.multiprocess_dir is not None:
                tasks.append(asyncio.create_task(publish_metrics(self.metrics, stop)))
            if self.freeze_heap:
                # What start-up made lives as long as the process: out of the collector's
                # sight, a full collection no longer walks it (pauses of up to 100 ms
                # before). Only where relaygate owns the process (``relaygate serve``):
                # never unfrozen, it would freeze the heap of any program embedding it.
                gc.collect()
                gc.freeze()
                ctx.snapshots.freezes_big_changes = True
            log.info("relaygate %s ready (%s)", __version__, ctx.engine.dialect.name)
            try:
                yield
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                ctx.budgets.on_spent = None
                self.proxy = self.state.proxy = None
                self.state.batch_runner = self.state.usage_queue = None
                self.state.running = None
                self.limiter.close()
                self.limiter = None

    def _track(self, ctx: Context, usage: UsageQueue) -> None:
        """The gauges read when scraped (or published, with workers)."""
        metrics, snapshots = self.metrics, ctx.snapshots
        metrics.track(metrics.snapshot_version, lambda: snapshots.current.version)
        metrics.track(metrics.snapshot_age, lambda: time.monotonic() - snapshots.loaded_at)
        metrics.track(metrics.snapshot_rebuilds, lambda: snapshots.rebuilds)
        metrics.track(metrics.usage_queue, lambda: len(usage))


def create_app(
    settings: Settings,
    *,
    bootstrap: bool = True,
    clock: Callable[[], datetime] | None = None,
    workers: bool = False,
    freeze_heap: bool = False,
    api: FastAPI | None = None,
) -> RelaygateApp:
    """Build the whole application for ``settings``; serve it with any ASGI server.

    With ``bootstrap`` the first start-up work (seeding, admin key) runs in the
    lifespan; ``relaygate serve`` does it once before starting, and passes False.
    ``clock`` (UTC datetimes) is the time budgets go by (tests cross periods with it);
    ``workers`` says other processes serve the same database (budgets are then kept
    in the database on SQLite too); ``freeze_heap`` takes what start-up built out of
    the garbage collector's sight (``gc.freeze()``), for a process that serves
    nothing else (``relaygate serve``). ``api`` is the FastAPI application to serve
    the HTTP routes with (default: a new :func:`build_api`; one may serve several).
    """
    return RelaygateApp(
        settings,
        bootstrap=bootstrap,
        clock=clock,
        workers=workers,
        freeze_heap=freeze_heap,
        api=api,
    )


def create_app_from_environment() -> RelaygateApp:
    """The app factory each worker of ``relaygate serve --workers N`` calls: settings from
    the config file and ``RELAYGATE_*`` variables, as the parent process read them."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings, bootstrap=False, workers=True, freeze_heap=True)


def print_first_admin_key(key: str) -> None:
    """Show the first admin's key on stdout, once, and say so."""
    print(
        "\nrelaygate: created the admin user 'admin'. Its API key is shown this once "
        f"and will not be shown again:\n\n    {key}\n",
        flush=True,
    )
