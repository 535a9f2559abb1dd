"""Endpoints: create, read, update, delete, validate — and sync them when they change."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import ConfigDict
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from relaygate.changes import unit
from relaygate.context import Context
from relaygate.credentials import key_source
from relaygate.db.lookup import find_by_id_or_name
from relaygate.db.tables import Endpoint, Group, GroupEndpoint, Model, utcnow
from relaygate.endpoint_spec import EndpointSpec, EndpointTimeouts, EndpointUpdate
from relaygate.errors import BadRequest, Conflict, ListingFailed
from relaygate.health import Health, HealthState
from relaygate.providers import Access, AuthScheme, get_provider
from relaygate.routes import parse_routes
from relaygate.services.endpoint_fields import (
    api_modes,
    check_api_mode,
    check_batch_concurrency,
    check_env_name,
    check_header,
    check_interval,
    check_name,
    check_pool,
    check_prefix,
    check_provider_key,
    check_timeouts,
    check_url,
)
from relaygate.settings import Settings
from relaygate.sync.service import SyncResult, sync_endpoint
from relaygate.vault import key_hint

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EndpointSync:
    """An endpoint's last sync (``status`` ``never``, ``ok`` or ``error``, with the
    error's text) and its models online and offline."""

    status: Literal["never", "ok", "error"]
    last_synced_at: datetime | None
    error: str | None
    models_online: int
    models_offline: int


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """An endpoint as shown to operators (the admin API serves it as it is): never its
    key, only whether it has one and where it comes from."""

    __pydantic_config__ = ConfigDict(use_attribute_docstrings=True)

    id: int
    name: str
    type: str
    url: str
    enabled: bool
    has_api_key: bool
    api_key_source: Literal["stored", "env", "none"]
    api_key_env: str | None
    api_key_hint: str | None
    auth_header: str | None
    auth_prefix: str | None
    requires_user_key: bool
    model_filter: list[str]
    sync_interval: float | None
    timeouts: dict[str, float]
    """The endpoint's own timeouts in seconds (over the settings): connect, first_byte,
    idle, total."""
    pool: str | None
    """Endpoints of one pool serve their models of the same name together."""
    extra_routes: list[str]
    """Routes forwarded besides the provider type's, ``"METHOD /path"``."""
    messages_api: str
    """How Anthropic Messages requests reach it: auto, native or translate"""
    responses_api: str
    """How OpenAI Responses requests reach it: auto, native or translate"""
    chat_api: str
    """How chat-completions requests reach it: auto, native or translate"""
    api_found: dict[str, str]
    """What ``auto`` found at the last sync: API name -> native or translate"""
    batch_concurrency: int | None
    """Batch requests one process sends it at once; None: the setting's."""
    created_at: datetime
    updated_at: datetime
    sync: EndpointSync
    health: HealthState
    """Passive health as this process sees it: ``cooling_down`` endpoints are skipped"""


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """The outcome of :func:`validate_endpoint`: listed model ids, or the reason it failed."""

    ok: bool
    models: list[str] = field(default_factory=list)
    error: str | None = None


def chosen_timeouts(
    timeouts: EndpointTimeouts | dict[str, float] | None,
) -> dict[str, float] | None:
    """The timeouts a spec or a change chose, by name: the API's are checked by their
    schema; the console and the CLI build theirs unchecked (``unchecked``) with the
    mapping they read, which :func:`check_timeouts` checks by name and range."""
    if isinstance(timeouts, EndpointTimeouts):
        return timeouts.chosen()
    return timeouts


UNSENT = object()
"""A field a change did not send (``None`` is sent: it clears)."""

_SYNC_STATUS: dict[str, Literal["never", "ok", "error"]] = {
    "never": "never",
    "ok": "ok",
    "error": "error",
}


