"""Snapshots in comparable form: what the incrementally kept snapshot must equal once
rebuilt whole from the database."""

from __future__ import annotations

from typing import Any

from relaygate.snapshot import Access, Principal, Snapshot
from relaygate.targets import Target


def _target(t: Target) -> tuple[Any, ...]:
    return (
        t.endpoint_id,
        t.endpoint_name,
        t.model_id,
        t.upstream_id,
        t.base_url,
        t.requires_user_key,
        t.surfaces,
        t.routes,
        t.timeouts,
        t.input_price,
        t.output_price,
        t.output_cap,
        t.listing,
    )


def _access(a: Access) -> tuple[Any, ...]:
    return (a.admin, sorted(a.groups), sorted(a.models), sorted(a.endpoints))


def _principal(s: Snapshot, p: Principal) -> tuple[Any, ...]:
    return (
        p.key_id,
        p.user.id,
        p.expires_at,
        sorted(p.allowed_models) if p.allowed_models is not None else None,
        p.limits,
        p.budget,
        s.listing(p),
        s.model_names(p),
        s.nameable_endpoints(p),
    )


def describe(s: Snapshot) -> dict[str, Any]:
    """What a snapshot serves, in comparable form: routes, users, keys and what each key
    lists, may name and may use."""
    return {
        "models": {
            name: (
                [_target(t) for t in r.targets],
                [_target(t) for t in r.offline],
                r.fallbacks,
                r.order,
                r.keyed,
            )
            for name, r in sorted(s.models.items())
        },
        "users": {
            u.id: (
                u.role,
                u.rpm,
                u.tpm,
                u.budget,
                sorted(u.groups),
                _access(u.access),
                sorted((u.own or {}).items()),
                sorted(u.keys),
            )
            for u in s.users.values()
        },
        "keys": {h: _principal(s, p) for h, p in sorted(s.keys.items())},
        "grants": {g: (sorted(m), sorted(e)) for g, (m, e) in sorted(s.grants.items())},
        "members": {g: sorted(m) for g, m in sorted(s.members.items()) if m},
        "group_budgets": dict(sorted(s.group_budgets.items())),
        "policy": s.route_policy,
    }
