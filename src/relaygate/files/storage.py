"""The contents of files, kept outside the database: one file per id in a directory.

Contents are written under a temporary name and renamed into place once whole, so a
reader never sees half a file and a process killed mid-write leaves only a ``.part``
file (swept once older than any live upload). Every disk operation runs in a worker
thread, off the event loop. Replicas share the directory (a network volume) to share
files.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import BinaryIO

from relaygate.errors import ConfigError

CHUNK_BYTES = 1024 * 1024
"""Bytes read from disk at a time."""
_PART = ".part"


class FileStorage:
    """File contents under ``root`` (created when missing), named by file id."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def prepare(self) -> None:
        """Create the directory and check it can be written. Raises
        :class:`ConfigError` naming the directory when it cannot be created or written."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe-{secrets.token_hex(4)}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(
                f"files_dir {str(self.root)!r} cannot be written ({exc.strerror}): set "
                "RELAYGATE_FILES_DIR to a writable directory"
            ) from None

    def path(self, file_id: str) -> Path:
        """Where the contents of ``file_id`` live (ids are relaygate's own, never a path)."""
        assert "/" not in file_id and not file_id.startswith(".")
        return self.root / file_id

    def writer(self, file_id: str) -> Writer:
        """A :class:`Writer` of the contents of ``file_id``."""
        return Writer(self.path(file_id))

    async def read_range(self, file_id: str, offset: int, length: int) -> bytes:
        """``length`` bytes of ``file_id`` from ``offset``. Raises :class:`OSError` when
        the contents are gone."""

        def read() -> bytes:
            with self.path(file_id).open("rb") as handle:
                handle.seek(offset)
                return handle.read(length)

        return await asyncio.to_thread(read)

    async def chunks(self, file_id: str, chunk: int = CHUNK_BYTES) -> AsyncGenerator[bytes]:
        """The contents of ``file_id``, ``chunk`` bytes at a time. Raises :class:`OSError`
        when they are gone."""
        handle: BinaryIO = await asyncio.to_thread(self.path(file_id).open, "rb")
        try:
            while True:
                data = await asyncio.to_thread(handle.read, chunk)
                if not data:
                    return
                yield data
        finally:
            await asyncio.to_thread(handle.close)

    async def ids_older_than(self, seconds: float) -> list[str]:
        """Ids of the whole contents stored, last written more than ``seconds`` ago."""

        def scan() -> list[str]:
            limit = time.time() - seconds
            if not self.root.is_dir():
                return []
            return [
                entry.name
                for entry in os.scandir(self.root)
                if entry.is_file()
                and not entry.name.startswith(".")
                and not entry.name.endswith(_PART)
                and entry.stat().st_mtime < limit
            ]

        return await asyncio.to_thread(scan)

    async def drop_parts_older_than(self, seconds: float) -> int:
        """Delete what writes cut short left (``.part`` files last written more than
        ``seconds`` ago: no live upload is that slow); returns how many."""

        def sweep() -> int:
            limit = time.time() - seconds
            if not self.root.is_dir():
                return 0
            dropped = 0
            for entry in os.scandir(self.root):
                if entry.name.endswith(_PART) and entry.stat().st_mtime < limit:
                    Path(entry.path).unlink(missing_ok=True)
                    dropped += 1
            return dropped

        return await asyncio.to_thread(sweep)

    async def delete(self, file_id: str) -> None:
        """Delete the contents of ``file_id`` (nothing when already gone)."""
        await asyncio.to_thread(self.path(file_id).unlink, True)

    async def exists(self, file_id: str) -> bool:
        return await asyncio.to_thread(self.path(file_id).exists)


class Writer:
    """Writes one file's contents: :meth:`write` chunks, then :meth:`commit` (the file
    appears whole) or :meth:`abort` (nothing is left). ``size`` and ``sha256`` describe
    what was written. Chunks are gathered up to :data:`CHUNK_BYTES` before each write."""

    def __init__(self, final: Path) -> None:
        self._final = final
        self._part = final.with_name(final.name + _PART)
        self._handle: BinaryIO | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._hash = hashlib.sha256()
        self.size = 0

    @property
    def file_id(self) -> str:
        """The id of the file written."""
        return self._final.name

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    async def write(self, data: bytes) -> None:
        """Add ``data`` to the contents."""
        if not data:
            return
        self._hash.update(data)
        self.size += len(data)
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= CHUNK_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        if self._handle is None:
            self._handle = await asyncio.to_thread(self._part.open, "wb")
        await asyncio.to_thread(self._handle.write, data)

    async def commit(self) -> None:
        """Make the contents whole on disk under their final name."""
        await self._flush()
        if self._handle is None:
            self._handle = await asyncio.to_thread(self._part.open, "wb")
        handle = self._handle

        def finish() -> None:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            os.replace(self._part, self._final)

        await asyncio.to_thread(finish)
        self._handle = None

    async def abort(self) -> None:
        """Drop what was written."""
        handle, self._handle = self._handle, None
        self._pending.clear()

        def drop() -> None:
            if handle is not None:
                handle.close()
            self._part.unlink(missing_ok=True)

        await asyncio.to_thread(drop)
