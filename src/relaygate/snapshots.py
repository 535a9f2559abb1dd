"""The current snapshot of a process, and how changes reach it.

:class:`SnapshotStore` loads the whole snapshot once (:meth:`SnapshotStore.load`), then
applies each change of the log in order (:mod:`relaygate.changes`): those this process
made as soon as they commit (:meth:`SnapshotStore.apply`), those of other processes when
:func:`relaygate.background.follow_changes` wakes it (:meth:`SnapshotStore.catch_up`).
Changes apply one at a time, under one lock, in the log's order. A process that finds a
gap in the log (it fell more than the log keeps behind), or a change of everything (a
secret-key rotation, a seed), rebuilds the whole snapshot: the safety net.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaygate.changes import Change, read_since, read_token, read_version
from relaygate.db.engine import read_one_view
from relaygate.loader import Loader
from relaygate.snapshot import Snapshot

log = logging.getLogger(__name__)
READ_AT_ONCE = 200
"""Log entries read per query when catching up."""
FREEZE_AFTER_ROUTES = 1_000
"""A change that built this many routes (a sync of a big catalogue) is frozen after."""


def _freeze() -> None:
    """Take what a big change built out of the cyclic garbage collector's sight, as
    start-up's snapshot is (app.py): otherwise the next full collections walk its
    hundred thousand new objects, holding the event loop for some 100 ms each. The
    young generations are collected first, so little cyclic garbage is frozen with it
    (frozen objects are still freed when no longer referenced)."""
    gc.collect(1)
    gc.freeze()


class SnapshotStore:
    """Holds the current snapshot and keeps it current.

    ``check`` runs in the session of each full load before it reads (it raises
    :class:`relaygate.errors.ConfigError` when the secret key was rotated elsewhere).
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        loader: Loader,
        check: Callable[[AsyncSession], Awaitable[None]] | None = None,
    ):
        self._sessions = sessions
        self._loader = loader
        self._check = check
        self._lock = asyncio.Lock()
        self.current = Snapshot.empty()
        self.loaded_at = time.monotonic()
        """When the current snapshot was last changed (``time.monotonic()`` seconds)."""
        self.rebuilds = 0
        """Full loads since start (the first included)."""
        self._token: str | None = None
        """The log token of the change the snapshot is at (None: unknown, e.g. pruned)."""
        self._broken = False
        """Set when applying a change failed halfway: the next catch-up rebuilds."""
        self.endpoints_changed = asyncio.Event()
        """Set when a change to some endpoint was applied: the scheduler looks again."""
        self.freezes_big_changes = False
        """Whether what a big change built is frozen (:func:`_freeze`): only in a server
        process of ``relaygate serve``, which owns its heap."""

    @property
    def loaded(self) -> bool:
        return self.current.version >= 0

    async def load(self) -> Snapshot:
        """Build a whole new snapshot from the database and make it current."""
        async with self._lock:
            return await self._load()

    async def _load(self) -> Snapshot:
        async with self._sessions() as session:
            # One view of every table: an endpoint committed with its models between two
            # reads must not show its models without it.
            await read_one_view(session)
            if self._check is not None:
                await self._check(session)
            version = await read_version(session)
            token = await read_token(session, version)
            snapshot = await self._loader.load(session, version)
        self.current = snapshot
        self._token = token
        self._broken = False
        self.loaded_at = time.monotonic()
        self.rebuilds += 1
        self.endpoints_changed.set()
        log.debug(
            "snapshot %d loaded: %d keys, %d model names",
            version,
            len(snapshot.keys),
            len(snapshot.models),
        )
        return snapshot

    async def rebuilt(self) -> Snapshot:
        """A whole snapshot built from the database now, not made current: what the
        current one must equal once every change is applied (tests check that)."""
        async with self._lock, self._sessions() as session:
            await read_one_view(session)
            return await self._loader.load(session, await read_version(session))

    async def apply(self, version: int, token: str, change: Change) -> None:
        """Apply ``change``, committed as ``version`` of the log (with ``token``), unless
        already applied; changes before it not yet applied are read from the log first.
        Nothing happens before the first :meth:`load` (a CLI process has no snapshot)."""
        async with self._lock:
            if not self.loaded:
                return
            if version != self.current.version + 1 or self._broken:
                # Behind, broken, or the counter went back (a restored database): the log
                # (or a rebuild) brings the snapshot up to date.
                await self._catch_up()
                return
            await self._apply(version, token, change)

    async def catch_up(self) -> None:
        """Apply the changes the log holds past the current snapshot (those of other
        processes); rebuild the whole when some are no longer in the log, when the
        counter went back (a database restored from a backup), or when an earlier apply
        failed halfway. Before the first :meth:`load`, loads."""
        async with self._lock:
            if not self.loaded:
                await self._load()
                return
            await self._catch_up()

    async def _catch_up(self) -> None:
        while True:
            if self._broken:
                log.warning("an earlier change was applied halfway; rebuilding the snapshot")
                await self._load()
                return
            async with self._sessions() as session:
                head = await read_version(session)
                token = await read_token(session, self.current.version)
                replaced = token is not None and self._token is not None and token != self._token
                if head < self.current.version or replaced:
                    log.warning(
                        "the change counter went back (a database restored from a backup?); "
                        "rebuilding the snapshot"
                    )
                    await self._load()
                    return
                if head == self.current.version:
                    return
                found = await read_since(session, self.current.version, READ_AT_ONCE)
            if not found or found[0][0] != self.current.version + 1:
                log.warning(
                    "changes after %d are not in the change log (it holds up to %d); "
                    "rebuilding the snapshot",
                    self.current.version,
                    head,
                )
                await self._load()
                return
            for version, token, change in found:
                if version <= self.current.version:  # a rebuild in this batch covered it
                    continue
                await self._apply(version, token, change)

    async def _apply(self, version: int, token: str, change: Change) -> None:
        if change.of("all"):
            await self._load()
            return
        before = self._loader.recomputed
        try:
            async with self._sessions() as session, session.begin():
                await self._loader.apply(self.current, session, change)
        except BaseException:
            # Part of the change may be in the snapshot already: only a rebuild is sure.
            self._broken = True
            raise
        self.current.version = version
        self._token = token
        if change.of("endpoint"):
            self.endpoints_changed.set()
        if self.freezes_big_changes and self._loader.recomputed - before >= FREEZE_AFTER_ROUTES:
            _freeze()
