"""Where a public model name leads: a :class:`Route` and its :class:`Target` copies,
each with the endpoint's address, key (its :class:`TargetSurface` headers), timeouts
and the APIs it speaks. Built by :mod:`relaygate.catalog`, read by the proxy."""

from __future__ import annotations

import itertools
from collections.abc import Hashable
from dataclasses import dataclass, field, replace

from relaygate.routes import RoutePolicy
from relaygate.translate.base import SELF_HOSTED, Dialect


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
    headers_text: tuple[tuple[str, str], ...] = field(
        init=False, repr=False, compare=False, default=()
    )
    """``headers`` as the HTTP client takes them (latin-1 text), decoded once."""
    defaults_text: tuple[tuple[bytes, str, str], ...] = field(
        init=False, repr=False, compare=False, default=()
    )
    """``defaults`` as (name, text name, text value), decoded once."""

    def __post_init__(self) -> None:
        text = tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in self.headers)
        object.__setattr__(self, "headers_text", text)
        defaults = tuple((n, n.decode("latin-1"), v.decode("latin-1")) for n, v in self.defaults)
        object.__setattr__(self, "defaults_text", defaults)


Surfaces = tuple[TargetSurface, ...]


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
class TargetApis:
    """How an endpoint takes the APIs relaygate can translate: its provider ``type``,
    the modes its operator set (``auto``, ``native``, ``translate``) for Anthropic
    Messages, OpenAI Responses and chat completions, what ``auto`` had found when the
    endpoint was loaded (``found``: API name → ``native``/``translate``), and the
    ``dialect`` of its chat-completions API."""

    type: str = "openai"
    messages: str = "auto"
    responses: str = "auto"
    chat: str = "auto"
    found: tuple[tuple[str, str], ...] = ()
    dialect: Dialect = SELF_HOSTED

    def finding(self, api: str) -> str | None:
        """What ``auto`` found for ``api`` when the endpoint was loaded, if anything."""
        for name, mode in self.found:
            if name == api:
                return mode
        return None


DEFAULT_APIS = TargetApis()


@dataclass(frozen=True, slots=True)
class Target:
    """One endpoint's copy of a model: where to send it and how to authenticate.

    ``surfaces`` carry the endpoint's shared key; they are empty when that key cannot
    be used, and ``requires_user_key`` says the endpoint takes only callers' own keys.
    Either way only a caller with an own key for the endpoint reaches this target."""

    endpoint_id: int
    endpoint_name: str
    base_url: str
    upstream_id: str
    surfaces: Surfaces
    routes: RoutePolicy
    """The methods and paths (below ``base_url``) the endpoint is sent."""
    model_id: int = 0
    requires_user_key: bool = False
    own_key: bool = False
    """Whether the caller's own provider key is used (not the endpoint's)."""
    health_key: Hashable = 0
    """Whose health a failure counts against: the endpoint id for its shared key, (endpoint
    id, user id) for a user's own key, so one user's key never cools it down for others."""
    timeouts: Timeouts = DEFAULT_TIMEOUTS
    apis: TargetApis = DEFAULT_APIS
    input_price: float | None = None
    output_price: float | None = None
    """Prices per million prompt and completion tokens, for usage records' cost."""
    output_cap: int | None = None
    """Completion tokens a budget reserves when a request states no cap."""
    listing: bytes = field(default=b"", repr=False, compare=False)
    """The model's ``/v1/models`` entry, as JSON."""

    @property
    def needs_own_key(self) -> bool:
        """Whether only a caller's own provider key makes this target usable."""
        return self.requires_user_key or not self.surfaces

    def surface(self, path: str) -> TargetSurface:
        """The surface serving ``path`` (e.g. ``/messages``); the last one serves the rest."""
        for surface in self.surfaces:
            if not surface.prefixes or path.startswith(surface.prefixes):
                return surface
        return self.surfaces[-1]

    def with_own_key(self, surfaces: Surfaces, user_id: int) -> Target:
        """This target carrying a user's own provider key (``surfaces``)."""
        return replace(
            self, surfaces=surfaces, own_key=True, health_key=(self.endpoint_id, user_id)
        )


@dataclass(slots=True)
class Route:
    """A public model name and every endpoint's copy serving it: ``targets`` online, in
    endpoint order, and ``offline`` ones (which still make the name the caller's, so
    it is answered as offline rather than forbidden). ``fallbacks`` are the public names
    of the models to try when every target fails, as (model id, endpoint id, name) in
    the targets' order: a caller's is the first of a copy it may use
    (:meth:`Access.fallback_of`). ``order`` sorts listings."""

    name: str
    targets: tuple[Target, ...]
    offline: tuple[Target, ...] = ()
    fallbacks: tuple[tuple[int, int, str], ...] = ()
    order: tuple[int, int, int] = (0, 0, 0)
    keyed: bool = False
    """Whether some target needs the caller's own provider key."""
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    def rotate(self, targets: tuple[Target, ...] | list[Target]) -> tuple[Target, ...]:
        """``targets`` (this route's, as one caller reaches them), starting at the next one
        round-robin: the order to fail over in."""
        if len(targets) < 2:
            return tuple(targets)
        start = next(self._turn) % len(targets)
        return tuple(targets[start:]) + tuple(targets[:start])
