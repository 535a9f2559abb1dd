"""A batch input file read line by line as it arrives, and each line checked.

Each line is one request, in OpenAI's batch input format
(https://platform.openai.com/docs/api-reference/batch/request-input)::

    {"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "...", "messages": [...]}}

:class:`LineSplitter` cuts a stream of chunks into lines without holding more than the
longest line; :class:`BatchLines` checks each: JSON, ``custom_id`` a unique non-empty
string, ``method`` POST, ``url`` one of :data:`BATCH_URLS` and the same on every line,
``body`` an object with a string ``model`` the caller may use and no ``stream``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson

from relaygate.errors import BadRequest
from relaygate.inputs import has_control_character

BATCH_URLS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/messages",
)
"""The routes a batch may run (``url`` of each line, ``endpoint`` of the batch)."""
MAX_CUSTOM_ID = 512


def line_error(number: int, message: str) -> BadRequest:
    """The error of a batch input file's line ``number`` (1-based)."""
    return BadRequest(f"line {number}: {message}", param="file", code="invalid_batch_line")


class LineSplitter:
    """Cuts chunks into lines: :meth:`feed` yields ``(number, offset, line)`` for each
    whole line (``offset`` of its first byte in the stream, ``line`` without its
    ``\\n``), :meth:`finish` the last one when the stream does not end with a newline.
    A line longer than ``max_line`` bytes raises :class:`BadRequest` naming it."""

    def __init__(self, max_line: int) -> None:
        self._max = max_line
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._offset = 0
        """Offset of the first byte held (the start of the line being read)."""
        self.number = 0

    def feed(self, chunk: bytes) -> Iterator[tuple[int, int, bytes]]:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            piece = chunk[start:end]
            if self._held:
                self._held.append(piece)
                line = b"".join(self._held)
                self._held.clear()
                self._held_bytes = 0
            else:
                line = piece
            self.number += 1
            if len(line) > self._max:
                raise line_error(self.number, f"longer than {self._max} bytes")
            yield self.number, self._offset, line
            self._offset += len(line) + 1
            start = end + 1
        rest = chunk[start:]
        if rest:
            self._held.append(rest)
            self._held_bytes += len(rest)
            if self._held_bytes > self._max:
                raise line_error(self.number + 1, f"longer than {self._max} bytes")

    def finish(self) -> Iterator[tuple[int, int, bytes]]:
        if self._held:
            line = b"".join(self._held)
            self._held.clear()
            self._held_bytes = 0
            self.number += 1
            yield self.number, self._offset, line


@dataclass(frozen=True, slots=True)
class Line:
    """One request of a batch input file: its line ``number``, ``custom_id``, ``offset``
    and ``length`` in bytes, its ``url`` and its body's ``model``."""

    number: int
    custom_id: str
    offset: int
    length: int
    url: str
    model: str


def parse_line(number: int, offset: int, line: bytes) -> Line | None:
    """Check one line's shape (not its model's access); None for a blank line. Raises
    :class:`BadRequest` naming the line and what is wrong."""
    if not line.strip():
        return None
    try:
        item = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise line_error(number, f"not valid JSON ({exc.args[0]})") from None
    if not isinstance(item, dict):
        raise line_error(number, "must be a JSON object with custom_id, method, url and body")
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > MAX_CUSTOM_ID:
        raise line_error(number, f"'custom_id' must be a string of 1 to {MAX_CUSTOM_ID} characters")
    if has_control_character(custom_id):
        raise line_error(number, "'custom_id' must not contain control characters")
    if item.get("method") != "POST":
        raise line_error(number, "'method' must be 'POST'")
    url = item.get("url")
    if url not in BATCH_URLS:
        raise line_error(number, f"'url' must be one of {', '.join(BATCH_URLS)}, not {url!r}")
    body = item.get("body")
    if not isinstance(body, dict):
        raise line_error(number, "'body' must be a JSON object (the request's body)")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise line_error(number, "'body.model' must be a non-empty string")
    if has_control_character(model):
        raise line_error(number, "'body.model' must not contain control characters")
    if body.get("stream") is not None and body.get("stream") is not False:
        raise line_error(number, "'body.stream' is not allowed: batch answers are not streamed")
    return Line(number, custom_id, offset, len(line), url, model)


class BatchLines:
    """Checks a batch input file line by line as its chunks arrive (:meth:`feed`, then
    :meth:`finish`). ``model_error(model)`` says why the caller may not use ``model``
    (None: they may); at most ``max_lines`` requests, each at most ``max_line`` bytes.
    Afterwards ``count`` is the number of requests and ``url`` their one route. Raises
    :class:`BadRequest` (code ``invalid_batch_line``) naming the first bad line."""

    def __init__(
        self, max_line: int, max_lines: int, model_error: Callable[[str], str | None]
    ) -> None:
        self._split = LineSplitter(max_line)
        self._max_lines = max_lines
        self._model_error = model_error
        self._models: dict[str, str | None] = {}
        self._ids: set[bytes] = set()
        """Digests of the custom_ids seen (16 bytes each, however long the ids)."""
        self.count = 0
        self.url: str | None = None

    def feed(self, chunk: bytes) -> None:
        for number, offset, raw in self._split.feed(chunk):
            self._check(number, offset, raw)

    def finish(self) -> None:
        for number, offset, raw in self._split.finish():
            self._check(number, offset, raw)
        if self.count == 0:
            raise BadRequest(
                "the file holds no requests: write one JSON request per line",
                param="file",
                code="invalid_batch_line",
            )

    def _check(self, number: int, offset: int, raw: bytes) -> None:
        line = parse_line(number, offset, raw)
        if line is None:
            return
        self.count += 1
        if self.count > self._max_lines:
            raise line_error(number, f"a batch holds at most {self._max_lines} requests")
        seen = hashlib.blake2b(line.custom_id.encode(), digest_size=16).digest()
        if seen in self._ids:
            raise line_error(number, f"custom_id {line.custom_id!r} is used on an earlier line")
        self._ids.add(seen)
        url = line.url
        if self.url is None:
            self.url = url
        elif url != self.url:
            raise line_error(
                number,
                f"'url' is {url!r} where earlier lines have {self.url!r}: a batch "
                "goes to one route",
            )
        if line.model not in self._models:
            self._models[line.model] = self._model_error(line.model)
        problem = self._models[line.model]
        if problem is not None:
            raise line_error(number, problem)
