"""Pooling: which models of different endpoints serve one public name together.

Pooling is the operator's act (the README, "Endpoint types"). Models of several
endpoints become targets of one public name only when an operator gave each that
name as its alias, or placed their endpoints in one ``pool``. Any other model
whose name (its upstream id, as a listing reported it) is already served by
another endpoint is a *conflict*: it serves nothing, the admin API, the CLI and the
console show it, and the model that holds the name keeps all its traffic. So a
new entry in a third party's model list can never draw another endpoint's
prompts.

Who holds a name: an aliased model before an unaliased one (the operator named
it), then the oldest model (the lowest id; ids are never reused). Every model
claims its name, disabled ones and those of disabled endpoints too: a name stays
with the model holding it while an operator disables it, never passing to a
listing's newcomer meanwhile. A name an operator chose as a model's fallback is
reserved for aliased models and those of that model's endpoint or pool.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Claim:
    """One model's claim to a public ``name``: ``aliased`` when the name is its alias,
    ``pool`` its endpoint's pool (None: in none)."""

    model_id: int
    endpoint_id: int
    name: str
    aliased: bool
    pool: str | None


@dataclass(frozen=True, slots=True)
class NameConflict:
    """A model left out of routing because another endpoint's model holds its name."""

    model_id: int
    name: str
    held_by_model_id: int
    held_by_endpoint_id: int


def resolve(
    claims: Iterable[Claim], reserved: Mapping[str, Claim] | None = None
) -> tuple[frozenset[int], dict[int, NameConflict]]:
    """Split ``claims`` (at most one per endpoint and name) into the model ids that serve
    their name and the conflicts, by model id, of those that do not. ``reserved`` maps a
    name an operator chose as a model's fallback to that model's claim: only an aliased
    model, or one of the reserving model's endpoint or pool, may serve it, so a new name
    in a third party's listing never draws another model's fallback traffic."""
    by_name: dict[str, list[Claim]] = defaultdict(list)
    for claim in claims:
        by_name[claim.name].append(claim)
    served: set[int] = set()
    conflicts: dict[int, NameConflict] = {}
    for name, found in by_name.items():
        reserver = reserved.get(name) if reserved else None
        if reserver is not None:
            for claim in found:
                if not (claim.aliased or _same_place(reserver, claim)):
                    conflicts[claim.model_id] = NameConflict(
                        claim.model_id, name, reserver.model_id, reserver.endpoint_id
                    )
            found = [claim for claim in found if claim.model_id not in conflicts]
            if not found:
                continue
        if len(found) == 1:
            served.add(found[0].model_id)
            continue
        holder = min(found, key=lambda c: (not c.aliased, c.model_id))
        for claim in found:
            if claim is holder or _pooled(holder, claim):
                served.add(claim.model_id)
            else:
                conflicts[claim.model_id] = NameConflict(
                    claim.model_id, name, holder.model_id, holder.endpoint_id
                )
    return frozenset(served), conflicts


def _pooled(holder: Claim, claim: Claim) -> bool:
    if holder.aliased and claim.aliased:
        return True
    return claim.pool is not None and claim.pool == holder.pool


def _same_place(reserver: Claim, claim: Claim) -> bool:
    """Whether ``claim`` is of the reserving model's endpoint or pool."""
    if claim.endpoint_id == reserver.endpoint_id:
        return True
    return claim.pool is not None and claim.pool == reserver.pool
