"""The configuration change counter.

Every service that changes what the snapshot holds bumps the counter in the
same transaction; each relaygate process compares it with its snapshot's
version about once a second (off the request path) and rebuilds on a change.
That is how a key revoked by the CLI reaches a running server.
"""

from __future__ import annotations

from sqlalchemy import Integer, Text, cast, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from relaygate.db.tables import Meta

VERSION_KEY = "config_version"
CHANNEL = "relaygate_changes"


async def read_version(session: AsyncSession) -> int:
    """The current change counter (0 before the first change)."""
    value = await session.scalar(select(Meta.value).where(Meta.key == VERSION_KEY))
    return int(value) if value is not None else 0


async def bump(session: AsyncSession) -> None:
    """Increment the change counter inside the caller's transaction (atomic in SQL).

    On PostgreSQL this also notifies :data:`CHANNEL`, delivered to every listening
    replica when the transaction commits.
    """
    await session.execute(
        update(Meta)
        .where(Meta.key == VERSION_KEY)
        .values(value=cast(cast(Meta.value, Integer) + 1, Text))
    )
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text(f"NOTIFY {CHANNEL}"))
