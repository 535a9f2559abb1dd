"""Sync one endpoint: list its models, reconcile, and record the outcome as a change."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from relaygate.changes import declare, unit
from relaygate.context import Context
from relaygate.credentials import CredentialsUnavailable, endpoint_access
from relaygate.db.tables import Endpoint, Model, SyncRun, utcnow
from relaygate.errors import Conflict, NotFound
from relaygate.providers import DiscoveredModel, ListingFailed, get_provider
from relaygate.sync.reconcile import matches_filter, plan

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncResult:
    """The outcome of one sync. ``status`` is ``ok`` or ``error``; counts are models."""

    endpoint_id: int
    endpoint_name: str
    status: str
    added: int
    reactivated: int
    deactivated: int
    total: int
    synced_at: datetime
    error: str | None
    changed: bool = False
    """Whether the catalogue changed (models added, re-/deactivated, or their metadata)."""


@dataclass(frozen=True, slots=True)
class SyncRunInfo:
    """One row of an endpoint's sync history."""

    id: int
    trigger: str
    started_at: datetime
    finished_at: datetime
    status: str
    added: int
    reactivated: int
    deactivated: int
    total: int
    error: str | None
    replica: str | None


async def sync_history(ctx: Context, endpoint_id: int, limit: int = 50) -> list[SyncRunInfo]:
    """The endpoint's most recent syncs, newest first."""
    async with ctx.sessions() as session:
        rows = await session.scalars(
            select(SyncRun)
            .where(SyncRun.endpoint_id == endpoint_id)
            .order_by(SyncRun.id.desc())
            .limit(limit)
        )
        return [
            SyncRunInfo(
                r.id,
                r.trigger,
                r.started_at,
                r.finished_at,
                r.status,
                r.added,
                r.reactivated,
                r.deactivated,
                r.total,
                r.error,
                r.replica,
            )
            for r in rows
        ]


METADATA = ("owned_by", "display_name", "context_window", "max_output_tokens", "created")


async def _list(ctx: Context, endpoint: Endpoint) -> list[DiscoveredModel]:
    try:
        access = endpoint_access(endpoint, ctx.vault)
    except CredentialsUnavailable as exc:
        raise ListingFailed(str(exc)) from None
    provider = get_provider(endpoint.type)
    bounded = replace(
        access,
        max_bytes=ctx.settings.max_listing_bytes,
        max_models=ctx.settings.max_listing_models,
    )
    return await provider.list_models(ctx.http, bounded, ctx.settings.sync_timeout)


def _metadata(model: DiscoveredModel) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(model, name) for name in METADATA}
    values["capabilities"] = list(model.capabilities)
    return values


def insert_ignoring_duplicates(session: AsyncSession, table: type[Model]) -> Insert:
    """INSERT … ON CONFLICT DO NOTHING in the session's dialect (SQLite or PostgreSQL)."""
    # Imported on use, as SQLAlchemy loads a dialect: a server on SQLite never carries
    # the PostgreSQL dialect's modules (some 2 MB), nor one on PostgreSQL SQLite's.
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table).on_conflict_do_nothing()


async def sync_endpoint(ctx: Context, endpoint_id: int, *, trigger: str = "manual") -> SyncResult:
    """List endpoint ``endpoint_id``'s models and reconcile them with the store.

    New models are inserted online, vanished ones marked offline (kept), returning
    ones marked online. On a listing failure every model of the endpoint is marked
    offline and the reason is recorded. Either way a ``sync_runs`` row is written
    and the endpoint's sync state updated. Raises :class:`NotFound` for an unknown
    endpoint and :class:`Conflict` for a disabled one.
    """
    async with ctx.sync_state.lock(endpoint_id):
        async with ctx.sessions() as session:
            endpoint = await session.get(Endpoint, endpoint_id)
        if endpoint is None:
            raise NotFound(f"no endpoint with id {endpoint_id}")
        if not endpoint.enabled:
            raise Conflict(f"endpoint {endpoint.name!r} is disabled; enable it to sync it")
        started = utcnow()
        error: str | None = None
        discovered: dict[str, DiscoveredModel] = {}
        try:
            listed = await _list(ctx, endpoint)
            discovered = {m.id: m for m in listed if matches_filter(m.id, endpoint.model_filter)}
        except ListingFailed as exc:
            error = f"sync of endpoint {endpoint.name!r} failed: {exc}"
        result = await _record(ctx, endpoint, discovered, error, started, trigger)
    if error:
        log.warning("%s", error)
    else:
        log.info(
            "synced endpoint %r: %d models (%d added, %d reactivated, %d deactivated)",
            endpoint.name,
            result.total,
            result.added,
            result.reactivated,
            result.deactivated,
        )
    return result


