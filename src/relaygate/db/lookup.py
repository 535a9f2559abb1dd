"""Finding a row the way operators name things: by numeric id, or by its unique name."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from relaygate.db.tables import Endpoint, Group, User
from relaygate.errors import NotFound

Named = TypeVar("Named", Endpoint, User, Group)


MAX_ID_DIGITS = 18
"""The most digits an id has (a 64-bit integer); a longer number is read as a name."""


def numeric_id(ident: int | str) -> int | None:
    """``ident`` as an id: an int, or a string of at most :data:`MAX_ID_DIGITS` ASCII
    digits; None for anything else (a name, ``²``, a number no database column holds,
    as an int or a string)."""
    if isinstance(ident, int):
        return ident if 0 <= ident < 2**63 else None
    if ident.isascii() and ident.isdigit() and len(ident) <= MAX_ID_DIGITS:
        return int(ident)
    return None


async def find_by_id_or_name(
    session: AsyncSession, table: type[Named], ident: int | str, what: str
) -> Named:
    """The row of ``table`` with id ``ident`` (or, for a string :func:`numeric_id` does
    not read as an id, that name).

    Raises :class:`NotFound` naming ``what`` (e.g. ``endpoint``) and ``ident``.
    """
    number = numeric_id(ident)
    if number is not None:
        row = await session.get(table, number)
    elif isinstance(ident, int):
        row = None
    else:
        row = await session.scalar(select(table).where(table.name == ident))
    if row is None:
        raise NotFound(f"no {what} {ident!r}")
    return row
