"""Responses relaygate produced by translating the OpenAI Responses API, stored for their
owner (``store``, the API's default) so that they can read them, delete them and continue
from them with ``previous_response_id``.

Each stored response is one row: the request's input items and the Response object,
as JSON encrypted with the vault (like provider keys), owned by the user whose key made
it, deleted ``responses_retention_days`` after it was made. The conversation before it
is its ``previous_id``'s, so a long conversation stores each turn once.

Only the owner reaches a stored response: for anyone else it does not exist (404 on
``GET``/``DELETE``, 400 ``previous_response_not_found`` when continued). A save is
visible to its owner at once (kept in memory until the database has it; in this process
only) and written by :func:`write_stored_responses` off the request path.

Bounds: a response is stored only when its JSON is at most ``max_bytes`` (the
``max_body_bytes`` setting), a conversation continued is read back to at most
:data:`MAX_CHAIN` turns and ``max_bytes`` of stored data (past that, 400
``conversation_too_long``), saves waiting to be written hold at most
:data:`PENDING_BYTES`, and large rows are encrypted and decrypted off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import delete

from relaygate.context import Context
from relaygate.db.engine import refused_data
from relaygate.db.tables import StoredResponse, utcnow
from relaygate.errors import BadRequest, NotFound
from relaygate.pauses import wait_any

log = logging.getLogger(__name__)
MAX_CHAIN = 256
"""The most earlier responses a ``previous_response_id`` chain is followed through."""
PENDING_BYTES = 64 * 1024 * 1024
"""Saves waiting for the database, in bytes of JSON; past it a save is dropped (logged)."""
RESPONSE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What a response id may look like (relaygate's are ``resp_`` and 48 hex digits)."""
_PRUNE_EVERY = 3600.0
_OFF_LOOP = 64 * 1024
"""Rows larger than this are encrypted and decrypted in a thread, not on the loop."""


@dataclass(frozen=True, slots=True)
class Saved:
    """One response to store: its owner, the response it continued, the model's public
    name, the request's input items and the Response object; ``data`` is their JSON as
    stored (empty until :meth:`ResponseStore.save` made it)."""

    user_id: int
    previous_id: str | None
    model: str
    input: list[Any]
    response: dict[str, Any]
    data: bytes = b""

    @property
    def id(self) -> str:
        return str(self.response["id"])


class ResponseStore:
    """Stored responses of ``ctx``'s database, per owner (see the module docstring)."""

    def __init__(self, ctx: Context, max_bytes: int) -> None:
        self._ctx = ctx
        self._max = max_bytes
        self._pending: dict[str, Saved] = {}
        self._pending_bytes = 0
        # Held while a batch is written: a delete waits for it, so a response deleted
        # while its row was on its way is not written back after.
        self._writing = asyncio.Lock()
        self.wake = asyncio.Event()

    def save(self, saved: Saved) -> None:
        """Store ``saved`` (visible to its owner now, written soon). A response larger
        than ``max_bytes`` is not stored, nor one past :data:`PENDING_BYTES` of saves
        waiting (a stalled database); both are logged."""
        data = orjson.dumps({"input": saved.input, "response": saved.response})
        if len(data) > self._max:
            log.info("response %s not stored: %d bytes, over %d", saved.id, len(data), self._max)
            return
        if self._pending_bytes + len(data) > PENDING_BYTES:
            log.warning("stored response %s dropped: the database is behind", saved.id)
            return
        self._pending[saved.id] = replace(saved, data=data)
        self._pending_bytes += len(data)
        self.wake.set()

    async def _load(self, user_id: int, response_id: str) -> Saved | None:
        saved = self._pending.get(response_id)
        if saved is not None:
            return saved if saved.user_id == user_id else None
        async with self._ctx.sessions() as session:
            row = await session.get(StoredResponse, response_id)
        if row is None or row.user_id != user_id or row.expires_at <= utcnow():
            return None
        token = row.data_encrypted
        if len(token) > _OFF_LOOP:
            text = await asyncio.to_thread(self._ctx.vault.decrypt, token)
        else:
            text = self._ctx.vault.decrypt(token)
        data = orjson.loads(text)
        return Saved(row.user_id, row.previous_id, row.model, data["input"], data["response"], b"")

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
        size = 0
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
            size += len(orjson.dumps(saved.input)) + len(orjson.dumps(saved.response))
            if size > self._max:
                raise BadRequest(
                    f"the conversation of {response_id!r} is longer than relaygate sends "
                    f"({self._max} bytes, setting max_body_bytes): send its items in input",
                    param="previous_response_id",
                    code="conversation_too_long",
                )
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
        async with self._writing:
            gone = self._pending.pop(response_id, None)
            if gone is not None:
                self._pending_bytes -= len(gone.data)
            await self._delete_row(user_id, response_id)

    async def _delete_row(self, user_id: int, response_id: str) -> None:
        async with self._ctx.sessions() as session, session.begin():
            await session.execute(
                delete(StoredResponse).where(
                    StoredResponse.id == response_id, StoredResponse.user_id == user_id
                )
            )

    async def flush(self) -> None:
        """Write the waiting saves, in one transaction. Should the database refuse them
        for what they hold (the user was deleted meanwhile: see
        :func:`relaygate.db.engine.refused_data`), they are written one by one, and those
        refused alone are dropped (and logged). Any other failure (the database out of
        reach) is raised, and the saves not yet written wait for the next flush."""
        if not self._pending:
            return
        async with self._writing:
            batch = list(self._pending.values())
            rows = [await self._row(saved) for saved in batch]
            done: list[Saved] = []
            try:
                try:
                    async with self._ctx.sessions() as session, session.begin():
                        session.add_all(rows)
                    done = batch
                except Exception as exc:
                    if not refused_data(exc):
                        raise
                    for saved in batch:
                        await self._write_one(saved)
                        done.append(saved)
            finally:
                for saved in done:
                    if self._pending.get(saved.id) is saved:
                        del self._pending[saved.id]
                        self._pending_bytes -= len(saved.data)

    async def _write_one(self, saved: Saved) -> None:
        """Write one save; a save the database refuses is dropped and logged, any other
        failure raised."""
        try:
            async with self._ctx.sessions() as session, session.begin():
                session.add(await self._row(saved))
        except Exception as exc:
            if not refused_data(exc):
                raise
            log.warning("stored response %s not written: %s", saved.id, exc)

    async def _row(self, saved: Saved) -> StoredResponse:
        ctx = self._ctx
        now = utcnow()
        text = saved.data.decode()
        if len(text) > _OFF_LOOP:
            token = await asyncio.to_thread(ctx.vault.encrypt, text)
        else:
            token = ctx.vault.encrypt(text)
        return StoredResponse(
            id=saved.id,
            user_id=saved.user_id,
            previous_id=saved.previous_id,
            model=saved.model[:500],
            data_encrypted=token,
            created_at=now,
            expires_at=now + timedelta(days=ctx.settings.responses_retention_days),
        )

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