async def _info(session: AsyncSession, endpoint: Endpoint, health: Health) -> EndpointInfo:
    rows = await session.execute(
        select(Model.status, func.count())
        .where(Model.endpoint_id == endpoint.id)
        .group_by(Model.status)
    )
    counts: dict[str, int] = {status: count for status, count in rows}
    apis = api_modes(endpoint)
    return EndpointInfo(
        id=endpoint.id,
        name=endpoint.name,
        type=endpoint.type,
        url=endpoint.url,
        enabled=endpoint.enabled,
        has_api_key=key_source(endpoint) != "none",
        api_key_source=key_source(endpoint),
        api_key_env=endpoint.api_key_env,
        api_key_hint=endpoint.api_key_hint,
        auth_header=endpoint.auth_header,
        auth_prefix=endpoint.auth_prefix if endpoint.auth_header else None,
        requires_user_key=endpoint.requires_user_key,
        model_filter=list(endpoint.model_filter or []),
        sync_interval=endpoint.sync_interval,
        timeouts=dict(endpoint.timeouts or {}),
        pool=endpoint.pool,
        extra_routes=list(endpoint.extra_routes or []),
        messages_api=apis.messages_api,
        responses_api=apis.responses_api,
        chat_api=apis.chat_api,
        api_found=apis.found,
        batch_concurrency=endpoint.batch_concurrency,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
        sync=EndpointSync(
            status=_SYNC_STATUS.get(endpoint.sync_status, "never"),
            last_synced_at=endpoint.last_synced_at,
            error=endpoint.last_sync_error,
            models_online=counts.get("online", 0),
            models_offline=counts.get("offline", 0),
        ),
        health=health.state(endpoint.id),
    )


async def find_endpoint(session: AsyncSession, ident: int | str) -> Endpoint:
    """The endpoint with id ``ident`` (or that name); raises :class:`NotFound`."""
    return await find_by_id_or_name(session, Endpoint, ident, "endpoint")


async def list_endpoints(ctx: Context) -> list[EndpointInfo]:
    """Every endpoint, in id order."""
    async with ctx.sessions() as session:
        endpoints = (await session.scalars(select(Endpoint).order_by(Endpoint.id))).all()
        return [await _info(session, endpoint, ctx.health) for endpoint in endpoints]


async def get_endpoint(ctx: Context, ident: int | str) -> EndpointInfo:
    """One endpoint by id or name; raises :class:`NotFound`."""
    async with ctx.sessions() as session:
        return await _info(session, await find_endpoint(session, ident), ctx.health)


def _set_key(
    ctx: Context, endpoint: Endpoint, api_key: str | None, api_key_env: str | None
) -> None:
    """Give the endpoint one kind of key: stored (encrypted), environment, or none."""
    api_key = check_provider_key(api_key, "api_key", ctx.settings.max_provider_key_bytes)
    if api_key and api_key_env:
        raise BadRequest("give api_key or api_key_env, not both", param="api_key_env")
    endpoint.api_key_env = check_env_name(ctx.settings, api_key_env)
    endpoint.api_key_encrypted = ctx.vault.encrypt(api_key) if api_key else None
    endpoint.api_key_hint = key_hint(api_key) if api_key else None


def check_spec(settings: Settings, spec: EndpointSpec) -> Endpoint:
    """A validated, unsaved endpoint row without its key; raises :class:`BadRequest`."""
    get_provider(spec.type)
    if spec.api_key and spec.api_key_env:
        raise BadRequest("give api_key or api_key_env, not both", param="api_key_env")
    return Endpoint(
        name=check_name(spec.name),
        type=spec.type,
        url=check_url(spec.url),
        auth_header=check_header(spec.auth_header),
        auth_prefix=check_prefix(spec.auth_prefix) if spec.auth_header else None,
        model_filter=list(spec.model_filter),
        enabled=spec.enabled,
        sync_interval=check_interval(spec.sync_interval),
        timeouts=check_timeouts(chosen_timeouts(spec.timeouts)),
        api_key_env=check_env_name(settings, spec.api_key_env),
        requires_user_key=spec.requires_user_key,
        pool=check_pool(spec.pool),
        extra_routes=parse_routes(spec.extra_routes) or None,
        messages_api=check_api_mode("messages_api", spec.messages_api),
        responses_api=check_api_mode("responses_api", spec.responses_api),
        chat_api=check_api_mode("chat_api", spec.chat_api),
        batch_concurrency=check_batch_concurrency(spec.batch_concurrency),
    )


def _next_sync(ctx: Context, endpoint: Endpoint) -> datetime:
    """When the scheduler should next sync ``endpoint`` if it is synced now."""
    return utcnow() + timedelta(seconds=endpoint.sync_interval or ctx.settings.sync_interval)


def new_endpoint(ctx: Context, spec: EndpointSpec) -> Endpoint:
    """A validated, unsaved endpoint row with its key encrypted; raises :class:`BadRequest`."""
    endpoint = check_spec(ctx.settings, spec)
    _set_key(ctx, endpoint, spec.api_key, spec.api_key_env)
    return endpoint


