"""The catalogue in memory: every endpoint and model, and the route each public name
resolves to, recomputed name by name when some of its models change.

Which model serves a name follows :func:`relaygate.access.serving_models` (the rules of
:mod:`relaygate.pooling`): of one endpoint's models answering to a name, the enabled
and aliased one first, then the oldest; across endpoints, the name's holder and the
models pooled with it; a name chosen as a fallback is reserved. All of that depends on
the models answering to that name and on those naming it as their fallback only, so a
change to some models recomputes only their names (:meth:`Catalog.affected_by`).
"""

from __future__ import annotations

from dataclasses import dataclass

from relaygate import pooling
from relaygate.db.tables import Endpoint
from relaygate.routes import RoutePolicy
from relaygate.targets import Route, Surfaces, Target, TargetApis, Timeouts


@dataclass(frozen=True, slots=True)
class EndpointEntry:
    """An endpoint as routing needs it: its row (detached), its shared key's surfaces
    (None when it takes only users' own keys; empty when its key is unusable), the
    routes it is sent and its timeouts."""

    row: Endpoint
    surfaces: Surfaces | None
    policy: RoutePolicy
    timeouts: Timeouts
    apis: TargetApis
    fingerprint: tuple[object, ...]
    """The fields that shape its targets: when they change, every model is recomputed."""


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model of an endpoint (enabled or not), with its ``/v1/models`` entry as JSON."""

    id: int
    endpoint_id: int
    upstream_id: str
    name: str
    aliased: bool
    enabled: bool
    online: bool
    fallback: str | None
    input_price: float | None
    output_price: float | None
    output_cap: int | None
    """Completion tokens a budget reserves when a request states no cap (None: the
    setting's default)."""
    listing: bytes

    @property
    def rank(self) -> tuple[int, int, int, int]:
        """Its place among models (endpoint, then enabled, aliased, oldest first)."""
        return (self.endpoint_id, not self.enabled, not self.aliased, self.id)


class Catalog:
    """Every endpoint and model by id, indexed by public name and by fallback name."""

    __slots__ = ("by_endpoint", "by_fallback", "by_name", "endpoints", "models")

    def __init__(self) -> None:
        self.endpoints: dict[int, EndpointEntry] = {}
        self.models: dict[int, ModelEntry] = {}
        self.by_name: dict[str, list[int]] = {}
        self.by_fallback: dict[str, list[int]] = {}
        self.by_endpoint: dict[int, set[int]] = {}

    def put(self, model: ModelEntry) -> None:
        """Add or replace ``model``."""
        old = self.models.get(model.id)
        if old is not None:
            self.drop(old.id)
        self.models[model.id] = model
        self.by_name.setdefault(model.name, []).append(model.id)
        if model.fallback:
            self.by_fallback.setdefault(model.fallback, []).append(model.id)
        self.by_endpoint.setdefault(model.endpoint_id, set()).add(model.id)

    def drop(self, model_id: int) -> None:
        """Remove the model ``model_id`` (if present)."""
        model = self.models.pop(model_id, None)
        if model is None:
            return
        _unindex(self.by_name, model.name, model_id)
        if model.fallback:
            _unindex(self.by_fallback, model.fallback, model_id)
        ids = self.by_endpoint.get(model.endpoint_id)
        if ids is not None:
            ids.discard(model_id)

    def affected_by(self, models: list[ModelEntry]) -> set[str]:
        """The public names whose route may change when ``models`` (old or new versions)
        change: their names, their fallbacks, and the fallbacks reserved by the models
        answering to those names (which of them serves may change)."""
        names = {m.name for m in models}
        for name in list(names):
            for model_id in self.by_name.get(name, ()):
                fallback = self.models[model_id].fallback
                if fallback:
                    names.add(fallback)
        names.update(m.fallback for m in models if m.fallback)
        return names

    def route(self, name: str) -> Route | None:
        """The route of ``name`` as the catalogue stands, or None when no enabled model of
        an enabled endpoint serves it."""
        winners = self._winners(name)
        if not winners:
            return None
        reserver = self._reserver(name)
        served, _ = pooling.resolve(
            (self._claim(m) for m in winners),
            {name: self._claim(reserver, name)} if reserver is not None else None,
        )
        serving = sorted(
            (
                m
                for m in winners
                if m.id in served and m.enabled and self.endpoints[m.endpoint_id].row.enabled
            ),
            key=_rank,
        )
        if not serving:
            return None
        online: list[Target] = []
        offline: list[Target] = []
        for model in serving:
            (online if model.online else offline).append(self._target(model))
        first = serving[0]
        return Route(
            name,
            tuple(online),
            tuple(offline),
            tuple(
                (m.id, m.endpoint_id, m.fallback) for m in serving if m.fallback not in (None, name)
            ),
            (first.endpoint_id, not first.aliased, first.id),
            keyed=any(t.needs_own_key for t in online),
        )

    def _winners(self, name: str) -> list[ModelEntry]:
        """Per endpoint, the model that answers to ``name`` (the others are hidden)."""
        best: dict[int, ModelEntry] = {}
        for model_id in self.by_name.get(name, ()):
            model = self.models[model_id]
            held = best.get(model.endpoint_id)
            if held is None or model.rank < held.rank:
                best[model.endpoint_id] = model
        return list(best.values())

    def _reserver(self, name: str) -> ModelEntry | None:
        """The first model (by rank) that answers to its own name and names ``name`` as its
        fallback: the one whose endpoint or pool ``name`` is reserved for."""
        found = None
        for model_id in self.by_fallback.get(name, ()):
            model = self.models[model_id]
            if model not in self._winners(model.name):
                continue
            if found is None or model.rank < found.rank:
                found = model
        return found

    def _claim(self, model: ModelEntry, name: str | None = None) -> pooling.Claim:
        endpoint = self.endpoints[model.endpoint_id].row
        return pooling.Claim(
            model.id, model.endpoint_id, name or model.name, model.aliased, endpoint.pool
        )

    def _target(self, model: ModelEntry) -> Target:
        entry = self.endpoints[model.endpoint_id]
        row = entry.row
        return Target(
            row.id,
            row.name,
            row.url.rstrip("/"),
            model.upstream_id,
            entry.surfaces or (),
            entry.policy,
            model_id=model.id,
            requires_user_key=entry.surfaces is None,
            health_key=row.id,
            timeouts=entry.timeouts,
            apis=entry.apis,
            input_price=model.input_price,
            output_price=model.output_price,
            output_cap=model.output_cap,
            listing=model.listing,
        )


def _rank(model: ModelEntry) -> tuple[int, int, int, int]:
    return model.rank


def _unindex(index: dict[str, list[int]], name: str, model_id: int) -> None:
    ids = index.get(name)
    if ids is None:
        return
    try:
        ids.remove(model_id)
    except ValueError:
        return
    if not ids:
        del index[name]
