"""Finding a row the way operators name things: by numeric id, or by its unique name."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from relaygate.db.tables import Endpoint, Group, User
from relaygate.errors import NotFound

Named = TypeVar("Named", Endpoint, User, Group)


async def find_by_id_or_name(
    session: AsyncSession, table: type[Named], ident: int | str, what: str
) -> Named:
    """The row of ``table`` with id ``ident`` (or, for a non-numeric string, that name).

    Raises :class:`NotFound` naming ``what`` (e.g. ``endpoint``) and ``ident``.
    """
    if isinstance(ident, int) or ident.isdigit():
        row = await session.get(table, int(ident))
    else:
        row = await session.scalar(select(table).where(table.name == ident))
    if row is None:
        raise NotFound(f"no {what} {ident!r}")
    return row
