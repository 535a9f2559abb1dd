"""The failures of the hot path's upstream client (:mod:`relaygate.upstream_client`), as
the aiohttp exceptions, and in the wording, aiohttp's client raised for them: the proxy
names a failure by its class (:func:`relaygate.proxy.relay.failure_of`) and tells the
operator its text."""

from __future__ import annotations

import aiohttp
from aiohttp.http_exceptions import ContentLengthError, TransferEncodingError
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL


class BadAnswer(Exception):
    """An answer's head broke a bound (raised inside the parser's callbacks)."""


class ConnectFailed(aiohttp.ClientConnectorError):
    """No connection to ``host``:``port`` (``os_error`` says why), worded as aiohttp's
    :class:`aiohttp.ClientConnectorError` (whose own constructor takes aiohttp's
    internal connection key)."""

    def __init__(self, host: str, port: int, os_error: OSError) -> None:
        aiohttp.ClientOSError.__init__(self, os_error.errno, os_error.strerror)
        self._os_error = os_error
        self._where = (host, port)
        self.args = (self._where, os_error)

    @property
    def host(self) -> str:
        return self._where[0]

    @property
    def port(self) -> int | None:
        return self._where[1]

    @property
    def ssl(self) -> bool:
        return True  # aiohttp's words for its default context, on http too


class ConnectTimeout(aiohttp.ConnectionTimeoutError):
    """No connection within the connect timeout (aiohttp's ``sock_connect``)."""


def disconnected(exc: BaseException | None) -> aiohttp.ServerDisconnectedError:
    """The server closed the connection before the answer's head was whole."""
    error = aiohttp.ServerDisconnectedError()
    error.__cause__ = exc
    return error


def broken_body(
    *, chunked: bool, got: int, length: int | None, exc: BaseException | None = None
) -> aiohttp.ClientPayloadError:
    """The connection closed before the answer's body was whole (``got`` of ``length``
    bytes, ``chunked`` before its last chunk, or with an error ``exc`` while a body
    without either was read until the end)."""
    cause: BaseException | None
    if chunked:
        cause = TransferEncodingError("Not enough data to satisfy transfer length header.")
    elif length is None:
        cause = exc
    else:
        cause = ContentLengthError(
            f"Not enough data to satisfy content length header (received {got} of {length} bytes)."
        )
    return aiohttp.ClientPayloadError(f"Response payload is not completed: {cause!r}")


def request_info(method: str, url: URL) -> aiohttp.RequestInfo:
    """What :class:`aiohttp.ClientResponseError` says of the request."""
    return aiohttp.RequestInfo(url, method, CIMultiDictProxy(CIMultiDict()), url)
