"""An endpoint's answer on its way to a client that speaks another API: translated as it
arrives, event by event for a stream, once whole for a JSON answer (see
:mod:`relaygate.proxy.translation`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson

from relaygate.errors import EventTooLarge
from relaygate.translate.base import Json, Stream
from relaygate.translate.sse import EventReader

log = logging.getLogger(__name__)
_EVENT_STREAM = b"text/event-stream"
_JSON = b"application/json"


class Reply:
    """One endpoint answer on its way to the client, in the client's API: ``feed`` each
    chunk as it arrives and send what it returns, then ``finish``. ``status``,
    ``content_type`` and ``headers`` are what the client's response starts with; a
    reply that buffers returns nothing before ``finish`` and may change ``status``
    there. ``result`` is the translated answer, once known (a stored response's);
    ``closed``, whether it ended the client's answer early (nothing more is read)."""

    status: int
    content_type: bytes
    headers: list[tuple[bytes, bytes]]

    @property
    def result(self) -> Json | None:
        return None

    @property
    def closed(self) -> bool:
        return False

    def feed(self, chunk: bytes) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        raise NotImplementedError

    def fail(self, message: str) -> bytes:
        """An error event for a stream that broke off (b"" when there is none)."""
        return b""


class StreamReply(Reply):
    """An event stream, translated event by event by ``stream``. It ends early with the
    stream's error event when an event passes ``max_event`` bytes, when the whole stream
    passes ``limit`` bytes (for a translation that holds the answer to build its last
    event, as Responses' ``response.completed`` does), or when the endpoint sent what the
    translation cannot read."""

    def __init__(
        self, status: int, stream: Stream, max_event: int, limit: int | None = None
    ) -> None:
        self.status = status
        self.content_type = _EVENT_STREAM
        self.headers = []
        self._stream = stream
        self._reader = EventReader(max_event)
        self._limit = limit
        self._size = 0
        self._over = False

    @property
    def result(self) -> Json | None:
        result: Json | None = getattr(self._stream, "result", None)
        return result

    def feed(self, chunk: bytes) -> bytes:
        if self._over:
            return b""
        self._size += len(chunk)
        if self._limit is not None and self._size > self._limit:
            return self.fail(f"the endpoint's answer is larger than {self._limit} bytes")
        try:
            stream = self._stream
            return b"".join([stream.event(event) for event in self._reader.feed(chunk)])
        except EventTooLarge as exc:
            return self.fail(f"the endpoint's stream could not be translated: {exc}")
        except Exception:
            return self._unreadable()

    def finish(self) -> bytes:
        if self._over:
            return b""
        try:
            stream = self._stream
            out = b"".join([stream.event(event) for event in self._reader.finish()])
            self._over = True
            return out + stream.end()
        except EventTooLarge as exc:
            return self.fail(f"the endpoint's stream could not be translated: {exc}")
        except Exception:
            return self._unreadable()

    @property
    def closed(self) -> bool:
        return self._over

    def fail(self, message: str) -> bytes:
        if self._over:
            return b""
        self._over = True
        return self._stream.fail(message)

    def _unreadable(self) -> bytes:
        # A translation never trusts an endpoint's events; one it could not read is a
        # bug to fix, logged, and the client's stream still ends in its API's error.
        log.exception("could not translate an event of an endpoint's stream")
        return self.fail("relaygate could not translate the endpoint's stream")


class JsonReply(Reply):
    """A whole JSON answer, translated once it is whole by ``convert`` (the endpoint's
    status and decoded body, None when it is not JSON → the client's status and body).
    More than ``limit`` bytes are not held: ``convert`` then gets None."""

    def __init__(
        self, status: int, convert: Callable[[int, Any], tuple[int, Json]], limit: int
    ) -> None:
        self.status = status
        self.content_type = _JSON
        self.headers = []
        self._result: Json | None = None
        self._convert = convert
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> bytes:
        self._size += len(chunk)
        if self._size <= self._limit:
            self._parts.append(chunk)
        else:
            self._parts = []
        return b""

    def finish(self) -> bytes:
        body: Any = None
        if self._parts:
            try:
                body = orjson.loads(b"".join(self._parts))
            except orjson.JSONDecodeError:
                body = None
            self._parts = []
        try:
            self.status, self._result = self._convert(self.status, body)
        except Exception:  # an answer the translation could not read: see StreamReply
            log.exception("could not translate an endpoint's answer")
            self.status, self._result = self._convert(502, None)
        return orjson.dumps(self._result)

    @property
    def result(self) -> Json | None:
        return self._result
