"""Console: registry status — each endpoint's sync state and health in the console's one
vocabulary, figures that agree with the rows, model counts, host."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from relaygate.services import registry
from relaygate.services.endpoints import EndpointInfo
from relaygate.web.auth import Admin, context_of
from relaygate.web.render import page

router = APIRouter()


@dataclass(frozen=True, slots=True)
class Figures:
    """The summary above the table, counted from the same rows it shows."""

    endpoints: int
    enabled: int
    sync_ok: int
    sync_failing: int
    sync_never: int
    latest_sync: datetime | None
    """The most recent sync of any endpoint."""
    oldest_sync: datetime | None
    """The least recent last sync of an enabled endpoint; None when one never synced."""


def figures_of(endpoints: list[EndpointInfo]) -> Figures:
    """Count the sync states of ``endpoints`` and find their latest and oldest syncs."""
    enabled = [e for e in endpoints if e.enabled]
    synced = [e.sync.last_synced_at for e in endpoints if e.sync.last_synced_at is not None]
    enabled_synced = [e.sync.last_synced_at for e in enabled if e.sync.last_synced_at is not None]
    return Figures(
        endpoints=len(endpoints),
        enabled=len(enabled),
        sync_ok=sum(e.sync.status == "ok" for e in endpoints),
        sync_failing=sum(e.sync.status == "error" for e in endpoints),
        sync_never=sum(e.sync.status not in ("ok", "error") for e in endpoints),
        latest_sync=max(synced, default=None),
        oldest_sync=min(enabled_synced)
        if enabled_synced and len(enabled_synced) == len(enabled)
        else None,
    )


@router.get("/status")
async def status_page(request: Request, session: Admin) -> Response:
    found = await registry.status(context_of(request))
    return page(request, "status.html", session, status=found, figures=figures_of(found.endpoints))
