"""The registry: sync every enabled endpoint now, and report the catalogue's state
(the IIR-compatible ``/v1/registry/refresh`` and ``/v1/registry/status``)."""

from __future__ import annotations

import asyncio
import os
import platform
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from relaygate import __version__
from relaygate.context import Context
from relaygate.db.tables import Endpoint, Meta, utcnow
from relaygate.errors import RelaygateError
from relaygate.services.endpoints import EndpointInfo, list_endpoints
from relaygate.sync.service import SyncResult, sync_endpoint

REFRESHED_KEY = "registry_refreshed_at"
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


@dataclass(frozen=True, slots=True)
class HostInfo:
    """The machine relaygate runs on: platform, Python version, CPUs, NVIDIA GPUs and
    relaygate's version."""

    platform: str
    python: str
    cpus: int
    gpus: list[str]
    relaygate: str


@dataclass(frozen=True, slots=True)
class RegistryStatus:
    """The last refresh, every endpoint, the models online and offline on enabled
    endpoints, and the host (the admin API serves it as it is)."""

    last_refresh_at: datetime | None
    endpoints: list[EndpointInfo]
    models_online: int
    models_offline: int
    host: HostInfo


def host_info() -> HostInfo:
    """Platform, Python version, CPU count and NVIDIA GPUs (from the driver's /proc entries)."""
    gpus: list[str] = []
    if NVIDIA_GPUS.is_dir():
        for entry in sorted(NVIDIA_GPUS.iterdir()):
            info = entry / "information"
            text = info.read_text(errors="replace") if info.is_file() else ""
            model = next(
                (
                    ln.split(":", 1)[1].strip()
                    for ln in text.splitlines()
                    if ln.startswith("Model:")
                ),
                entry.name,
            )
            gpus.append(model)
    return HostInfo(
        platform.platform(), platform.python_version(), os.cpu_count() or 1, gpus, __version__
    )


async def refresh(ctx: Context) -> list[SyncResult]:
    """Sync every enabled endpoint now, concurrently; returns one result per endpoint."""
    async with ctx.sessions() as session:
        ids = (await session.scalars(select(Endpoint.id).where(Endpoint.enabled))).all()
    outcomes = await asyncio.gather(
        *(sync_endpoint(ctx, endpoint_id, trigger="refresh") for endpoint_id in ids),
        return_exceptions=True,
    )
    results = []
    for outcome in outcomes:
        if isinstance(outcome, SyncResult):
            results.append(outcome)
        elif not isinstance(outcome, RelaygateError):  # deleted or disabled meanwhile: skip
            raise outcome
    async with ctx.sessions.begin() as session:
        await session.merge(Meta(key=REFRESHED_KEY, value=utcnow().isoformat()))
    return results


async def status(ctx: Context) -> RegistryStatus:
    """The last refresh, each endpoint's sync state and model counts, and host info."""
    endpoints = await list_endpoints(ctx)
    async with ctx.sessions() as session:
        refreshed = await session.get(Meta, REFRESHED_KEY)
    enabled = [e for e in endpoints if e.enabled]
    return RegistryStatus(
        last_refresh_at=datetime.fromisoformat(refreshed.value) if refreshed else None,
        endpoints=endpoints,
        models_online=sum(e.sync.models_online for e in enabled),
        models_offline=sum(e.sync.models_offline for e in enabled),
        host=await asyncio.to_thread(host_info),
    )
