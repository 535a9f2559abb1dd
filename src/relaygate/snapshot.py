"""The immutable in-memory view the request path reads (DESIGN.md, principle 1).

Built from the database by :func:`relaygate.access.build_snapshot` whenever the
configuration changes and swapped in atomically by :class:`SnapshotStore`;
authenticating a key and routing a model are dictionary lookups on it, never a query.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

from relaygate.providers import ALL_ROUTES
from relaygate.routes import RoutePolicy

EMPTY_LIST_BODY = b'{"object":"list","data":[]}'
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TargetSurface:
    """How to call one API surface of a target: for request paths (below the endpoint
    URL) starting with ``prefixes`` (empty: any path), send ``headers`` and, when the
    client sent none of that name, ``defaults``."""

    prefixes: tuple[str, ...]
    headers: tuple[tuple[bytes, bytes], ...] = field(repr=False)
    defaults: tuple[tuple[bytes, bytes], ...] = ()
    header_names: frozenset[bytes] = frozenset()
    """Names in ``headers``: a client's header of the same name is never forwarded."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds an upstream request may take: to connect, to the response headers
    (``first_byte``), between two chunks of the body (``idle``) and in all (``total``)."""

    connect: float
    first_byte: float
    idle: float
    total: float

    def merged(self, overrides: dict[str, float] | None) -> Timeouts:
        """These timeouts with an endpoint's ``overrides`` (same names) applied."""
        if not overrides:
            return self
        return Timeouts(
            connect=overrides.get("connect", self.connect),
            first_byte=overrides.get("first_byte", self.first_byte),
            idle=overrides.get("idle", self.idle),
            total=overrides.get("total", self.total),
        )


DEFAULT_TIMEOUTS = Timeouts(connect=10.0, first_byte=300.0, idle=120.0, total=1800.0)


@dataclass(frozen=True, slots=True)
class Target:
    """One endpoint's copy of a model: where to send it and how to authenticate."""

    endpoint_id: int
    endpoint_name: str
    base_url: str
    upstream_id: str
    surfaces: tuple[TargetSurface, ...]
    routes: RoutePolicy
    """The methods and paths (below ``base_url``) the endpoint is sent."""
    own_key: bool = False
    """Whether the caller's own provider key is used (not the endpoint's)."""
    health_key: Hashable = 0
    """Whose health a failure counts against: the endpoint id for its shared key, (endpoint
    id, user id) for a user's own key, so one user's key never cools it down for others."""
    timeouts: Timeouts = DEFAULT_TIMEOUTS
    input_price: float | None = None
    output_price: float | None = None
    """Prices per million prompt and completion tokens, for usage records' cost."""

    def surface(self, path: str) -> TargetSurface:
        """The surface serving ``path`` (e.g. ``/messages``); the last one serves the rest."""
        for surface in self.surfaces:
            if not surface.prefixes or path.startswith(surface.prefixes):
                return surface
        return self.surfaces[-1]


@dataclass(slots=True)
class Route:
    """A public model name and the targets a principal may use for it. No targets means
    every copy is offline, or (``needs_user_key``) served only by endpoints that require
    the caller's own provider key, as (endpoint id, endpoint name) pairs. ``fallback`` is
    the public name of the model to try when every target fails."""

    name: str
    targets: tuple[Target, ...]
    needs_user_key: tuple[tuple[int, str], ...] = ()
    fallback: str | None = None
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    def rotation(self) -> tuple[Target, ...]:
        """Every target, starting at the next one round-robin: the order to fail over in."""
        if len(self.targets) < 2:
            return self.targets
        start = next(self._turn) % len(self.targets)
        return self.targets[start:] + self.targets[:start]


@dataclass(frozen=True, slots=True)
class View:
    """What one kind of caller may use: routes by public name, and ``/v1/models`` bodies."""

    routes: dict[str, Route]
    model_list_body: bytes
    model_bodies: dict[str, bytes]
    endpoint_ids: frozenset[int] = frozenset()
    """The endpoints serving any model of the view (online or not): all a caller may name."""

    @classmethod
    def empty(cls) -> View:
        return cls({}, EMPTY_LIST_BODY, {})


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The limits per minute on a key and on its user (None: no such limit): requests
    (``rpm``) and tokens (``tpm``). A principal has one only when some limit is set."""

    key_rpm: int | None = None
    key_tpm: int | None = None
    user_rpm: int | None = None
    user_tpm: int | None = None

    @classmethod
    def of(
        cls, key_rpm: int | None, key_tpm: int | None, user_rpm: int | None, user_tpm: int | None
    ) -> RateLimits | None:
        """The limits, or None when none of them is set."""
        if key_rpm is None and key_tpm is None and user_rpm is None and user_tpm is None:
            return None
        return cls(key_rpm, key_tpm, user_rpm, user_tpm)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid API key acts for, and what it may use. ``expires_at`` is a Unix time
    in seconds, or None."""

    key_id: int
    user_id: int
    role: str
    expires_at: float | None
    view: View
    allowed_models: frozenset[str] | None = None
    """The key's own limit to some public model names, or None."""
    limits: RateLimits | None = None
    """Rate limits of the key and its user, or None when neither is limited."""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def nameable_endpoints(self) -> frozenset[int] | None:
        """The endpoint ids this caller may name (set an own key for, see listed): those
        of its view, or None (any) for an admin. Any other is answered as nonexistent."""
        return None if self.is_admin else self.view.endpoint_ids


@dataclass(frozen=True, slots=True)
class ScheduledEndpoint:
    """What the sync scheduler needs of an enabled endpoint; interval in seconds or None."""

    id: int
    name: str
    sync_interval: float | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the request path needs, as of change counter ``version``.

    ``known_names`` holds every public model name, so a name the caller may not use
    (403) can be told from one that does not exist (404). ``routes`` is every route
    some endpoint is sent, so any other is refused before its body is read.
    """

    version: int
    keys: dict[str, Principal]
    known_names: frozenset[str]
    endpoints: tuple[ScheduledEndpoint, ...]
    routes: RoutePolicy = ALL_ROUTES

    @classmethod
    def empty(cls) -> Snapshot:
        return cls(-1, {}, frozenset(), (), ALL_ROUTES)


class SnapshotStore:
    """Holds the current snapshot; :meth:`refresh` rebuilds it and swaps it in."""

    def __init__(self, loader: Callable[[], Awaitable[Snapshot]]):
        self._loader = loader
        self._lock = asyncio.Lock()
        self.current = Snapshot.empty()
        self.loaded_at = time.monotonic()
        """When the current snapshot was built (``time.monotonic()`` seconds)."""

    @property
    def loaded(self) -> bool:
        return self.current.version >= 0

    async def refresh(self) -> Snapshot:
        """Build a new snapshot from the database and make it current.

        Refreshes run one at a time, so an older view never replaces a newer one.
        """
        async with self._lock:
            self.current = await self._loader()
            self.loaded_at = time.monotonic()
            log.debug(
                "snapshot %d loaded: %d keys, %d model names, %d endpoints",
                self.current.version,
                len(self.current.keys),
                len(self.current.known_names),
                len(self.current.endpoints),
            )
            return self.current
