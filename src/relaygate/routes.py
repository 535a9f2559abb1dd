"""Route policies: which methods and paths relaygate forwards to an endpoint.

A user key reaches an endpoint's inference routes only (each provider type names
its own, see :mod:`relaygate.providers`), never the resources of the provider
account behind it (files, batches, fine-tuning, assistants, organisation…), which
the endpoint's shared key would otherwise open to every user. An operator may allow
more routes per endpoint (``extra_routes``), written ``"METHOD /path"`` below the
endpoint's URL, where a ``*`` segment matches any one path segment:
``"POST /tokenize"``, ``"POST /v2/*/infer"``.

Paths here are below the endpoint URL (a client's ``/v1/chat/completions`` is
``/chat/completions``), as they are forwarded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from relaygate.errors import BadRequest

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_EXTRA_ROUTES = 50
MAX_ROUTE_LENGTH = 200
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
MethodPath = tuple[str, str]
"""A (method, path) pair; the path below the endpoint URL, ``*`` for one segment."""


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """The routes one endpoint (or, merged, every endpoint) forwards: ``exact`` (method,
    path) pairs and ``patterns`` with ``*`` segments, as (method, segments)."""

    exact: frozenset[MethodPath]
    patterns: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def of(cls, routes: Iterable[MethodPath]) -> RoutePolicy:
        """The policy allowing ``routes`` (paths with ``*`` segments become patterns)."""
        exact: set[MethodPath] = set()
        patterns: list[tuple[str, tuple[str, ...]]] = []
        for method, path in routes:
            if "*" in path:
                patterns.append((method, tuple(path.split("/"))))
            else:
                exact.add((method, path))
        return cls(frozenset(exact), tuple(dict.fromkeys(patterns)))

    def merged(self, other: RoutePolicy) -> RoutePolicy:
        """A policy allowing what this one or ``other`` allows."""
        if not other.patterns and other.exact <= self.exact:
            return self
        return RoutePolicy(
            self.exact | other.exact, tuple(dict.fromkeys(self.patterns + other.patterns))
        )

    def allows(self, method: str, path: str) -> bool:
        """Whether ``method`` on ``path`` (below the endpoint URL) is forwarded."""
        if (method, path) in self.exact:
            return True
        if not self.patterns:
            return False
        segments = path.split("/")
        return any(m == method and _matches(p, segments) for m, p in self.patterns)

    def methods_for(self, path: str) -> list[str]:
        """The methods forwarded on ``path``, in :data:`METHODS` order (empty: none)."""
        return [method for method in METHODS if self.allows(method, path)]


def _matches(pattern: tuple[str, ...], segments: list[str]) -> bool:
    """Whether ``segments`` match ``pattern``, a ``*`` standing for one segment of
    unreserved characters only (RFC 3986 §2.3): never one that could end the path
    (``?``, ``#``), carry parameters (``;``) or escapes, or climb (``.``, ``..``)."""
    return len(pattern) == len(segments) and all(
        p == s or (p == "*" and _plain_segment(s)) for p, s in zip(pattern, segments, strict=True)
    )


def _plain_segment(segment: str) -> bool:
    return bool(segment) and segment not in (".", "..") and all(c in _UNRESERVED for c in segment)


def parse_route(text: str) -> MethodPath:
    """Read one ``extra_routes`` entry, ``"METHOD /path"`` (path below the endpoint URL,
    ``*`` for a whole segment). Returns (method, path); raises :class:`BadRequest`
    naming what is wrong (unknown method, a path not starting with ``/``, a ``.``,
    ``..`` or empty segment, a ``*`` inside a segment, a query, more than
    :data:`MAX_ROUTE_LENGTH` characters)."""
    if not isinstance(text, str) or len(text) > MAX_ROUTE_LENGTH:
        raise BadRequest(
            f"each extra route is a string of at most {MAX_ROUTE_LENGTH} characters",
            param="extra_routes",
        )
    method, _, path = text.strip().partition(" ")
    method, path = method.upper(), path.strip()
    if method not in METHODS:
        raise BadRequest(
            f"extra route {text!r}: write it as 'METHOD /path' with METHOD one of "
            f"{', '.join(METHODS)}",
            param="extra_routes",
        )
    segments = path.split("/")
    if (
        not path.startswith("/")
        or len(segments) < 2
        or any(not s or s in (".", "..") for s in segments[1:])
        or any("*" in s and s != "*" for s in segments)
        or any(ch in path for ch in "?#%\\ ")
        or not path.isascii()
    ):
        raise BadRequest(
            f"extra route {text!r}: write it as 'METHOD /path' below the endpoint's URL, "
            "e.g. 'POST /tokenize'; a '*' segment matches any one segment",
            param="extra_routes",
        )
    return method, path


def parse_routes(entries: Iterable[str] | None) -> list[str]:
    """Check and normalise an endpoint's ``extra_routes`` (``"METHOD /path"`` strings);
    returns them normalised and without duplicates. Raises :class:`BadRequest`."""
    if entries is None:
        return []
    routes = [" ".join(parse_route(entry)) for entry in entries]
    if len(routes) > MAX_EXTRA_ROUTES:
        raise BadRequest(
            f"an endpoint may have at most {MAX_EXTRA_ROUTES} extra routes", param="extra_routes"
        )
    return list(dict.fromkeys(routes))


def policy_for(base: RoutePolicy, extra_routes: Iterable[str] | None) -> RoutePolicy:
    """``base`` (a provider type's policy) with an endpoint's stored ``extra_routes``."""
    if not extra_routes:
        return base
    pairs: list[MethodPath] = []
    for entry in extra_routes:
        method, _, path = entry.partition(" ")
        pairs.append((method, path))
    return base.merged(RoutePolicy.of(pairs))
