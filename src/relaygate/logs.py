"""Logging: plain text or JSON lines on stderr, each record with its request id.

The proxy sets :data:`REQUEST_ID` for the duration of a request (a context variable,
so concurrent requests each see their own); every log line written meanwhile carries
it as ``request_id``. JSON lines come from ``python-json-logger``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from contextvars import ContextVar
from random import getrandbits

from pythonjsonlogger.json import JsonFormatter

REQUEST_ID: ContextVar[str] = ContextVar("relaygate_request_id", default="-")
"""The id of the request being handled in this context ("-" outside requests)."""

_ALLOWED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:"
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The client's ``x-request-id`` when it is 1 to 64 characters of letters, digits and
    ``-_.:``; else a new random UUID (version 4, 36 characters: some servers, such as
    llama-cpp-python's, refuse a request id that is not a UUID)."""
    for name, value in headers:
        if name == b"x-request-id":
            if 0 < len(value) <= 64 and not value.translate(None, _ALLOWED):
                return value.decode("ascii")
            break
    return new_request_id()


def upstream_request_id(request_id: str) -> str:
    """The id a request goes upstream by: ``request_id`` when it is a UUID, else a new
    random UUID. Some servers (llama.cpp's and llama-cpp-python's) refuse a request
    whose ``x-request-id`` is not a UUID, so a client's own id of another form stays
    relaygate's (its answer's header, its usage record, its log lines) and never goes
    upstream."""
    if len(request_id) == 36 and _UUID.fullmatch(request_id):
        return request_id
    return new_request_id()


_VERSION_4 = (0x4 << 76) | (0x2 << 62)
_VERSION_4_MASK = ~((0xF << 76) | (0x3 << 62))


def new_request_id() -> str:
    """A random UUID (version 4, RFC 9562 §5.4) as 36 characters. It names a request,
    it guards nothing: the ``random`` module's generator stands in for ``os.urandom``,
    at a third of ``uuid.uuid4()``'s cost on the request path. Its values can be
    predicted from earlier ones, so a request id must never be used as a secret."""
    h = f"{(getrandbits(128) & _VERSION_4_MASK) | _VERSION_4:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def configure_logging(level: str, log_format: str = "text") -> None:
    """Log to stderr at ``level`` (debug, info, warning, error) as ``text`` lines or
    ``json`` objects (fields time, level, name, message, request_id); libraries quieter."""
    numeric = logging.getLevelName(level.upper())
    handler = logging.StreamHandler()
    handler.addFilter(_RequestIdFilter())
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                rename_fields={"asctime": "time", "levelname": "level"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for noisy in ("aiosqlite", "alembic", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, numeric))
