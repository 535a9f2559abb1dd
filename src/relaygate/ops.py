"""Operations routes: ``/`` (to the console), ``/healthz`` (alive), ``/readyz`` (database and
snapshot), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import text

from relaygate.app_state import state_of
from relaygate.context import Context
from relaygate.metrics import CONTENT_TYPE, Metrics

router = APIRouter()


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    """A browser opening the server's address lands on the console (302 to ``/ui/``)."""
    return RedirectResponse("/ui/", status_code=302)


@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    """Always ``{"status": "ok"}`` while the process serves requests."""
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> Response:
    """200 ``{"status": "ready", "snapshot_version": N}`` when the database answers and a
    snapshot is loaded (``N``: the last change applied, as on ``/metrics``; the CLI waits
    for it after a change), else 503 with the reason."""
    ctx: Context = state_of(request).ctx
    problems = []
    try:
        async with ctx.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:
        problems.append(f"database unreachable: {type(exc).__name__}")
    if not ctx.snapshots.loaded:
        problems.append("snapshot not loaded")
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready", "snapshot_version": ctx.snapshots.current.version})


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition: this process's metrics, or every worker's together
    (see :mod:`relaygate.metrics`)."""
    registry: Metrics = state_of(request).metrics
    return Response(registry.exposition(), media_type=CONTENT_TYPE)
