"""Multipart form requests: file uploads routed by their ``model`` form field and sent
upstream without a second copy of the file.

The routes that take them, as the OpenAI API reference describes their bodies:

- ``POST /v1/audio/transcriptions``
  (https://platform.openai.com/docs/api-reference/audio/createTranscription; with
  ``stream=true`` answered as server-sent events, ``transcript.text.delta`` then
  ``transcript.text.done``,
  https://platform.openai.com/docs/api-reference/audio/transcript-text-done-event)
- ``POST /v1/audio/translations``
  (https://platform.openai.com/docs/api-reference/audio/createTranslation)
- ``POST /v1/images/edits`` (https://platform.openai.com/docs/api-reference/images/createEdit)
- ``POST /v1/images/variations``
  (https://platform.openai.com/docs/api-reference/images/createVariation)

The body is read once, like a JSON body. It is parsed where it lies by python-multipart's
``MultipartParser``, whose callbacks give offsets into that buffer; relaygate keeps only
the offsets of the ``model`` part's value (and reads the few bytes of ``stream``). What
goes upstream (:class:`Spliced`) is that same buffer around the new model value, as
memoryview slices written a bounded piece at a time, so neither relaygate nor the
socket's buffer ever holds the file twice.

Parsers disagree at the edges of RFC 7578, and an upstream that read another ``model``
than relaygate routed by would serve a model the caller may not use. So relaygate reads
only forms every parser reads alike, and refuses the rest with 400: the body begins with
the boundary and ends with the closing one, the boundary appears nowhere else (it is the
client's to choose so), every part has one ``Content-Disposition: form-data`` whose
parameters are plain (no escapes, no ``;`` inside quotes, none twice, no ``name*``), and
no part header holds a control character. Checking the boundary's occurrences first also
bounds the parser's work, which is slow only where the boundary appears.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser

from relaygate.errors import BadRequest
from relaygate.proxy.body import check_model_text

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FORM_PATHS = frozenset(
    {
        "/v1/audio/transcriptions",
        "/v1/audio/translations",
        "/v1/images/edits",
        "/v1/images/variations",
    }
)
"""The routes that take ``multipart/form-data`` (paths as the client sends them)."""
MAX_PARTS = 64
"""The most parts a form may have (a transcription or an image edit sends a dozen)."""
MAX_HEADER_BYTES = 4096
"""The longest header line of one part."""
MAX_HEADERS = 8
"""The most headers of one part."""
PIECE = 256 * 1024
"""The most bytes handed to the socket at once: the most it may copy into its buffer."""
_MAX_BOUNDARY = 70  # RFC 2046 §5.1.1
# RFC 2046's bchars; a space only inside.
_BCHARS = frozenset(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ")
_TOKEN = frozenset(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!#$%&'*+-.^_`|~")
_CONTROLS = frozenset(range(32)) - {9} | {127}
_CONTROL_NAMES = ("model", "stream")
_MAX_EPILOGUE = 64


def _quiet_logger() -> logging.Logger:
    # python-multipart logs a warning for every malformed body: a client could fill the
    # log. An unregistered, disabled logger drops them; relaygate answers 400 instead.
    quiet = logging.Logger("relaygate.proxy.multipart.parser")
    quiet.disabled = True
    return quiet


_QUIET = _quiet_logger()


@dataclass(frozen=True, slots=True)
class Form:
    """A multipart request body as read: the ``body`` buffer, the client's
    ``content_type`` (boundary included, sent upstream as it came), the public ``model``
    named in the form and where its value lies (``model_start`` to ``model_end``),
    whether the form asked for a ``stream``, and ``text_bytes``, the size of its fields
    that are not files (what a budget's estimate counts as the prompt)."""

    body: bytes
    content_type: str
    model: str
    model_start: int
    model_end: int
    stream: bool
    text_bytes: int

    def with_model(self, model: str) -> Spliced:
        """The body to send upstream with ``model`` in place of the client's value."""
        view = memoryview(self.body)
        return Spliced(
            (view[: self.model_start], memoryview(model.encode()), view[self.model_end :]),
            self.content_type,
        )


class Spliced:
    """A request body made of ``segments`` (views on buffers, never copies), sent with
    ``content_type``: its ``size`` for the Content-Length, and a fresh :meth:`pieces`
    iterator for each attempt (failover replays the same buffer)."""

    __slots__ = ("content_type", "segments", "size")

    def __init__(self, segments: tuple[memoryview, ...], content_type: str) -> None:
        self.segments = segments
        self.content_type = content_type
        self.size = sum(segment.nbytes for segment in segments)

    async def pieces(self) -> AsyncIterator[memoryview]:
        """The body as slices of at most :data:`PIECE` bytes, each a view on the buffer
        read from the client (aiohttp writes each and waits for the socket to drain)."""
        for segment in self.segments:
            for start in range(0, segment.nbytes, PIECE):
                yield segment[start : start + PIECE]


def form_boundary(content_type: bytes) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type header value.

    Raises :class:`BadRequest` when it has none, or one RFC 2046 does not allow (1 to 70
    of its characters, no space last), or when its parameters are not plain (see
    :func:`_parameters`): parsers that read them differently would split the body on
    different boundaries."""
    _, params = _parameters(content_type, "the Content-Type header")
    boundary = params.get(b"boundary")
    if boundary is None:
        raise BadRequest(
            "multipart/form-data needs a boundary: send the Content-Type header as "
            "'multipart/form-data; boundary=…' (HTTP clients set it for you when they "
            "build the form)"
        )
    if not 0 < len(boundary) <= _MAX_BOUNDARY or boundary.endswith(b" "):
        raise BadRequest(
            f"the multipart boundary must be 1 to {_MAX_BOUNDARY} characters, not ending "
            "with a space (RFC 2046)"
        )
    if not set(boundary) <= _BCHARS:
        raise BadRequest(
            "the multipart boundary has a character RFC 2046 does not allow in one: use "
            "letters, digits and '()+_,-./:=? only"
        )
    return boundary


def read_form(body: bytes, content_type: bytes) -> Form:
    """Read a ``multipart/form-data`` request ``body`` sent with the Content-Type
    ``content_type``: its ``model`` field (where its value lies, and what it names) and
    its ``stream`` field, without copying a part's value. The forms are those of the
    OpenAI API reference pages named in the module docstring (e.g.
    https://platform.openai.com/docs/api-reference/audio/createTranscription).

    Raises :class:`BadRequest` for a body that is not such a form, or not one every parser
    reads alike (see the module docstring); with more than :data:`MAX_PARTS` parts; with
    no ``model`` field (code ``missing_model``), ``model`` twice, empty, not UTF-8, or a
    file rather than a field; ``stream`` twice or other than ``true`` or ``false``; and a
    control field's name in another case (``Model``)."""
    boundary = form_boundary(content_type)
    _check_layout(body, boundary)
    reader = _Reader(body)
    parser = MultipartParser(
        boundary,
        reader.callbacks(),
        max_header_count=MAX_HEADERS,
        max_header_size=MAX_HEADER_BYTES,
    )
    parser.logger = _QUIET
    try:
        parser.write(body)
    except MultipartParseError as exc:
        raise _malformed(str(exc)) from None
    if not reader.ended:
        raise _malformed("it has no closing boundary")
    if reader.model is None:
        raise BadRequest("the form has no 'model' field", param="model", code="missing_model")
    start, end = reader.model
    try:
        model = str(memoryview(body)[start:end], "utf-8")  # decoded where it lies
    except UnicodeDecodeError:
        raise BadRequest("the form's 'model' is not UTF-8 text", param="model") from None
    if not model:
        raise BadRequest("the form's 'model' must be a non-empty string", param="model")
    check_model_text(model)
    stream = False
    if reader.stream is not None:
        at, until = reader.stream
        value = body[at:until].lower() if until - at <= 5 else b""
        if value not in (b"true", b"false"):
            raise BadRequest("the form's 'stream' must be true or false", param="stream")
        stream = value == b"true"
    return Form(
        body,
        content_type.decode("latin-1"),
        model,
        start,
        end,
        stream,
        reader.text_bytes,
    )


def _check_layout(body: bytes, boundary: bytes) -> None:
    """Refuse a body that does not begin with the boundary, holds it elsewhere than
    between parts, or has more than a line end after its closing boundary; and one with
    more than :data:`MAX_PARTS` parts. Every occurrence of the boundary is a part's end,
    so the parser that follows does a bounded amount of work per byte."""
    dash = b"--" + boundary
    if not body.startswith(dash + b"\r\n"):
        raise _malformed("it must begin with '--' and the boundary, then CRLF")
    delimiter = b"\r\n" + dash
    count = body.count(delimiter)
    if count > MAX_PARTS:
        raise BadRequest(
            f"the form has more than {MAX_PARTS} parts (its boundary appears more than "
            f"{MAX_PARTS} times); send at most {MAX_PARTS}"
        )
    last = body.rfind(delimiter)
    if last < 0:
        raise _malformed("it has no closing boundary")
    after = last + len(delimiter)
    if body[after : after + 2] != b"--" or len(body) - after - 2 > _MAX_EPILOGUE:
        raise _malformed("it must end with the closing boundary ('--' and the boundary, '--')")
    if body[after + 2 :].strip(b"\r\n \t"):
        raise _malformed("it has bytes after the closing boundary")
    at = body.find(delimiter)
    while at != last:
        if body.startswith(b"--", at + len(delimiter)):
            raise _malformed("it has bytes after the closing boundary")
        if not body.startswith(b"\r\n", at + len(delimiter)):
            raise _malformed(
                "the boundary appears inside a part, or is followed by other than CRLF; "
                "choose a boundary the content does not hold"
            )
        at = body.find(delimiter, at + len(delimiter))


class _Reader:
    """The state of one parse: python-multipart's callbacks land here, with offsets into
    ``body`` (written whole in one call, so every offset is into ``body`` itself)."""

    __slots__ = (
        "_body",
        "_data",
        "_disposition",
        "_field",
        "_fields",
        "_headers",
        "_is_file",
        "_name",
        "_value",
        "ended",
        "model",
        "stream",
        "text_bytes",
    )

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._field = b""
        self._value = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._name: str | None = None
        self._is_file = False
        self._data: tuple[int, int] | None = None
        self._disposition = 0
        self._fields = 0
        self.ended = False
        self.model: tuple[int, int] | None = None
        """Where the ``model`` field's value lies in the body."""
        self.stream: tuple[int, int] | None = None
        """Where the ``stream`` field's value lies in the body."""
        self.text_bytes = 0

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._headers = []
        self._field = self._value = b""
        self._name, self._is_file, self._data = None, False, None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        name, value = self._field.lower(), self._value
        self._field = self._value = b""
        if _CONTROLS.intersection(value):
            raise _malformed("a part's header holds a control character")
        self._headers.append((name, value))

    def _headers_finished(self) -> None:
        dispositions = [value for name, value in self._headers if name == b"content-disposition"]
        if len(dispositions) != 1:
            raise _malformed("each part needs exactly one Content-Disposition header")
        kind, params = _parameters(dispositions[0], "a part's Content-Disposition")
        name = params.get(b"name")
        if kind != b"form-data" or name is None:
            raise _malformed("each part's Content-Disposition must be form-data with a name")
        decoded = name.decode("latin-1")
        folded = decoded.lower()
        if folded in _CONTROL_NAMES and decoded != folded:
            raise BadRequest(
                f"the form has the field {decoded!r}: write it {folded!r}, once", param=folded
            )
        self._name = decoded
        self._is_file = b"filename" in params or b"filename*" in params
        if decoded in _CONTROL_NAMES:
            if self._is_file:
                raise BadRequest(
                    f"the form's {decoded!r} is a file; send it as a plain field", param=decoded
                )
            if any(header == b"content-transfer-encoding" for header, _ in self._headers):
                raise BadRequest(
                    f"the form's {decoded!r} has a Content-Transfer-Encoding; send it as "
                    "plain text",
                    param=decoded,
                )
            if (self.model if decoded == "model" else self.stream) is not None:
                raise BadRequest(
                    f"the form has the field {decoded!r} more than once; send it once",
                    param=decoded,
                )

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if data is not self._body or (self._data is not None and self._data[1] != start):
            raise _malformed("a part's value could not be located")  # never with one write
        self._data = (start if self._data is None else self._data[0], end)

    def _part_end(self) -> None:
        name = self._name
        # An empty value has no data: it lies at the end of its part's headers.
        where = self._data or (0, 0)
        if name == "model":
            self.model = where
        elif name == "stream":
            self.stream = where
        if not self._is_file:
            self.text_bytes += where[1] - where[0]

    def _end(self) -> None:
        self.ended = True


def _parameters(value: bytes, what: str) -> tuple[bytes, dict[bytes, bytes]]:
    """A header value's type (lower case) and its parameters (names in lower case,
    values unquoted), read strictly: each parameter is a token, ``=``, and a token or a
    quoted string without ``"``, ``\\``, ``;`` inside; none twice, none with RFC 2231's
    ``*`` (``name*=``), RFC 7578 §4.2 forbids them. Raises :class:`BadRequest` naming
    ``what`` otherwise."""
    kind, *rest = value.split(b";")
    params: dict[bytes, bytes] = {}
    for param in rest:
        key, eq, raw = param.strip().partition(b"=")
        key = key.strip().lower()
        raw = raw.strip()
        if not eq or not key or not set(key) <= _TOKEN:
            raise _unplain(what)
        if key.endswith(b"*") and key != b"filename*":
            raise _unplain(what)
        if len(raw) >= 2 and raw.startswith(b'"') and raw.endswith(b'"'):
            raw = raw[1:-1]
            if b'"' in raw or b"\\" in raw:
                raise _unplain(what)
        elif not raw or not set(raw) <= _TOKEN:
            raise _unplain(what)
        if key in params:
            raise _unplain(what)
        params[key] = raw
    return kind.strip().lower(), params


def _unplain(what: str) -> BadRequest:
    return BadRequest(
        f"{what} has a parameter that is not plain: write each as name=value or "
        "name=\"value\", once, without escapes, ';' inside quotes or RFC 2231's name*=",
    )


def _malformed(why: str) -> BadRequest:
    return BadRequest(f"the request body is not valid multipart/form-data: {why}")
