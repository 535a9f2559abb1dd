"""The in-memory view the request path reads (the README, "Layout").

Built from the database once at start-up (:meth:`relaygate.loader.Loader.load`) and
then kept current change by change (:mod:`relaygate.changes`): a key, a user, a group
or an endpoint that changes updates its own entries here, never the whole. Nothing
here queries: authenticating a key is one dictionary lookup; routing a model is one
more, then a check of the caller's grants against the route's few targets.

Who may use what is not copied per key: a key points at its user, the user at the
:class:`Access` of their set of groups (shared by every user with that set), and an
access is two id sets checked against a target's model and endpoint. A user's own
provider key replaces the endpoint's at pick time (:func:`reachable`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from relaygate.budget import Budget
from relaygate.routes import RoutePolicy
from relaygate.targets import Route, Surfaces, Target

if TYPE_CHECKING:
    from relaygate.catalog import Catalog

MAX_CACHED_LISTING_BYTES = 32 * 1024 * 1024
"""Listing bodies kept, in all (one per access and key limit): the oldest go first."""


class Access:
    """What one set of groups grants: the models granted one by one (``models``, ids)
    and those of whole endpoints (``endpoints``, ids); an admin's reaches every model.
    Shared by every user with the same groups; updated in place when a grant changes."""

    __slots__ = ("admin", "endpoints", "groups", "models")

    def __init__(
        self,
        groups: frozenset[int],
        models: frozenset[int] = frozenset(),
        endpoints: frozenset[int] = frozenset(),
        admin: bool = False,
    ):
        self.groups = groups
        self.models = models
        self.endpoints = endpoints
        self.admin = admin

    def allows(self, target: Target) -> bool:
        """Whether a caller with this access may use ``target``."""
        return self.admin or target.model_id in self.models or target.endpoint_id in self.endpoints

    def fallback_of(self, route: Route) -> str | None:
        """The fallback model name of the first copy of ``route`` this access may use
        that names one, or None."""
        for model_id, endpoint_id, name in route.fallbacks:
            if self.admin or model_id in self.models or endpoint_id in self.endpoints:
                return name
        return None

    def allows_route(self, route: Route) -> bool:
        """Whether some copy of ``route`` (online or not) is granted."""
        if self.admin:
            return True
        return any(self.allows(t) for t in route.targets) or any(
            self.allows(t) for t in route.offline
        )


ADMIN_ACCESS = Access(frozenset(), admin=True)


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


class UserState:
    """A user as the request path needs them: role, limits per minute, budget (or
    None), groups, the access those give, own provider keys (surfaces by endpoint id,
    or None) and the hashes of their valid API keys."""

    __slots__ = ("access", "budget", "groups", "id", "keys", "own", "role", "rpm", "tpm")

    def __init__(
        self,
        user_id: int,
        role: str,
        rpm: int | None,
        tpm: int | None,
        budget: Budget | None = None,
    ):
        self.id = user_id
        self.role = role
        self.rpm = rpm
        self.tpm = tpm
        self.budget = budget
        self.groups: frozenset[int] = frozenset()
        self.access: Access = ADMIN_ACCESS if role == "admin" else Access(frozenset())
        self.own: dict[int, Surfaces] | None = None
        self.keys: list[str] = []
        """A list, not a set: a set costs some 90 bytes per key, a list 8."""


class Principal:
    """Who a valid API key acts for, and what it may use. ``expires_at`` is a Unix time
    in seconds, or None; ``allowed_models`` the key's own limit to some public model
    names, or None; ``limits`` the rate limits of the key and its user, or None;
    ``budget`` the key's own budget, or None. Six slots: a snapshot holds one per key,
    so every byte here counts 100,000 times."""

    __slots__ = ("allowed_models", "budget", "expires_at", "key_id", "limits", "user")

    def __init__(
        self,
        key_id: int,
        user: UserState,
        expires_at: float | None = None,
        allowed_models: frozenset[str] | None = None,
        key_rpm: int | None = None,
        key_tpm: int | None = None,
        budget: Budget | None = None,
    ):
        self.key_id = key_id
        self.user = user
        self.expires_at = expires_at
        self.allowed_models = allowed_models
        self.limits = RateLimits.of(key_rpm, key_tpm, user.rpm, user.tpm)
        self.budget = budget

    def user_changed(self) -> None:
        """Take the user's new limits per minute into ``limits``."""
        key_rpm, key_tpm = (
            (self.limits.key_rpm, self.limits.key_tpm) if self.limits else (None, None)
        )
        self.limits = RateLimits.of(key_rpm, key_tpm, self.user.rpm, self.user.tpm)

    @property
    def user_id(self) -> int:
        return self.user.id

    @property
    def role(self) -> str:
        return self.user.role

    @property
    def is_admin(self) -> bool:
        return self.user.role == "admin"

    def may_name(self, name: str) -> bool:
        """Whether the key's own limit (if any) lets it use the public name ``name``."""
        return self.allowed_models is None or name in self.allowed_models


