"""Model access: who may use which model, with which provider key, and the rules the
snapshot is built by (see :mod:`relaygate.loader` for the reading).

A user reaches the models granted (one by one, or as a whole endpoint) to any of
their groups, the built-in ``everyone`` group included; admins reach every model.
An API key may be limited further to some public names. A user's own provider key
for an endpoint replaces the endpoint's key in their requests; an endpoint that
requires users' own keys is usable only by callers who set one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from relaygate import pooling
from relaygate.credentials import custom_auth
from relaygate.db.tables import (
    Endpoint,
    Model,
)
from relaygate.providers import get_provider
from relaygate.targets import TargetSurface

log = logging.getLogger(__name__)
EVERYONE = "everyone"


def public_name(model: Model) -> str:
    """What clients put in ``model``: the alias, or the upstream id when there is none."""
    return model.alias or model.upstream_id


def _encode(items: dict[str, str] | tuple[tuple[str, str], ...]) -> tuple[tuple[bytes, bytes], ...]:
    pairs = items.items() if isinstance(items, dict) else items
    return tuple((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs)


def surfaces_for(endpoint: Endpoint, api_key: str | None) -> tuple[TargetSurface, ...]:
    """The provider's surfaces with ``api_key`` (and the endpoint's custom header) applied."""
    override = custom_auth(endpoint)
    built = []
    for surface in get_provider(endpoint.type).surfaces:
        headers = _encode((override or surface.auth).headers(api_key))
        built.append(
            TargetSurface(
                surface.prefixes,
                headers,
                _encode(surface.defaults),
                frozenset(name for name, _ in headers),
            )
        )
    return tuple(built)


def listing_entry(name: str, model: Any, endpoint_name: str) -> dict[str, object]:
    """A ``/v1/models`` entry: OpenAI's model object (id, object, created, owned_by —
    https://platform.openai.com/docs/api-reference/models/object) plus the metadata
    relaygate keeps, as extra fields."""
    created: datetime = model.created or model.first_seen_at
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


async def enabled_endpoints(session: AsyncSession) -> dict[int, Endpoint]:
    """The enabled endpoints in ``session``, by id."""
    return {e.id: e for e in await session.scalars(select(Endpoint).where(Endpoint.enabled))}


async def serving_models(
    session: AsyncSession, endpoints: Mapping[int, Endpoint]
) -> tuple[list[Model], dict[int, pooling.NameConflict]]:
    """Which enabled models of ``endpoints`` (the enabled ones, by id) serve their public
    name: those models, ordered by endpoint, aliased first, then id; and, by model id,
    the conflicts of those that serve nothing because another endpoint's model holds
    their name (see :mod:`relaygate.pooling`; every model claims its name, disabled ones
    and those of disabled endpoints too, and fallback names are reserved). The snapshot
    routes by this, and the admin API, the CLI and the console show its conflicts."""
    every = {e.id: e for e in await session.scalars(select(Endpoint))}
    models = await session.scalars(
        select(Model).order_by(
            Model.endpoint_id, Model.enabled.desc(), Model.alias.is_(None), Model.id
        )
    )
    claimants = list(routable_models(models, every))
    reserved: dict[str, pooling.Claim] = {}
    for model in claimants:
        if model.fallback_model and model.fallback_model not in reserved:
            endpoint = every[model.endpoint_id]
            reserved[model.fallback_model] = pooling.Claim(
                model.id, endpoint.id, model.fallback_model, False, endpoint.pool
            )
    served, conflicts = pooling.resolve((claim_of(model, every) for model in claimants), reserved)
    usable = [
        model
        for model in claimants
        if model.id in served and model.enabled and model.endpoint_id in endpoints
    ]
    return usable, conflicts


def routable_models(models: Iterable[Model], endpoints: Mapping[int, Endpoint]) -> Iterator[Model]:
    """``models`` (ordered by endpoint, aliased first, then id) less those hidden by another
    model of their endpoint answering to the same public name (the aliased one wins)."""
    taken: set[tuple[int, str]] = set()
    for model in models:
        name = public_name(model)
        if (model.endpoint_id, name) in taken:
            log.warning(
                "model %r of endpoint %r is hidden: another model of that endpoint answers to %r",
                model.upstream_id,
                endpoints[model.endpoint_id].name,
                name,
            )
            continue
        taken.add((model.endpoint_id, name))
        yield model


def claim_of(model: Model, endpoints: Mapping[int, Endpoint]) -> pooling.Claim:
    """``model``'s claim to its public name, for :func:`relaygate.pooling.resolve`."""
    return pooling.Claim(
        model.id,
        model.endpoint_id,
        public_name(model),
        model.alias is not None,
        endpoints[model.endpoint_id].pool,
    )
