"""Models: list them and set an alias or enable/disable one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import ConfigDict
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaygate import access
from relaygate.changes import unit
from relaygate.context import Context
from relaygate.db.lookup import numeric_id
from relaygate.db.tables import Endpoint, Model
from relaygate.errors import BadRequest, Conflict, NotFound
from relaygate.model_spec import ModelUpdate

MODEL_STATUSES = ("online", "offline")


@dataclass(frozen=True, slots=True)
class ModelConflict:
    """Why a model serves nothing: another endpoint's model holds its public ``name``
    (pooling is the operator's act: a shared alias or one pool)."""

    __pydantic_config__ = ConfigDict(use_attribute_docstrings=True)

    name: str
    """The public name in dispute"""
    held_by_model_id: int
    held_by_endpoint_id: int
    held_by_endpoint_name: str

    def describe(self) -> str:
        """One line for people, e.g. ``held by endpoint 'first' (model 12)``."""
        return f"held by endpoint {self.held_by_endpoint_name!r} (model {self.held_by_model_id})"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model of one endpoint, as the admin API shows it; ``conflict`` is set when it
    serves nothing because another endpoint's model holds its public name."""

    __pydantic_config__ = ConfigDict(use_attribute_docstrings=True)

    id: int
    endpoint_id: int
    upstream_id: str
    alias: str | None
    status: Literal["online", "offline"]
    enabled: bool
    owned_by: str | None
    display_name: str | None
    context_window: int | None
    max_output_tokens: int | None
    created: datetime | None
    capabilities: list[str]
    fallback_model: str | None
    input_cost_per_million_tokens: float | None
    output_cost_per_million_tokens: float | None
    first_seen_at: datetime
    last_seen_at: datetime
    conflict: ModelConflict | None
    """Set when the model serves nothing: another endpoint's model holds its public name
    (give both one alias, or their endpoints one pool, to pool them)"""
    default_output_tokens: int | None = None
    """Completion tokens a budget reserves for a request that states no cap."""


async def conflicts(session: AsyncSession) -> dict[int, ModelConflict]:
    """The name conflicts among enabled models of enabled endpoints in ``session``, by the
    id of the model left without traffic: what the snapshot routes by
    (:func:`relaygate.access.serving_models`), for places that have no snapshot."""
    _, found = await access.serving_models(session, await access.enabled_endpoints(session))
    # The holder may be disabled (it keeps its names): every endpoint's name is needed.
    names = {
        endpoint_id: name
        for endpoint_id, name in await session.execute(select(Endpoint.id, Endpoint.name))
    }
    return {
        model_id: ModelConflict(
            c.name,
            c.held_by_model_id,
            c.held_by_endpoint_id,
            names[c.held_by_endpoint_id],
        )
        for model_id, c in found.items()
    }


def _info(model: Model, conflict: ModelConflict | None) -> ModelInfo:
    return ModelInfo(
        id=model.id,
        endpoint_id=model.endpoint_id,
        upstream_id=model.upstream_id,
        alias=model.alias,
        status="online" if model.status == "online" else "offline",
        enabled=model.enabled,
        owned_by=model.owned_by,
        display_name=model.display_name,
        context_window=model.context_window,
        max_output_tokens=model.max_output_tokens,
        created=model.created,
        capabilities=list(model.capabilities or []),
        fallback_model=model.fallback_model,
        input_cost_per_million_tokens=model.input_cost_per_million_tokens,
        output_cost_per_million_tokens=model.output_cost_per_million_tokens,
        first_seen_at=model.first_seen_at,
        last_seen_at=model.last_seen_at,
        default_output_tokens=model.default_output_tokens,
        conflict=conflict,
    )


async def find_model_id(ctx: Context, ident: int | str) -> int:
    """The id of the model ``ident`` names: a numeric id, else a public name (alias, or
    upstream id where there is no alias), else an upstream id.

    Raises :class:`NotFound` when nothing matches, and :class:`BadRequest` listing the
    ids when the name is ambiguous (models of several endpoints share it).
    """
    async with ctx.sessions() as session:
        number = numeric_id(ident)
        if number is not None:
            if await session.get(Model, number) is None:
                raise NotFound(f"no model with id {ident}")
            return number
        if isinstance(ident, int):
            raise NotFound(f"no model with id {ident}")
        public = or_(Model.alias == ident, Model.alias.is_(None) & (Model.upstream_id == ident))
        found: list[tuple[int, str]] = []
        for condition in (public, Model.upstream_id == ident):
            query = (
                select(Model.id, Endpoint.name)
                .join(Endpoint, Endpoint.id == Model.endpoint_id)
                .where(condition)
            )
            found = [(i, name) for i, name in await session.execute(query.order_by(Model.id))]
            if found:
                break
    if not found:
        raise NotFound(f"no model {ident!r}")
    if len(found) > 1:
        listed = ", ".join(f"{i} (endpoint {name!r})" for i, name in found)
        raise BadRequest(f"model name {ident!r} is ambiguous: give one of the ids {listed}")
    return found[0][0]


async def list_models(
    ctx: Context, *, endpoint_id: int | None = None, status: str | None = None
) -> list[ModelInfo]:
    """Models, optionally of one endpoint and/or one status (``online``/``offline``), each
    with its name conflict, if any.

    Raises :class:`BadRequest` for another status.
    """
    query = select(Model).order_by(Model.endpoint_id, Model.upstream_id)
    if endpoint_id is not None:
        query = query.where(Model.endpoint_id == endpoint_id)
    if status is not None:
        if status not in MODEL_STATUSES:
            raise BadRequest("status must be 'online' or 'offline'", param="status")
        query = query.where(Model.status == status)
    async with ctx.sessions() as session:
        found = (await session.scalars(query)).all()
        held = await conflicts(session)
        return [_info(model, held.get(model.id)) for model in found]


async def update_model(ctx: Context, model_id: int, changes: ModelUpdate) -> ModelInfo:
    """Apply the fields ``changes`` sent: set or clear (``None`` or empty) a model's
    alias, fallback model or prices (per million prompt/completion tokens, for the cost
    in usage records), or enable/disable it; returns the model with its name conflict
    after the change. The fallback is a public model name tried when every endpoint
    serving this model fails; it need not exist yet, and is skipped for callers who may
    not use it.

    Raises :class:`NotFound`, :class:`BadRequest` for a fallback to the model itself or
    longer than 500 characters or a price outside 0 to 1,000,000, and :class:`Conflict`
    when another model of the same endpoint already answers to the new public name.
    ``default_output_tokens`` (1 to 10,000,000, or None) is what a budget reserves for a
    request that states no cap on its completion tokens.
    """
    sent = changes.changes()
    async with unit(ctx) as session:
        model = await session.get(Model, model_id)
        if model is None:
            raise NotFound(f"no model with id {model_id}")
        if "alias" in sent:
            await _set_alias(session, model, sent["alias"])
        if sent.get("enabled") is not None:
            model.enabled = sent["enabled"]
        if "fallback_model" in sent:
            model.fallback_model = _fallback(model, sent["fallback_model"])
        for field in ("input_cost_per_million_tokens", "output_cost_per_million_tokens"):
            if field in sent:
                price = sent[field]
                if price is not None and not 0 <= price <= 1e6:
                    raise BadRequest(f"{field} must be between 0 and 1000000", param=field)
                setattr(model, field, price)
        if "default_output_tokens" in sent:
            model.default_output_tokens = _output_tokens(sent["default_output_tokens"])
        await session.flush()
        conflict = (await conflicts(session)).get(model.id)
    return _info(model, conflict)


async def _set_alias(session: AsyncSession, model: Model, alias: str | None) -> None:
    """Give ``model`` the public name ``alias`` (None or blank: its upstream id); raises
    :class:`Conflict` when another model of its endpoint answers to that name."""
    alias = alias.strip() if alias else None
    name = alias or model.upstream_id
    clash = await session.scalar(
        select(Model.upstream_id).where(
            Model.endpoint_id == model.endpoint_id,
            Model.id != model.id,
            or_(Model.alias == name, (Model.alias.is_(None)) & (Model.upstream_id == name)),
        )
    )
    if clash is not None:
        raise Conflict(
            f"model {clash!r} of the same endpoint already answers to {name!r}; "
            "give this one another alias (models of different endpoints may share one)",
            param="alias",
        )
    model.alias = alias


def _fallback(model: Model, value: str | None) -> str | None:
    """The fallback model as stored (None or blank: none); raises :class:`BadRequest`
    for the model itself or a name over 500 characters."""
    fallback = value.strip() if value else None
    if fallback is not None and (
        fallback == (model.alias or model.upstream_id) or len(fallback) > 500
    ):
        raise BadRequest(
            "fallback_model must be another model's public name (up to 500 characters)",
            param="fallback_model",
        )
    return fallback


def _output_tokens(value: int | None) -> int | None:
    """``default_output_tokens`` checked: 1 to 10,000,000, or None."""
    if value is not None and (isinstance(value, bool) or not 0 < value <= 10_000_000):
        raise BadRequest(
            "default_output_tokens must be a whole number from 1 to 10000000, or null",
            param="default_output_tokens",
        )
    return value
