"""Responses relaygate produced by translating the OpenAI Responses API, stored for their
owner (``store``, the API's default) so that they can read them, delete them and continue
from them with ``previous_response_id``.

Each stored response is one row: the request's input items and the Response object,
as JSON encrypted with the vault (like provider keys), owned by the user whose key made
it, deleted ``responses_retention_days`` after it was made. The conversation before it
is its ``previous_id``'s, so a long conversation stores each turn once.

Only the owner reaches a stored response: for anyone else it does not exist (404 on
``GET``/``DELETE``, 400 ``previous_response_not_found`` when continued). A save is
visible to its owner at once (kept in memory until the database has it) and written by
:func:`write_stored_responses` off the request path.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import delete

from relaygate.background import wait_any
from relaygate.context import Context
from relaygate.db.tables import StoredResponse, utcnow
from relaygate.errors import BadRequest, NotFound

log = logging.getLogger(__name__)
MAX_CHAIN = 1000
"""The most earlier responses a ``previous_response_id`` chain is followed through."""
_PRUNE_EVERY = 3600.0
_PENDING_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Saved:
    """One response to store: its owner, the response it continued, the model's public
    name, the request's input items and the Response object."""

    user_id: int
    previous_id: str | None
    model: str
    input: list[Any]
    response: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.response["id"])


class ResponseStore:
    """Stored responses of ``ctx``'s database, per owner (see the module docstring)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._pending: dict[str, Saved] = {}
        self.wake = asyncio.Event()

    def save(self, saved: Saved) -> None:
        """Store ``saved`` (visible to its owner now, written soon). Past 10,000 waiting
        writes (a stalled database) a save is dropped and logged."""
        if len(self._pending) >= _PENDING_LIMIT:
            log.warning("stored response %s dropped: %d writes waiting", saved.id, _PENDING_LIMIT)
            return
        self._pending[saved.id] = saved
        self.wake.set()

    async def _load(self, user_id: int, response_id: str) -> Saved | None:
        saved = self._pending.get(response_id)
        if saved is not None:
            return saved if saved.user_id == user_id else None
        async with self._ctx.sessions() as session:
            row = await session.get(StoredResponse, response_id)
        if row is None or row.user_id != user_id or row.expires_at <= utcnow():
            return None
        data = orjson.loads(self._ctx.vault.decrypt(row.data_encrypted))
        return Saved(row.user_id, row.previous_id, row.model, data["input"], data["response"])

    async def get(self, user_id: int, response_id: str) -> dict[str, Any]:
        """The Response object ``response_id`` of ``user_id``; raises :class:`NotFound`
        (also for another user's)."""
        saved = await self._load(user_id, response_id)
        if saved is None:
            raise _not_found(response_id)
        return saved.response

    async def input_items(self, user_id: int, response_id: str) -> list[Any]:
        """The input items of ``user_id``'s response ``response_id``, as sent; raises
        :class:`NotFound`."""
        saved = await self._load(user_id, response_id)
        if saved is None:
            raise _not_found(response_id)
        return saved.input

    async def history(self, user_id: int, response_id: str) -> list[Any]:
        """The conversation up to and including ``user_id``'s response ``response_id``:
        every earlier input and output item in order. Raises :class:`BadRequest`
        (``previous_response_not_found``) when it is not the user's, expired or gone."""
        turns: list[Saved] = []
        ident: str | None = response_id
        while ident is not None and len(turns) < MAX_CHAIN:
            saved = await self._load(user_id, ident)
            if saved is None:
                if not turns:
                    raise BadRequest(
                        f"previous response {response_id!r} was not found (or has expired)",
                        param="previous_response_id",
                        code="previous_response_not_found",
                    )
                break  # an earlier turn expired: the conversation starts after it
            turns.append(saved)
            ident = saved.previous_id
        items: list[Any] = []
        for saved in reversed(turns):
            items.extend(saved.input)
            output = saved.response.get("output")
            items.extend(output if isinstance(output, list) else [])
        return items

    async def delete(self, user_id: int, response_id: str) -> None:
        """Delete ``user_id``'s response ``response_id``; raises :class:`NotFound`."""
        if await self._load(user_id, response_id) is None:
            raise _not_found(response_id)
        self._pending.pop(response_id, None)
        async with self._ctx.sessions() as session, session.begin():
            await session.execute(
                delete(StoredResponse).where(
                    StoredResponse.id == response_id, StoredResponse.user_id == user_id
                )
            )

    async def flush(self) -> None:
        """Write the waiting saves, in one transaction."""
        if not self._pending:
            return
        batch = list(self._pending.values())
        ctx = self._ctx
        now = utcnow()
        expires = now + timedelta(days=ctx.settings.responses_retention_days)
        async with ctx.sessions() as session, session.begin():
            for saved in batch:
                data = orjson.dumps({"input": saved.input, "response": saved.response})
                session.add(
                    StoredResponse(
                        id=saved.id,
                        user_id=saved.user_id,
                        previous_id=saved.previous_id,
                        model=saved.model[:500],
                        data_encrypted=ctx.vault.encrypt(data.decode()),
                        created_at=now,
                        expires_at=expires,
                    )
                )
        for saved in batch:
            if self._pending.get(saved.id) is saved:
                del self._pending[saved.id]

    async def prune(self) -> int:
        """Delete the stored responses past their retention; returns how many."""
        async with self._ctx.sessions() as session, session.begin():
            gone = await session.execute(
                delete(StoredResponse).where(StoredResponse.expires_at <= utcnow())
            )
        return int(getattr(gone, "rowcount", 0) or 0)


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"no response with id {response_id!r}", code="response_not_found")


async def write_stored_responses(store: ResponseStore, stop: asyncio.Event) -> None:
    """Write saved responses as they come (within a second of a burst), delete expired
    ones every hour, and write what is left when stopping; failures are logged and
    retried."""
    loop = asyncio.get_running_loop()
    next_prune = loop.time()
    while not stop.is_set():
        await wait_any(stop, store.wake, 1.0)
        store.wake.clear()
        try:
            await store.flush()
            if loop.time() >= next_prune:
                next_prune = loop.time() + _PRUNE_EVERY
                removed = await store.prune()
                if removed:
                    log.info("deleted %d stored responses past their retention", removed)
        except Exception:
            log.exception("could not write stored responses; will retry")
    try:
        await store.flush()
    except Exception:
        log.exception("could not write stored responses before stopping")