def reachable(route: Route, principal: Principal) -> tuple[Target, ...] | list[Target]:
    """The online targets of ``route`` that ``principal`` may use, in the route's order,
    each with the caller's own provider key swapped in where they set one."""
    user = principal.user
    access = user.access
    own = user.own
    if access.admin and own is None and not route.keyed:
        return route.targets
    found = []
    for target in route.targets:
        if not access.allows(target):
            continue
        if own is not None:
            surfaces = own.get(target.endpoint_id)
            if surfaces is not None:
                found.append(target.with_own_key(surfaces, user.id))
                continue
        if not target.needs_own_key:
            found.append(target)
    return found


def needs_user_key(route: Route, principal: Principal) -> Target | None:
    """A target of ``route`` that ``principal`` may use but only with an own provider key
    for its endpoint, which they have not set; None when there is none."""
    own = principal.user.own or {}
    for target in route.targets:
        if (
            target.requires_user_key
            and principal.user.access.allows(target)
            and target.endpoint_id not in own
        ):
            return target
    return None


ListingKey = tuple[Access, frozenset[str] | None, UserState | None]
"""Whose listing a body is: an access, a key's limit, and a user with own keys."""


class Snapshot:
    """Everything the request path needs, as of change ``version``.

    ``keys`` maps API key hashes to principals; ``models`` every public model name that
    some enabled model serves to its :class:`Route` (a name here that the caller may
    not use is answered 403, any other 404); ``route_policy`` every route some
    endpoint is sent, so any other is refused before its body is read. The structures
    behind them (users, accesses, groups' grants, the catalogue of models) are kept
    by :mod:`relaygate.loader`, which applies each change to them in place.
    """

    def __init__(self, version: int, route_policy: RoutePolicy):
        self.version = version
        self.route_policy = route_policy
        self.keys: dict[str, Principal] = {}
        self.models: dict[str, Route] = {}
        self.users: dict[int, UserState] = {}
        self.accesses: dict[frozenset[int], Access] = {}
        """Each set of groups some user has (``everyone`` included) to its access."""
        self.grants: dict[int, tuple[frozenset[int], frozenset[int]]] = {}
        """Each group's granted model ids and endpoint ids."""
        self.members: dict[int, set[int]] = {}
        """Each group's member user ids (not ``everyone``'s: every user is one)."""
        self.everyone: int | None = None
        self.group_budgets: dict[int, Budget] = {}
        """Each group with a budget to it."""
        self.name_sets: dict[frozenset[str], frozenset[str]] = {}
        """Keys' limits to some model names, interned: keys limited alike share one."""
        self.catalog: Catalog | None = None
        self._listings: dict[ListingKey, bytes] = {}
        self._listing_bytes = 0
        self._ordered: list[Route] | None = None

    @classmethod
    def empty(cls) -> Snapshot:
        from relaygate.providers import ALL_ROUTES

        return cls(-1, ALL_ROUTES)

    def catalogue_changed(self) -> None:
        """Forget what was derived from routes and grants (listings), after a change."""
        self._listings.clear()
        self._listing_bytes = 0
        self._ordered = None

    def route_for(self, principal: Principal, name: str) -> Route | None:
        """The route of ``name`` if ``principal`` may use it (some copy, online or not, is
        granted and the key may name it), else None."""
        route = self.models.get(name)
        if route is None or not principal.may_name(name):
            return None
        return route if principal.user.access.allows_route(route) else None

    def model_names(self, principal: Principal) -> list[str]:
        """The public names ``principal`` may use, sorted."""
        names: Iterable[str] = (
            self.models if principal.allowed_models is None else principal.allowed_models
        )
        return sorted(n for n in names if self.route_for(principal, n) is not None)

    def model_body(self, principal: Principal, name: str) -> bytes | None:
        """The ``/v1/models/{name}`` entry of a model ``principal`` may use and that is
        listed (online, or waiting for the caller's own key), else None."""
        route = self.route_for(principal, name)
        return _listing_of(route, principal) if route is not None else None

    def listing(self, principal: Principal) -> bytes:
        """The ``/v1/models`` body for ``principal``: OpenAI's list object
        (https://platform.openai.com/docs/api-reference/models/list) of the models it
        may use, online or waiting for its own key. Cached per access and key limit."""
        access = principal.user.access
        own = principal.user.own
        # A user with own keys may list models others cannot: their listing is their own.
        cache_key = (access, principal.allowed_models, principal.user if own else None)
        cached = self._listings.get(cache_key)
        if cached is not None:
            return cached
        if principal.allowed_models is not None:
            routes = sorted(
                (r for n in principal.allowed_models if (r := self.models.get(n)) is not None),
                key=_order,
            )
        else:
            if self._ordered is None:
                self._ordered = sorted(self.models.values(), key=_order)
            routes = self._ordered
        entries = [
            entry
            for route in routes
            if (access.admin or access.allows_route(route))
            and (entry := _listing_of(route, principal)) is not None
        ]
        body = b'{"object":"list","data":[' + b",".join(entries) + b"]}"
        self._remember(cache_key, body)
        return body

    def _remember(
        self, key: tuple[Access, frozenset[str] | None, UserState | None], body: bytes
    ) -> None:
        """Cache a listing body, forgetting the oldest past :data:`MAX_CACHED_LISTING_BYTES`."""
        self._listings[key] = body
        self._listing_bytes += len(body)
        while self._listing_bytes > MAX_CACHED_LISTING_BYTES and len(self._listings) > 1:
            oldest = next(iter(self._listings))
            self._listing_bytes -= len(self._listings.pop(oldest))

    def nameable_endpoints(self, principal: Principal) -> frozenset[int] | None:
        """The endpoint ids ``principal`` may name (set an own key for, see listed): those
        serving a model it may use (online or not), or None (any) for an admin. Any
        other is answered as nonexistent."""
        if principal.is_admin:
            return None
        found: set[int] = set()
        for name in self.model_names(principal):
            route = self.models[name]
            for target in itertools.chain(route.targets, route.offline):
                if principal.user.access.allows(target):
                    found.add(target.endpoint_id)
        return frozenset(found)


def _order(route: Route) -> tuple[int, int, int]:
    return route.order


def _listing_of(route: Route, principal: Principal) -> bytes | None:
    """The listing entry of the first target of ``route`` that ``principal`` may use and
    that is usable or waits for its own key; None when there is none."""
    access = principal.user.access
    own = principal.user.own
    for target in route.targets:
        if not access.allows(target):
            continue
        if target.surfaces or target.requires_user_key or (own and target.endpoint_id in own):
            return target.listing
    return None
