"""Server-sent events, read incrementally and written: the framing both OpenAI's and
Anthropic's streams use.

Reading follows the HTML standard's event-stream parsing
(https://html.spec.whatwg.org/multipage/server-sent-events.html): lines end at LF, CRLF
or CR; ``event:`` names the event, ``data:`` lines are joined with LF; a blank line
dispatches the event; lines starting with ``:`` are comments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from relaygate.errors import EventTooLarge


@dataclass(frozen=True, slots=True)
class Event:
    """One dispatched event: its ``name`` (None when the stream named none) and its
    ``data`` text (the ``data:`` lines joined)."""

    name: str | None
    data: str


class EventReader:
    """Splits a byte stream into :class:`Event` s, chunk by chunk. Holds at most
    ``max_event`` bytes of an unfinished event; past that :meth:`feed` raises
    :class:`EventTooLarge`."""

    __slots__ = ("_carry", "_data", "_max", "_name", "_size")

    def __init__(self, max_event: int = 1024 * 1024) -> None:
        self._carry = b""
        self._max = max_event
        self._name: str | None = None
        self._data: list[str] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[Event]:
        """Take one chunk of the stream; returns the events it completed, in order."""
        data = self._carry + chunk if self._carry else chunk
        if b"\r" in data:
            # A CR at the very end may be the first half of a CRLF: wait for the next chunk.
            held = data.endswith(b"\r")
            body = data[:-1] if held else data
            data = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + (b"\r" if held else b"")
        end = data.rfind(b"\n")
        if end < 0:
            self._carry = data
            self._check(len(data))
            return []
        self._carry = data[end + 1 :]
        events: list[Event] = []
        for line in data[:end].split(b"\n"):
            self._line(line, events)
        self._check(len(self._carry))
        return events

    def finish(self) -> list[Event]:
        """The stream ended: an event left unterminated is dispatched, as a server that
        closes right after its last ``data:`` line means it."""
        events: list[Event] = []
        if self._carry:
            self._line(self._carry.rstrip(b"\r"), events)
            self._carry = b""
        self._line(b"", events)
        return events

    def _check(self, pending: int) -> None:
        if self._size + pending > self._max:
            raise EventTooLarge(f"an event is larger than {self._max} bytes")

    def _line(self, line: bytes, events: list[Event]) -> None:
        if not line:
            if self._data:
                events.append(Event(self._name, "\n".join(self._data)))
            self._name, self._data, self._size = None, [], 0
            return
        if line.startswith(b":"):
            return
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            self._data.append(value.decode("utf-8", "replace"))
            self._size += len(value) + 1
            self._check(0)
        elif field == b"event":
            self._name = value.decode("utf-8", "replace")


def encode(data: Any, name: str | None = None) -> bytes:
    """One event as bytes: ``event: name`` (when given) and ``data:`` the JSON of
    ``data``, then the blank line that dispatches it."""
    body = orjson.dumps(data)
    if name is None:
        return b"data: " + body + b"\n\n"
    return b"event: " + name.encode() + b"\ndata: " + body + b"\n\n"


DONE = b"data: [DONE]\n\n"
"""The end of an OpenAI chat-completions stream."""


def is_done(event: Event) -> bool:
    """Whether ``event`` is OpenAI's end of a chat-completions stream, ``[DONE]``."""
    return event.data.strip() == "[DONE]"


def json_object(event: Event) -> dict[str, Any] | None:
    """``event``'s data as a JSON object; None for anything else (not JSON, an array…)."""
    try:
        data = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None
