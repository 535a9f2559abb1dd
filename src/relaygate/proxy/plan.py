"""Which targets a request is tried at, in order, and the error to answer when there
are none (or the model is not the caller's to use)."""

from __future__ import annotations

import math
from collections.abc import Hashable

from relaygate.errors import (
    ModelNotFound,
    ModelUnavailable,
    Overloaded,
    PermissionDenied,
    RelaygateError,
    UnsupportedRoute,
)
from relaygate.health import Health
from relaygate.snapshot import Principal, Snapshot, needs_user_key, reachable
from relaygate.targets import Route, Target


def unavailable(snapshot: Snapshot, name: str) -> RelaygateError:
    """403 for a model that exists but the caller may not use, else 404."""
    if name in snapshot.models:
        return PermissionDenied(
            f"you do not have access to the model {name!r}; ask an admin to grant it",
            param="model",
            code="model_not_allowed",
        )
    return ModelNotFound(f"the model {name!r} does not exist", param="model")


def plan_for(
    snapshot: Snapshot,
    health: Health,
    principal: Principal,
    route: Route,
    method: str,
    path: str,
) -> list[tuple[Target, str]]:
    """The (target, public model name) pairs to try in order for ``method`` on
    ``path``: the route's targets the caller may use that are sent that route and are
    not cooling down, round-robin, then those of its fallback model when the caller
    may use it (fallbacks are not chained). Raises the error to answer when there
    are none."""
    below = path[3:]
    user = principal.user_id
    targets = reachable(route, principal)
    plan = [
        (t, route.name)
        for t in health.partition(route.rotate(targets), _health_key, user)
        if t.routes.allows(method, below)
    ]
    named = principal.user.access.fallback_of(route) if route.fallbacks else None
    fallback = snapshot.route_for(principal, named) if named else None
    if fallback is not None:
        plan.extend(
            (t, fallback.name)
            for t in health.partition(
                fallback.rotate(reachable(fallback, principal)), _health_key, user
            )
            if t.routes.allows(method, below)
        )
    if plan:
        return plan
    raise _no_plan(health, principal, route, targets, method, path)


def _no_plan(
    health: Health,
    principal: Principal,
    route: Route,
    targets: tuple[Target, ...] | list[Target],
    method: str,
    path: str,
) -> RelaygateError:
    """Why ``route`` has no target to try: none takes the route (404), all cool down
    (503 with Retry-After), its endpoint needs the caller's own provider key (403), or
    it is offline (503)."""
    below = path[3:]
    user = principal.user_id
    if targets and not any(t.routes.allows(method, below) for t in targets):
        return UnsupportedRoute(
            f"the model {route.name!r} is not served on {method} {path}: its endpoint "
            "does not take that route",
            param="model",
        )
    if targets:
        wait = health.retry_in([t.health_key for t in targets], user)
        return Overloaded(
            f"every endpoint serving the model {route.name!r} is cooling down after "
            f"failures; retry in {math.ceil(wait)} s",
            retry_after=wait,
            param="model",
            code="endpoints_cooling_down",
        )
    keyed = needs_user_key(route, principal)
    if keyed is not None:
        return PermissionDenied(
            f"the model {route.name!r} is served by endpoint {keyed.endpoint_name!r}, "
            "which requires your own provider key: set it with PUT "
            f"/admin/api/v1/me/provider-keys/{keyed.endpoint_id}",
            param="model",
            code="provider_key_required",
        )
    return ModelUnavailable(
        f"the model {route.name!r} is offline: its endpoint failed its last sync",
        param="model",
    )


def _health_key(target: Target) -> Hashable:
    return target.health_key
