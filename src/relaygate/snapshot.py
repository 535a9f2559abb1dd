"""The immutable in-memory view the request path reads (DESIGN.md, principle 1).

Built from the database by :func:`build_snapshot` whenever the configuration
changes and swapped in atomically by :class:`SnapshotStore`; authenticating a
key and routing a model are dictionary lookups on it, never a query.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from relaygate.credentials import CredentialsUnavailable, custom_auth, endpoint_key
from relaygate.db.tables import ApiKey, Endpoint, Model, User
from relaygate.providers import get_provider
from relaygate.vault import Vault

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid API key acts for. ``expires_at`` is a Unix time in seconds, or None."""

    key_id: int
    user_id: int
    role: str
    expires_at: float | None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True, slots=True)
class TargetSurface:
    """How to call one API surface of a target: for request paths (below the endpoint
    URL) starting with ``prefixes`` (empty: any path), send ``headers`` and, when the
    client sent none of that name, ``defaults``."""

    prefixes: tuple[str, ...]
    headers: tuple[tuple[bytes, bytes], ...]
    defaults: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class Target:
    """One endpoint's copy of a model: where to send it and how to authenticate."""

    endpoint_id: int
    endpoint_name: str
    base_url: str
    upstream_id: str
    surfaces: tuple[TargetSurface, ...]

    def surface(self, path: str) -> TargetSurface:
        """The surface serving ``path`` (e.g. ``/messages``); the last one serves the rest."""
        for surface in self.surfaces:
            if not surface.prefixes or path.startswith(surface.prefixes):
                return surface
        return self.surfaces[-1]


@dataclass(slots=True)
class Route:
    """A public model name and its online targets (empty: every copy is offline)."""

    name: str
    targets: tuple[Target, ...]
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    def pick(self) -> Target:
        """The next target, round-robin. Call only when ``targets`` is not empty."""
        return self.targets[next(self._turn) % len(self.targets)]


@dataclass(frozen=True, slots=True)
class ScheduledEndpoint:
    """What the sync scheduler needs of an enabled endpoint; interval in seconds or None."""

    id: int
    name: str
    sync_interval: float | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the request path needs, as of change counter ``version``."""

    version: int
    keys: dict[str, Principal]
    routes: dict[str, Route]
    model_list_body: bytes
    model_bodies: dict[str, bytes]
    endpoints: tuple[ScheduledEndpoint, ...]

    @classmethod
    def empty(cls) -> Snapshot:
        return cls(-1, {}, {}, b'{"object":"list","data":[]}', {}, ())


def public_name(model: Model) -> str:
    """What clients put in ``model``: the alias, or the upstream id when there is none."""
    return model.alias or model.upstream_id


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _encode(
    headers: dict[str, str] | tuple[tuple[str, str], ...],
) -> tuple[tuple[bytes, bytes], ...]:
    items = headers.items() if isinstance(headers, dict) else headers
    return tuple((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in items)


def _surfaces(endpoint: Endpoint, api_key: str | None) -> tuple[TargetSurface, ...]:
    """The provider's surfaces with this endpoint's key (and custom auth header) applied."""
    override = custom_auth(endpoint)
    return tuple(
        TargetSurface(
            surface.prefixes,
            _encode((override or surface.auth).headers(api_key)),
            _encode(surface.defaults),
        )
        for surface in get_provider(endpoint.type).surfaces
    )


def _listing_entry(name: str, model: Model, endpoint_name: str) -> dict[str, object]:
    """A ``/v1/models`` entry: OpenAI's model object (id, object, created, owned_by —
    https://platform.openai.com/docs/api-reference/models/object) plus the metadata
    relaygate keeps, as extra fields."""
    created = model.created or model.first_seen_at
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


async def build_snapshot(session: AsyncSession, vault: Vault, version: int) -> Snapshot:
    """Read keys, endpoints and models in ``session`` and build a new snapshot.

    Revoked keys are left out; expired ones are kept and refused by their
    ``expires_at``. Models of disabled endpoints, and disabled models, are left out.
    """
    keys: dict[str, Principal] = {}
    key_rows = await session.execute(
        select(ApiKey, User.role).join(User).where(ApiKey.revoked_at.is_(None))
    )
    for key, role in key_rows:
        keys[key.key_hash] = Principal(key.id, key.user_id, role, _epoch(key.expires_at))

    endpoints = (await session.scalars(select(Endpoint).where(Endpoint.enabled))).all()
    by_id: dict[int, tuple[Endpoint, tuple[TargetSurface, ...]]] = {}
    unusable: set[int] = set()
    for endpoint in endpoints:
        api_key = None
        try:
            api_key = endpoint_key(endpoint, vault)
        except CredentialsUnavailable as exc:
            # Never forward without the key: its models stay listed as unavailable.
            log.error("endpoint %r cannot be used: %s", endpoint.name, exc)
            unusable.add(endpoint.id)
        by_id[endpoint.id] = (endpoint, _surfaces(endpoint, api_key))

    models = (
        await session.scalars(
            select(Model)
            .where(Model.enabled, Model.endpoint_id.in_(by_id))
            # An aliased model wins its name over an upstream id that a sync added later.
            .order_by(Model.endpoint_id, Model.alias.is_(None), Model.id)
        )
    ).all()
    targets: dict[str, list[Target]] = {}
    listed: dict[str, dict[str, object]] = {}
    taken: set[tuple[int, str]] = set()
    for model in models:
        name = public_name(model)
        if (model.endpoint_id, name) in taken:
            log.warning(
                "model %r of endpoint %d is hidden: another model of that endpoint answers to %r",
                model.upstream_id,
                model.endpoint_id,
                name,
            )
            continue
        taken.add((model.endpoint_id, name))
        endpoint, auth = by_id[model.endpoint_id]
        targets.setdefault(name, [])
        if model.status != "online" or endpoint.id in unusable:
            continue
        targets[name].append(
            Target(endpoint.id, endpoint.name, endpoint.url.rstrip("/"), model.upstream_id, auth)
        )
        listed.setdefault(name, _listing_entry(name, model, endpoint.name))
    routes = {name: Route(name, tuple(found)) for name, found in targets.items()}
    return Snapshot(
        version=version,
        keys=keys,
        routes=routes,
        model_list_body=orjson.dumps({"object": "list", "data": list(listed.values())}),
        model_bodies={name: orjson.dumps(entry) for name, entry in listed.items()},
        endpoints=tuple(
            ScheduledEndpoint(e.id, e.name, e.sync_interval) for e, _ in by_id.values()
        ),
    )


class SnapshotStore:
    """Holds the current snapshot; :meth:`refresh` rebuilds it and swaps it in."""

    def __init__(self, loader: Callable[[], Awaitable[Snapshot]]):
        self._loader = loader
        self._lock = asyncio.Lock()
        self.current = Snapshot.empty()

    @property
    def loaded(self) -> bool:
        return self.current.version >= 0

    async def refresh(self) -> Snapshot:
        """Build a new snapshot from the database and make it current.

        Refreshes run one at a time, so an older view never replaces a newer one.
        """
        async with self._lock:
            self.current = await self._loader()
            return self.current