async def _record(
    ctx: Context,
    endpoint: Endpoint,
    discovered: dict[str, DiscoveredModel],
    error: str | None,
    started: datetime,
    trigger: str,
) -> SyncResult:
    now = utcnow()
    retagged = 0
    async with unit(ctx) as session:
        if await session.get(Endpoint, endpoint.id) is None:
            raise NotFound(f"endpoint {endpoint.name!r} was deleted during its sync")
        rows = {
            m.upstream_id: m
            for m in await session.scalars(select(Model).where(Model.endpoint_id == endpoint.id))
        }
        stored = {upstream_id: model.status for upstream_id, model in rows.items()}
        if error is None:
            changes = plan(stored, discovered)
            for upstream_id, found in discovered.items():
                row = rows.get(upstream_id)
                if row is None:
                    continue
                fresh = _metadata(found)
                if any(getattr(row, name) != value for name, value in fresh.items()):
                    retagged += 1
                    for name, value in fresh.items():
                        setattr(row, name, value)
            added = 0
            if changes.add:
                # Another process may sync the same endpoint at once: skip rows it inserted,
                # and count only the rows this one did.
                inserted = await session.execute(
                    insert_ignoring_duplicates(session, Model).returning(Model.id),
                    [
                        {
                            "endpoint_id": endpoint.id,
                            "upstream_id": m,
                            "status": "online",
                            "enabled": True,
                            "first_seen_at": now,
                            "last_seen_at": now,
                            **_metadata(discovered[m]),
                        }
                        for m in changes.add
                    ],
                )
                added = len(inserted.all())
            if discovered:
                await session.execute(
                    update(Model)
                    .where(Model.endpoint_id == endpoint.id, Model.upstream_id.in_(discovered))
                    .values(last_seen_at=now)
                    .execution_options(synchronize_session=False)
                )
            if changes.reactivate:
                await session.execute(
                    update(Model)
                    .where(
                        Model.endpoint_id == endpoint.id,
                        Model.upstream_id.in_(changes.reactivate),
                    )
                    .values(status="online")
                    .execution_options(synchronize_session=False)
                )
            deactivate = changes.deactivate
            counts = (added, len(changes.reactivate), len(deactivate))
        else:
            deactivate = tuple(m for m, status in stored.items() if status == "online")
            counts = (0, 0, len(deactivate))
        if deactivate:
            await session.execute(
                update(Model)
                .where(Model.endpoint_id == endpoint.id, Model.upstream_id.in_(deactivate))
                .values(status="offline")
            )
        total = len(discovered)
        await session.execute(
            update(Endpoint)
            .where(Endpoint.id == endpoint.id)
            .values(
                sync_status="error" if error else "ok",
                last_synced_at=now,
                last_sync_error=error,
                next_sync_at=now
                + timedelta(seconds=endpoint.sync_interval or ctx.settings.sync_interval),
                updated_at=Endpoint.updated_at,
            )
        )
        session.add(
            SyncRun(
                endpoint_id=endpoint.id,
                trigger=trigger,
                started_at=started,
                finished_at=now,
                status="error" if error else "ok",
                added=counts[0],
                reactivated=counts[1],
                deactivated=counts[2],
                total=total,
                error=error,
                replica=ctx.replica,
            )
        )
        changed = any(counts) or retagged > 0
        if changed or (error is None and changes.add):
            # An insert another process's sync made void still went out as a statement.
            declare(session, "endpoint", endpoint.id)
    ctx.metrics.sync_runs.labels(endpoint.name, "error" if error else "ok").inc()
    return SyncResult(
        endpoint_id=endpoint.id,
        endpoint_name=endpoint.name,
        status="error" if error else "ok",
        added=counts[0],
        reactivated=counts[1],
        deactivated=counts[2],
        total=total,
        synced_at=now,
        error=error,
        changed=changed,
    )