async def grant_endpoint_to(session: AsyncSession, endpoint_id: int, groups: list[str]) -> None:
    """Grant the whole endpoint to the named groups; raises BadRequest for an unknown one."""
    for name in dict.fromkeys(groups):
        group_id = await session.scalar(select(Group.id).where(Group.name == name))
        if group_id is None:
            raise BadRequest(f"no group named {name!r}", param="groups")
        session.add(GroupEndpoint(group_id=group_id, endpoint_id=endpoint_id))


async def create_endpoint(ctx: Context, spec: EndpointSpec, *, sync: bool = True) -> EndpointInfo:
    """Store a new endpoint (its key encrypted) and, when ``sync`` and enabled, sync it now.

    Raises :class:`BadRequest` for a bad name, type, URL, key source or interval and
    :class:`Conflict` when the name is taken. A failing first sync does not undo
    the creation: its error is in the returned endpoint's sync state.
    """
    endpoint = new_endpoint(ctx, spec)
    enabled = spec.enabled
    if sync and enabled:  # synced below: the scheduler's first is one interval later
        endpoint.next_sync_at = _next_sync(ctx, endpoint)
    try:
        async with unit(ctx) as session:
            session.add(endpoint)
            await session.flush()
            await grant_endpoint_to(session, endpoint.id, spec.groups)
    except IntegrityError:
        raise Conflict(
            f"an endpoint named {endpoint.name!r} already exists", param="name"
        ) from None
    log.info("created endpoint %r (%s)", endpoint.name, endpoint.url)
    if sync and enabled:
        await sync_endpoint(ctx, endpoint.id, trigger="created")
    return await get_endpoint(ctx, endpoint.id)


async def update_endpoint(
    ctx: Context, ident: int | str, changes: EndpointUpdate, *, sync: bool = True
) -> EndpointInfo:
    """Apply the fields ``changes`` sent; re-sync when the URL, key or filter changed or
    it was enabled (here with ``sync``; else the scheduler of a running server syncs it as
    soon as it sees the change).

    Raises :class:`NotFound`, :class:`BadRequest` or :class:`Conflict` (name taken).
    """
    sent = changes.changes()
    if "timeouts" in sent:
        sent["timeouts"] = chosen_timeouts(changes.timeouts)
    try:
        async with unit(ctx) as session:
            endpoint = await find_endpoint(session, ident)
            was_enabled = endpoint.enabled
            resync = _apply_source(ctx, endpoint, sent)
            resync |= _apply_settings(endpoint, sent)
            if sent.get("enabled") is not None:
                endpoint.enabled = sent["enabled"]
                resync |= endpoint.enabled and not was_enabled
            endpoint_id, enabled = endpoint.id, endpoint.enabled
            if resync and enabled:
                # Synced below, not by the scheduler at the same time; or due at once.
                endpoint.next_sync_at = _next_sync(ctx, endpoint) if sync else None
    except IntegrityError:
        raise Conflict(f"an endpoint named {changes.name!r} already exists", param="name") from None
    if resync and enabled and sync:
        await sync_endpoint(ctx, endpoint_id, trigger="updated")
    return await get_endpoint(ctx, endpoint_id)


def _apply_source(ctx: Context, endpoint: Endpoint, sent: dict[str, Any]) -> bool:
    """Set what ``sent`` changes of where and how the endpoint is reached (name, URL,
    key, auth header, model filter); whether a re-sync is due."""
    resync = False
    if "name" in sent:
        endpoint.name = check_name(sent["name"])
    if "url" in sent:
        url = check_url(sent["url"])
        resync |= url != endpoint.url
        endpoint.url = url
    new_key, new_env = sent.get("api_key", UNSENT), sent.get("api_key_env", UNSENT)
    if isinstance(new_key, str) and new_key and isinstance(new_env, str) and new_env:
        raise BadRequest("give api_key or api_key_env, not both", param="api_key_env")
    if new_key is not UNSENT and (new_key or new_env is UNSENT):
        resync = True
        _set_key(ctx, endpoint, new_key, None)
    elif new_env is not UNSENT and new_env != endpoint.api_key_env:
        resync = True
        _set_key(ctx, endpoint, None, new_env)
    if "auth_header" in sent:
        header = check_header(sent["auth_header"])
        resync |= header != endpoint.auth_header
        endpoint.auth_header = header
        if header is None:
            endpoint.auth_prefix = None
    if "auth_prefix" in sent and endpoint.auth_header:
        prefix = check_prefix(sent["auth_prefix"])
        resync |= prefix != endpoint.auth_prefix
        endpoint.auth_prefix = prefix
    if "model_filter" in sent:
        resync |= list(sent["model_filter"]) != list(endpoint.model_filter or [])
        endpoint.model_filter = list(sent["model_filter"])
    return resync


