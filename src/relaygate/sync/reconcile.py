"""The reconcile rule of a sync (the README, "Failover, health and timeouts"): a pure
function."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True, slots=True)
class Plan:
    """What a sync changes: upstream ids to insert, to mark online again, to mark offline."""

    add: tuple[str, ...]
    reactivate: tuple[str, ...]
    deactivate: tuple[str, ...]


def matches_filter(upstream_id: str, model_filter: Iterable[str]) -> bool:
    """Whether ``upstream_id`` passes ``model_filter`` (exact ids or glob patterns, e.g.
    ``gpt-4*``); an empty filter passes everything."""
    patterns = list(model_filter)
    return not patterns or any(fnmatchcase(upstream_id, pattern) for pattern in patterns)


def plan(stored: Mapping[str, str], discovered: Iterable[str]) -> Plan:
    """Compare stored models (upstream id → ``online``/``offline``) with the ids a
    listing returned (already filtered). Vanished models go offline, never away."""
    seen = dict.fromkeys(discovered)
    add = tuple(model for model in seen if model not in stored)
    reactivate = tuple(m for m in seen if stored.get(m) == "offline")
    deactivate = tuple(m for m, status in stored.items() if status == "online" and m not in seen)
    return Plan(add, reactivate, deactivate)
