"""Sync one endpoint: list its models, reconcile, and record the outcome as a change."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import Field
from sqlalchemy import Insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from relaygate.changes import declare, unit
from relaygate.context import Context
from relaygate.credentials import endpoint_access
from relaygate.db.tables import Endpoint, Model, SyncRun, utcnow
from relaygate.errors import Conflict, CredentialsUnavailable, ListingFailed, NotFound
from relaygate.providers import DiscoveredModel, get_provider
from relaygate.sync.reconcile import matches_filter, plan
from relaygate.wording import plural

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncResult:
    """The outcome of one sync. ``status`` is ``ok`` or ``error``; counts are models.
    The admin API serves it as it is (``endpoint_name`` as ``endpoint``)."""

    endpoint_id: int
    endpoint_name: Annotated[str, Field(serialization_alias="endpoint")]
    status: Literal["ok", "error"]
    added: int
    reactivated: int
    deactivated: int
    total: int
    synced_at: datetime
    error: str | None
    changed: Annotated[bool, Field(exclude=True)] = False
    """Whether the catalogue changed (models added, re-/deactivated, or their metadata);
    not in the admin API's answer."""


@dataclass(frozen=True, slots=True)
class SyncRunInfo:
    """One row of an endpoint's sync history."""

    id: int
    trigger: str
    started_at: datetime
    finished_at: datetime
    status: Literal["ok", "error"]
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
                "ok" if r.status == "ok" else "error",
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
_METADATA_COLUMNS = tuple(getattr(Model, name) for name in (*METADATA, "capabilities"))
SLICE = 200
"""Rows written per statement, and read between two yields to the event loop."""


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
    async with ctx.sync_locks.lock(endpoint_id):
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
            for count, model in enumerate(listed, 1):
                # A name with control characters (line breaks, terminal escapes) would
                # write into logs, tables and terminals: such an entry is not a model.
                if model.id.isprintable() and matches_filter(model.id, endpoint.model_filter):
                    discovered[model.id] = model
                if count % SLICE == 0:
                    await asyncio.sleep(0)
        except ListingFailed as exc:
            error = f"sync of endpoint {endpoint.name!r} failed: {exc}"
        with ctx.audit.acting(None):  # what a sync finds is no administrator's change
            result = await _record(ctx, endpoint, discovered, error, started, trigger)
    _log_outcome(result, endpoint.sync_status, endpoint.last_sync_error)
    return result


def _log_outcome(result: SyncResult, before: str, error_before: str | None) -> None:
    """Log a sync when it says something new: the first sync, models that appeared,
    returned or vanished, a failure (once per cause, not at every interval) and the
    recovery. A sync that changed nothing, or failed as the last one did, logs at
    ``debug`` only. ``before`` and ``error_before`` are the endpoint's sync status and
    error as the previous sync left them."""
    counts = (
        f"{plural(result.total, 'model')} ({result.added} added, {result.reactivated} reactivated, "
        f"{result.deactivated} deactivated)"
    )
    if result.error is not None:
        level = logging.DEBUG if result.error == error_before else logging.WARNING
        log.log(level, "%s", result.error)
    elif before == "error":
        log.info("endpoint %r recovered: %s", result.endpoint_name, counts)
    elif before == "never" or result.added or result.reactivated or result.deactivated:
        log.info("synced endpoint %r: %s", result.endpoint_name, counts)
    else:
        log.debug("synced endpoint %r: %s", result.endpoint_name, counts)


async def _set_status(
    session: AsyncSession, endpoint_id: int, upstream_ids: tuple[str, ...], status: str
) -> None:
    """Set the status of the endpoint's models ``upstream_ids``, :data:`SLICE` at a time."""
    for start in range(0, len(upstream_ids), SLICE):
        await session.execute(
            update(Model)
            .where(
                Model.endpoint_id == endpoint_id,
                Model.upstream_id.in_(upstream_ids[start : start + SLICE]),
            )
            .values(status=status)
            .execution_options(synchronize_session=False)
        )
        await asyncio.sleep(0)


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
        stored: dict[str, str] = {}
        retag: list[dict[str, Any]] = []
        result = await session.stream(
            select(Model.id, Model.upstream_id, Model.status, *_METADATA_COLUMNS)
            .where(Model.endpoint_id == endpoint.id)
            .execution_options(yield_per=SLICE)
        )
        async for rows in result.partitions(SLICE):
            for row in rows:
                stored[row.upstream_id] = row.status
                found = discovered.get(row.upstream_id) if error is None else None
                if found is not None:
                    fresh = _metadata(found)
                    if any(getattr(row, name) != value for name, value in fresh.items()):
                        retag.append({"id": row.id, **fresh})
            await asyncio.sleep(0)  # a catalogue of 100,000 models never holds the loop
        if error is None:
            changes = plan(stored, discovered)
            for start in range(0, len(retag), SLICE):
                await session.execute(update(Model), retag[start : start + SLICE])
            retagged = len(retag)
            added = 0
            # Another process may sync the same endpoint at once: skip rows it inserted,
            # and count only the rows this one did.
            for start in range(0, len(changes.add), SLICE):
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
                        for m in changes.add[start : start + SLICE]
                    ],
                )
                added += len(inserted.all())
                await asyncio.sleep(0)
            await _set_status(session, endpoint.id, changes.reactivate, "online")
            deactivate = changes.deactivate
            counts = (added, len(changes.reactivate), len(deactivate))
        else:
            deactivate = tuple(m for m, status in stored.items() if status == "online")
            counts = (0, 0, len(deactivate))
        await _set_status(session, endpoint.id, deactivate, "offline")
        if error is None and discovered:
            # Every model the listing named is online now, and only those.
            await session.execute(
                update(Model)
                .where(Model.endpoint_id == endpoint.id, Model.status == "online")
                .values(last_seen_at=now)
                .execution_options(synchronize_session=False)
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
                # What auto mode found about the endpoint's APIs holds until this sync.
                **({"api_found": None} if endpoint.api_found else {}),
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
        if changed or (error is None and changes.add) or endpoint.api_found:
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
