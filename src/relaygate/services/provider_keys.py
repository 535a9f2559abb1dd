"""Users' own provider keys (bring your own key): set, clear, list — hints only."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from relaygate.changes import unit
from relaygate.context import Context
from relaygate.db.tables import Endpoint, UserProviderKey, utcnow
from relaygate.errors import BadRequest, NotFound
from relaygate.services.endpoint_fields import check_provider_key
from relaygate.vault import key_hint


@dataclass(frozen=True, slots=True)
class ProviderKeyInfo:
    """A user's own key for one endpoint, never the key itself."""

    endpoint_id: int
    endpoint_name: str
    api_key_hint: str | None
    created_at: datetime
    updated_at: datetime


async def list_own_keys(ctx: Context, user_id: int) -> list[ProviderKeyInfo]:
    """The user's own keys (hints only) with their endpoints' ids and names, by endpoint."""
    async with ctx.sessions() as session:
        rows = await session.execute(
            select(UserProviderKey, Endpoint.name)
            .join(Endpoint)
            .where(UserProviderKey.user_id == user_id)
            .order_by(UserProviderKey.endpoint_id)
        )
        return [
            ProviderKeyInfo(row.endpoint_id, name, row.api_key_hint, row.created_at, row.updated_at)
            for row, name in rows
        ]


def _no_endpoint(endpoint_id: int) -> NotFound:
    return NotFound(f"no endpoint with id {endpoint_id}")


async def set_own_key(
    ctx: Context,
    user_id: int,
    endpoint_id: int,
    api_key: str,
    *,
    nameable: AbstractSet[int] | None,
) -> ProviderKeyInfo:
    """Store (or replace) the user's own key for an endpoint, encrypted. ``nameable`` is
    the endpoint ids the user may name (None: any); any other endpoint is answered
    exactly as a nonexistent one, so its name and existence stay hidden.

    Raises :class:`NotFound` for an unknown or unnameable endpoint, :class:`BadRequest`
    for an empty key. Returns the key's hint and its endpoint's name.
    """
    checked = check_provider_key(api_key, "api_key", ctx.settings.max_provider_key_bytes)
    if checked is None:
        raise BadRequest("api_key must be non-empty printable ASCII", param="api_key")
    api_key = checked
    async with unit(ctx) as session:
        endpoint = await session.get(Endpoint, endpoint_id)
        if endpoint is None or (nameable is not None and endpoint_id not in nameable):
            raise _no_endpoint(endpoint_id)
        row = await session.scalar(
            select(UserProviderKey).where(
                UserProviderKey.user_id == user_id, UserProviderKey.endpoint_id == endpoint_id
            )
        )
        if row is None:
            row = UserProviderKey(user_id=user_id, endpoint_id=endpoint_id)
            session.add(row)
        row.api_key_encrypted = ctx.vault.encrypt(api_key.strip())
        row.api_key_hint = key_hint(api_key.strip())
        row.updated_at = utcnow()
        name = endpoint.name
    return ProviderKeyInfo(
        endpoint_id, name, row.api_key_hint, row.created_at or row.updated_at, row.updated_at
    )


async def clear_own_key(
    ctx: Context, user_id: int, endpoint_id: int, *, nameable: AbstractSet[int] | None
) -> None:
    """Remove the user's own key for an endpoint. A key the user has is always removed
    (it is theirs, and :func:`list_own_keys` shows it), even for an endpoint outside
    ``nameable`` (the endpoint ids they may name; None: any).

    Raises :class:`NotFound`: as for a nonexistent endpoint when the endpoint is unknown
    or not nameable, else because the user has no key there.
    """
    async with unit(ctx) as session:
        row = await session.scalar(
            select(UserProviderKey).where(
                UserProviderKey.user_id == user_id, UserProviderKey.endpoint_id == endpoint_id
            )
        )
        if row is None:
            if (nameable is not None and endpoint_id not in nameable) or await session.get(
                Endpoint, endpoint_id
            ) is None:
                raise _no_endpoint(endpoint_id)
            raise NotFound(f"you have no own key for endpoint {endpoint_id}")
        await session.delete(row)