def _apply_settings(endpoint: Endpoint, sent: dict[str, Any]) -> bool:
    """Set what ``sent`` changes of how the endpoint is used (its own key requirement,
    sync interval, timeouts, pool, routes, batch concurrency, API modes); no re-sync is
    due for any of them, so this returns False."""
    if "requires_user_key" in sent:
        endpoint.requires_user_key = sent["requires_user_key"]
    if "sync_interval" in sent:
        interval = check_interval(sent["sync_interval"])
        if interval != endpoint.sync_interval:
            endpoint.sync_interval = interval
            endpoint.next_sync_at = None  # the new interval starts now
    if "timeouts" in sent:
        endpoint.timeouts = check_timeouts(sent["timeouts"])
    if "pool" in sent:
        endpoint.pool = check_pool(sent["pool"])
    if "extra_routes" in sent:
        endpoint.extra_routes = parse_routes(sent["extra_routes"]) or None
    if "batch_concurrency" in sent:
        endpoint.batch_concurrency = check_batch_concurrency(sent["batch_concurrency"])
    for api in ("messages_api", "responses_api", "chat_api"):
        mode = sent.get(api)
        if mode is not None and mode != getattr(endpoint, api):
            setattr(endpoint, api, check_api_mode(api, mode))
            endpoint.api_found = None  # what auto found was for the old mode
    return False


async def wait_for_server_sync(
    ctx: Context, endpoint_id: int, since: datetime | None, *, claim_within: float
) -> EndpointInfo | None:
    """Wait for another process (a running server's scheduler) to sync an endpoint that
    is due now: returns the endpoint once its last sync is no longer ``since``, or None
    when no process claimed the sync within ``claim_within`` seconds (no server follows
    this database) or the claimed sync did not end within ``sync_timeout`` more."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + claim_within
    claimed = False
    while loop.time() < deadline:
        await asyncio.sleep(0.1)
        async with ctx.sessions() as session:
            row = (
                await session.execute(
                    select(Endpoint.next_sync_at, Endpoint.last_synced_at).where(
                        Endpoint.id == endpoint_id
                    )
                )
            ).first()
        if row is None:
            return None
        if row.last_synced_at is not None and row.last_synced_at != since:
            return await get_endpoint(ctx, endpoint_id)
        if row.next_sync_at is not None and not claimed:
            claimed = True
            deadline = loop.time() + ctx.settings.sync_timeout + 2
    return None


async def delete_endpoint(ctx: Context, ident: int | str) -> int:
    """Delete an endpoint with its models and sync history; returns how many models went.

    Raises :class:`NotFound`.
    """
    async with ctx.sessions() as session:
        endpoint_id = (await find_endpoint(session, ident)).id
    async with ctx.sync_locks.lock(endpoint_id), unit(ctx) as session:
        endpoint = await find_endpoint(session, endpoint_id)
        removed = await session.scalar(
            select(func.count()).select_from(Model).where(Model.endpoint_id == endpoint.id)
        )
        await session.execute(delete(Model).where(Model.endpoint_id == endpoint.id))
        await session.delete(endpoint)
    log.info("deleted endpoint %r and its %d models", endpoint.name, removed or 0)
    return int(removed or 0)


async def sync_by_ident(ctx: Context, ident: int | str) -> SyncResult:
    """Sync one endpoint now, by id or name."""
    async with ctx.sessions() as session:
        endpoint = await find_endpoint(session, ident)
    return await sync_endpoint(ctx, endpoint.id, trigger="manual")


async def validate_endpoint(
    ctx: Context,
    *,
    type: str,
    url: str,
    api_key: str | None = None,
    auth_header: str | None = None,
    auth_prefix: str | None = None,
) -> ValidationResult:
    """List the models at ``url`` without saving anything.

    Raises :class:`BadRequest` for an unknown type or a malformed URL; a listing
    failure is returned as ``ok=False`` with its reason.
    """
    provider = get_provider(type)
    base = check_url(url)
    try:
        header = check_header(auth_header)
        custom = AuthScheme(header, auth_prefix or "") if header else None
        models = await provider.list_models(
            ctx.http,
            Access(
                base,
                api_key,
                custom,
                max_bytes=ctx.settings.max_listing_bytes,
                max_models=ctx.settings.max_listing_models,
            ),
            ctx.settings.sync_timeout,
        )
    except ListingFailed as exc:
        return ValidationResult(ok=False, error=str(exc))
    return ValidationResult(ok=True, models=[m.id for m in models])
