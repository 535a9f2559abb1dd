"""An upload (``POST /v1/files``) read from its ``multipart/form-data`` body as it
arrives: the ``file`` part goes straight to its :class:`~relaygate.files.storage.Writer`
and through a line check, the other parts (``purpose``, ``expires_after[...]``) are
kept as short text fields. Nothing holds more of the file than a chunk (and the line
check its longest line).

The form follows https://platform.openai.com/docs/api-reference/files/create ; the
multipart body is parsed by the ``python-multipart`` library.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from relaygate.errors import (
    BadRequest,
    ConcurrencyLimited,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from relaygate.files.storage import Writer

MAX_PARTS = 16
MAX_UPLOADS_PER_USER = 2
"""Uploads one user may have arriving at once in one process (more get 429)."""
MAX_FIELD_BYTES = 1024
MAX_FILENAME = 255


class UploadSlots:
    """The uploads arriving now in this process, per user: :meth:`take` refuses one past
    :data:`MAX_UPLOADS_PER_USER` (each may be ``max_file_bytes``, checked against the
    quota only once whole)."""

    def __init__(self) -> None:
        self._by_user: dict[int, int] = {}

    def take(self, user_id: int) -> None:
        """Count one more upload of ``user_id``; raises :class:`ConcurrencyLimited`."""
        held = self._by_user.get(user_id, 0)
        if held >= MAX_UPLOADS_PER_USER:
            raise ConcurrencyLimited(
                f"you have {MAX_UPLOADS_PER_USER} uploads arriving already; retry when one is done"
            )
        self._by_user[user_id] = held + 1

    def release(self, user_id: int) -> None:
        held = self._by_user.get(user_id, 0) - 1
        if held > 0:
            self._by_user[user_id] = held
        else:
            self._by_user.pop(user_id, None)


@dataclass
class Upload:
    """What an upload's form held: its text ``fields`` and the file's ``filename`` and
    ``size`` in bytes (None before a ``file`` part is seen)."""

    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    size: int = 0


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    header_field: bytes = b""
    header_value: bytes = b""
    value: list[bytes] = field(default_factory=list)
    value_bytes: int = 0


def boundary_of(content_type: str) -> bytes:
    """The boundary of a ``multipart/form-data`` content type. Raises
    :class:`UnsupportedMediaType` for another type, :class:`BadRequest` without one."""
    media, options = parse_options_header(content_type)
    if media != b"multipart/form-data":
        raise UnsupportedMediaType(
            "upload a file as multipart/form-data with the fields 'purpose' and 'file'"
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequest("the multipart/form-data content type has no boundary")
    return boundary


async def read_upload(
    chunks: AsyncIterator[bytes],
    content_type: str,
    writer: Writer,
    on_file: Callable[[bytes], None],
    max_file: int,
    *,
    before_file: Callable[[dict[str, str]], None] | None = None,
) -> Upload:
    """Read the multipart body ``chunks`` (of ``content_type``): the ``file`` part is
    written to ``writer`` and passed to ``on_file`` chunk by chunk (which may raise to
    refuse it), the rest kept in :attr:`Upload.fields`; ``before_file`` is called with
    the fields before the file part (where they come first, as the SDKs send them).
    Returns the :class:`Upload`.
    Raises :class:`BadRequest` for a malformed body, more than :data:`MAX_PARTS` parts, a
    field over :data:`MAX_FIELD_BYTES`, a second or missing ``file``, and
    :class:`PayloadTooLarge` for a file over ``max_file`` bytes. The caller aborts
    ``writer`` on any error."""
    upload = Upload()
    parts: list[_Part] = []
    pending: list[bytes] = []
    """Chunks of the file part the parser found in the latest write, to store."""
    current = _Part()
    in_file = False

    def on_part_begin() -> None:
        nonlocal current
        if len(parts) >= MAX_PARTS:
            raise BadRequest(f"the form has more than {MAX_PARTS} parts")
        current = _Part()
        parts.append(current)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        current.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        current.header_value += data[start:end]

    def on_header_end() -> None:
        current.headers.append((current.header_field.lower(), current.header_value))
        current.header_field = current.header_value = b""

    def on_headers_finished() -> None:
        nonlocal in_file
        for name, value in current.headers:
            if name == b"content-disposition":
                _, options = parse_options_header(value)
                current.name = options.get(b"name", b"").decode("utf-8", "replace")
                if b"filename" in options:
                    current.filename = options[b"filename"].decode("utf-8", "replace")
        if current.name == "file":
            if upload.filename is not None:
                raise BadRequest("the form has more than one 'file'", param="file")
            upload.filename = (current.filename or "upload.jsonl")[-MAX_FILENAME:]
            in_file = True
            if before_file is not None and upload.fields:
                before_file(upload.fields)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if in_file:
            upload.size += end - start
            if upload.size > max_file:
                raise PayloadTooLarge(f"the file is larger than the limit of {max_file} bytes")
            pending.append(data[start:end])
            return
        current.value_bytes += end - start
        if current.value_bytes > MAX_FIELD_BYTES:
            raise BadRequest(
                f"the form field {current.name!r} is longer than {MAX_FIELD_BYTES} bytes",
                param=current.name or None,
            )
        current.value.append(data[start:end])

    def on_part_end() -> None:
        nonlocal in_file
        if in_file:
            in_file = False
        elif current.name:
            upload.fields[current.name] = b"".join(current.value).decode("utf-8", "replace")

    parser = MultipartParser(
        boundary_of(content_type),
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    async for chunk in chunks:
        try:
            parser.write(chunk)
        except (BadRequest, PayloadTooLarge):
            raise
        except Exception as exc:  # the library's MultipartParseError and kin
            raise BadRequest(f"the multipart body is malformed ({exc})") from None
        for piece in pending:
            on_file(piece)
            await writer.write(piece)
        pending.clear()
    if parser.state not in (MultipartState.END, MultipartState.BOUNDARY_PADDING):
        raise BadRequest("the multipart body ends before its closing boundary")
    if upload.filename is None:
        raise BadRequest("the form has no 'file' part: send the file as 'file'", param="file")
    return upload
