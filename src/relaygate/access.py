"""Model access: who may use which model, with which provider key — resolved from the
database into the snapshot's per-caller views.

A user reaches the models granted (one by one, or as a whole endpoint) to any of
their groups, the built-in ``everyone`` group included; admins reach every model.
An API key may be limited further to some public names. A user's own provider key
for an endpoint replaces the endpoint's key in their requests; an endpoint that
requires users' own keys is usable only by callers who set one.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from relaygate import pooling
from relaygate.credentials import CredentialsUnavailable, custom_auth, endpoint_key
from relaygate.db.tables import (
    ApiKey,
    Endpoint,
    Group,
    GroupEndpoint,
    GroupMember,
    GroupModel,
    Model,
    User,
    UserProviderKey,
)
from relaygate.providers import ALL_ROUTES, get_provider
from relaygate.routes import RoutePolicy, policy_for
from relaygate.snapshot import (
    DEFAULT_TIMEOUTS,
    Principal,
    RateLimits,
    Route,
    ScheduledEndpoint,
    Snapshot,
    Target,
    TargetSurface,
    Timeouts,
    View,
)
from relaygate.vault import DecryptionFailed, Vault

log = logging.getLogger(__name__)
EVERYONE = "everyone"


def public_name(model: Model) -> str:
    """What clients put in ``model``: the alias, or the upstream id when there is none."""
    return model.alias or model.upstream_id


@dataclass(frozen=True, slots=True)
class Entry:
    """One routable model: its public name, endpoint, and ``/v1/models`` entry."""

    model_id: int
    name: str
    endpoint: Endpoint
    upstream_id: str
    online: bool
    listing: dict[str, object]
    timeouts: Timeouts
    fallback: str | None
    prices: tuple[float | None, float | None]
    routes: RoutePolicy


def _encode(items: dict[str, str] | tuple[tuple[str, str], ...]) -> tuple[tuple[bytes, bytes], ...]:
    pairs = items.items() if isinstance(items, dict) else items
    return tuple((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs)


def surfaces_for(endpoint: Endpoint, api_key: str | None) -> tuple[TargetSurface, ...]:
    """The provider's surfaces with ``api_key`` (and the endpoint's custom header) applied."""
    override = custom_auth(endpoint)
    built = []
    for surface in get_provider(endpoint.type).surfaces:
        headers = _encode((override or surface.auth).headers(api_key))
        built.append(
            TargetSurface(
                surface.prefixes,
                headers,
                _encode(surface.defaults),
                frozenset(name for name, _ in headers),
            )
        )
    return tuple(built)


def _listing_entry(name: str, model: Model, endpoint_name: str) -> dict[str, object]:
    """A ``/v1/models`` entry: OpenAI's model object (id, object, created, owned_by —
    https://platform.openai.com/docs/api-reference/models/object) plus the metadata
    relaygate keeps, as extra fields."""
    created: datetime = model.created or model.first_seen_at
    return {
        "id": name,
        "object": "model",
        "created": int(created.timestamp()),
        "owned_by": endpoint_name,
        "display_name": model.display_name,
        "context_window": model.context_window,
        "max_output_tokens": model.max_output_tokens,
        "capabilities": list(model.capabilities or []),
    }


class _Views:
    """Builds views, sharing one among callers with the same access and own keys."""

    def __init__(self, entries: list[Entry], shared: dict[int, tuple[TargetSurface, ...] | None]):
        self._entries = entries
        self._shared = shared
        self._cache: dict[tuple[object, ...], View] = {}

    def get(
        self,
        allowed: frozenset[int] | None,
        own: dict[int, tuple[TargetSurface, ...]],
        names: frozenset[str] | None,
        owner: int,
    ) -> View:
        """The view of models ``allowed`` (None: all), narrowed to ``names`` (None: no
        limit), with ``own`` surfaces replacing the shared ones per endpoint id."""
        key = (allowed, names, owner if own else None)
        view = self._cache.get(key)
        if view is None:
            view = self._cache[key] = self._build(allowed, own, names, owner)
        return view

    def _build(
        self,
        allowed: frozenset[int] | None,
        own: dict[int, tuple[TargetSurface, ...]],
        names: frozenset[str] | None,
        owner: int,
    ) -> View:
        targets: dict[str, list[Target]] = {}
        endpoint_ids: set[int] = set()
        missing: dict[str, list[tuple[int, str]]] = defaultdict(list)
        listed: dict[str, dict[str, object]] = {}
        fallbacks: dict[str, str] = {}
        for entry in self._entries:
            if allowed is not None and entry.model_id not in allowed:
                continue
            if names is not None and entry.name not in names:
                continue
            targets.setdefault(entry.name, [])
            endpoint_ids.add(entry.endpoint.id)
            if entry.fallback and entry.name not in fallbacks:
                fallbacks[entry.name] = entry.fallback
            if not entry.online:
                continue
            endpoint = entry.endpoint
            own_surfaces = own.get(endpoint.id)
            surfaces = own_surfaces or self._shared.get(endpoint.id)
            if surfaces is None:  # requires the caller's own key, and they have none
                missing[entry.name].append((endpoint.id, endpoint.name))
                listed.setdefault(entry.name, entry.listing)
                continue
            if not surfaces:  # the endpoint's own key is unusable (logged at build)
                continue
            targets[entry.name].append(
                Target(
                    endpoint.id,
                    endpoint.name,
                    endpoint.url.rstrip("/"),
                    entry.upstream_id,
                    surfaces,
                    entry.routes,
                    own_key=own_surfaces is not None,
                    health_key=endpoint.id if own_surfaces is None else (endpoint.id, owner),
                    timeouts=entry.timeouts,
                    input_price=entry.prices[0],
                    output_price=entry.prices[1],
                )
            )
            listed.setdefault(entry.name, entry.listing)
        routes = {
            name: Route(name, tuple(found), tuple(missing.get(name, ())), fallbacks.get(name))
            for name, found in targets.items()
        }
        return View(
            routes=routes,
            model_list_body=orjson.dumps({"object": "list", "data": list(listed.values())}),
            model_bodies={name: orjson.dumps(entry) for name, entry in listed.items()},
            endpoint_ids=frozenset(endpoint_ids),
        )


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


async def build_snapshot(
    session: AsyncSession, vault: Vault, version: int, timeouts: Timeouts = DEFAULT_TIMEOUTS
) -> Snapshot:
    """Read keys, users, groups, grants, endpoints and models in ``session`` and build
    a new snapshot; ``timeouts`` are the defaults an endpoint's own timeouts override.

    Revoked keys are left out; expired ones are kept and refused by their
    ``expires_at``. Models of disabled endpoints, and disabled models, are left out;
    of two models of one endpoint with one public name, the aliased one wins.
    """
    endpoints = await enabled_endpoints(session)
    shared: dict[int, tuple[TargetSurface, ...] | None] = {}
    for endpoint in endpoints.values():
        if endpoint.requires_user_key:
            shared[endpoint.id] = None
            continue
        try:
            shared[endpoint.id] = surfaces_for(endpoint, endpoint_key(endpoint, vault))
        except UnicodeEncodeError:
            log.error(
                "endpoint %r cannot be used: its key or auth prefix is not ASCII", endpoint.name
            )
            shared[endpoint.id] = ()
        except CredentialsUnavailable as exc:
            # Never forward without the key: its models stay listed as unavailable.
            log.error("endpoint %r cannot be used: %s", endpoint.name, exc)
            shared[endpoint.id] = ()

    serving, _ = await serving_models(session, endpoints)
    entries: list[Entry] = []
    by_endpoint: dict[int, set[int]] = defaultdict(set)
    policies = {
        e.id: policy_for(get_provider(e.type).routes, e.extra_routes) for e in endpoints.values()
    }
    every_route = ALL_ROUTES
    for policy in policies.values():
        every_route = every_route.merged(policy)
    for model in serving:
        name = public_name(model)
        endpoint = endpoints[model.endpoint_id]
        online = model.status == "online"
        entries.append(
            Entry(
                model.id,
                name,
                endpoint,
                model.upstream_id,
                online,
                _listing_entry(name, model, endpoint.name),
                timeouts.merged(endpoint.timeouts),
                model.fallback_model if model.fallback_model != name else None,
                (model.input_cost_per_million_tokens, model.output_cost_per_million_tokens),
                policies[endpoint.id],
            )
        )
        by_endpoint[endpoint.id].add(model.id)

    group_models: dict[int, set[int]] = defaultdict(set)
    for group_id, model_id in await session.execute(
        select(GroupModel.group_id, GroupModel.model_id)
    ):
        group_models[group_id].add(model_id)
    for group_id, endpoint_id in await session.execute(
        select(GroupEndpoint.group_id, GroupEndpoint.endpoint_id)
    ):
        group_models[group_id] |= by_endpoint.get(endpoint_id, set())
    everyone = await session.scalar(select(Group.id).where(Group.name == EVERYONE))
    user_groups: dict[int, set[int]] = defaultdict(set)
    for group_id, user_id in await session.execute(
        select(GroupMember.group_id, GroupMember.user_id)
    ):
        user_groups[user_id].add(group_id)

    own_keys: dict[int, dict[int, tuple[TargetSurface, ...]]] = defaultdict(dict)
    for row in await session.scalars(
        select(UserProviderKey).where(UserProviderKey.endpoint_id.in_(endpoints))
    ):
        try:
            secret = vault.decrypt(row.api_key_encrypted)
            own = surfaces_for(endpoints[row.endpoint_id], secret)
        except (DecryptionFailed, UnicodeEncodeError):
            log.error("a user's own key for endpoint %d cannot be used", row.endpoint_id)
            continue
        own_keys[row.user_id][row.endpoint_id] = own

    views = _Views(entries, shared)
    keys: dict[str, Principal] = {}
    for key, role, user_rpm, user_tpm in await session.execute(
        select(ApiKey, User.role, User.requests_per_minute, User.tokens_per_minute)
        .join(User)
        .where(ApiKey.revoked_at.is_(None))
    ):
        allowed: frozenset[int] | None = None
        if role != "admin":
            groups = user_groups.get(key.user_id, set()) | ({everyone} if everyone else set())
            allowed = frozenset().union(*(group_models.get(g, set()) for g in groups))
        names = frozenset(key.allowed_models) if key.allowed_models is not None else None
        view = views.get(allowed, own_keys.get(key.user_id, {}), names, key.user_id)
        limits = RateLimits.of(key.requests_per_minute, key.tokens_per_minute, user_rpm, user_tpm)
        keys[key.key_hash] = Principal(
            key.id, key.user_id, role, _epoch(key.expires_at), view, names, limits
        )

    return Snapshot(
        version=version,
        keys=keys,
        known_names=frozenset(entry.name for entry in entries),
        endpoints=tuple(
            ScheduledEndpoint(e.id, e.name, e.sync_interval) for e in endpoints.values()
        ),
        routes=every_route,
    )


async def enabled_endpoints(session: AsyncSession) -> dict[int, Endpoint]:
    """The enabled endpoints in ``session``, by id."""
    return {e.id: e for e in await session.scalars(select(Endpoint).where(Endpoint.enabled))}


async def serving_models(
    session: AsyncSession, endpoints: Mapping[int, Endpoint]
) -> tuple[list[Model], dict[int, pooling.NameConflict]]:
    """Which enabled models of ``endpoints`` (the enabled ones, by id) serve their public
    name: those models, ordered by endpoint, aliased first, then id; and, by model id,
    the conflicts of those that serve nothing because another endpoint's model holds
    their name (see :mod:`relaygate.pooling`; every model claims its name, disabled ones
    and those of disabled endpoints too, and fallback names are reserved). The snapshot
    routes by this, and the admin API, the CLI and the console show its conflicts."""
    every = {e.id: e for e in await session.scalars(select(Endpoint))}
    models = await session.scalars(
        select(Model).order_by(
            Model.endpoint_id, Model.enabled.desc(), Model.alias.is_(None), Model.id
        )
    )
    claimants = list(routable_models(models, every))
    reserved: dict[str, pooling.Claim] = {}
    for model in claimants:
        if model.fallback_model and model.fallback_model not in reserved:
            endpoint = every[model.endpoint_id]
            reserved[model.fallback_model] = pooling.Claim(
                model.id, endpoint.id, model.fallback_model, False, endpoint.pool
            )
    served, conflicts = pooling.resolve((claim_of(model, every) for model in claimants), reserved)
    usable = [
        model
        for model in claimants
        if model.id in served and model.enabled and model.endpoint_id in endpoints
    ]
    return usable, conflicts


def routable_models(models: Iterable[Model], endpoints: Mapping[int, Endpoint]) -> Iterator[Model]:
    """``models`` (ordered by endpoint, aliased first, then id) less those hidden by another
    model of their endpoint answering to the same public name (the aliased one wins)."""
    taken: set[tuple[int, str]] = set()
    for model in models:
        name = public_name(model)
        if (model.endpoint_id, name) in taken:
            log.warning(
                "model %r of endpoint %r is hidden: another model of that endpoint answers to %r",
                model.upstream_id,
                endpoints[model.endpoint_id].name,
                name,
            )
            continue
        taken.add((model.endpoint_id, name))
        yield model


def claim_of(model: Model, endpoints: Mapping[int, Endpoint]) -> pooling.Claim:
    """``model``'s claim to its public name, for :func:`relaygate.pooling.resolve`."""
    return pooling.Claim(
        model.id,
        model.endpoint_id,
        public_name(model),
        model.alias is not None,
        endpoints[model.endpoint_id].pool,
    )
