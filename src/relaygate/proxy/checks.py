"""Checks of a request's method, path and headers, made before its body is read.

They run on every request, so each is one pass over the headers at most and no
regular expressions.

Routes: relaygate forwards only the routes some endpoint is sent (each provider
type's inference routes, plus endpoints' extra routes; :mod:`relaygate.routes`).
Any other path is answered 404 ``unsupported_route`` naming it, and another method
on a forwarded path 405 with the methods it takes in ``allow``; ``/v1/models`` and
``/v1/models/{model}`` take ``GET`` and ``HEAD`` only. relaygate picks an endpoint by
the ``model`` of a JSON request body (a form field on the routes that take
``multipart/form-data``, :mod:`relaygate.proxy.multipart`), so a ``GET``, ``HEAD`` or
``DELETE`` without one is answered 405 too, with a message saying why.
"""

from __future__ import annotations

from collections.abc import Iterable

from relaygate.errors import (
    BadRequest,
    HeadersTooLarge,
    LoopDetected,
    MethodNotAllowed,
    UnsupportedMediaType,
    UnsupportedRoute,
)
from relaygate.proxy.multipart import FORM_PATHS, form_boundary
from relaygate.routes import RoutePolicy

VIA_HEADER = b"x-relaygate-via"
"""Lists the relaygate installations a request passed through (their ``via`` marks)."""
_MODELS = "/v1/models"
_MODELS_PREFIX = "/v1/models/"
_MODELS_ALLOW = "GET, HEAD"
_NEVER_ROUTED = frozenset({"OPTIONS", "TRACE", "CONNECT"})
_ROUTED_WITH_BODY = frozenset({"GET", "HEAD", "DELETE"})
_DOT_SEGMENTS = frozenset({".", ".."})
_JSON = b"application/json"
_PLAIN = b"text/plain"
_JSON_SUFFIX = b"+json"
_MULTIPART = b"multipart/form-data"
_FORM = b"application/x-www-form-urlencoded"
_FORM_ROUTES = ", ".join(f"POST {path}" for path in sorted(FORM_PATHS))


def check_header_size(headers: Iterable[tuple[bytes, bytes]], limit: int) -> None:
    """Refuse a request whose headers, counted as ``name: value\\r\\n`` lines, exceed
    ``limit`` bytes; raises :class:`HeadersTooLarge` (431)."""
    size = sum(len(name) + len(value) + 4 for name, value in headers)
    if size > limit:
        raise HeadersTooLarge(
            f"request headers take {size} bytes, more than the limit of {limit} bytes"
        )


def check_request(
    method: str,
    path: str,
    headers: Iterable[tuple[bytes, bytes]],
    routes: RoutePolicy,
    via: bytes,
) -> tuple[int | None, bytes | None]:
    """Check a ``/v1/...`` request before it is authenticated or its body read.

    Takes the ASGI method, the decoded path, the raw headers (lower-case names), the
    ``routes`` some endpoint is sent (paths below its URL) and this installation's
    ``via`` mark; returns the declared ``content-length`` (None when absent) and, for a
    ``multipart/form-data`` request to a route that takes one
    (:data:`~relaygate.proxy.multipart.FORM_PATHS`), its Content-Type (else None).
    Raises :class:`LoopDetected` (508: ``via`` already in its :data:`VIA_HEADER`),
    :class:`UnsupportedRoute` (404: no endpoint is sent the route),
    :class:`MethodNotAllowed` (405, see the module docstring), :class:`BadRequest` for
    a ``.`` or ``..`` path segment (it would climb out of the endpoint's URL), and for a
    multipart request with two Content-Types or no usable boundary, and
    :class:`UnsupportedMediaType` (415) for a content type other than none, JSON,
    ``text/plain`` and (where taken) ``multipart/form-data``."""
    if path == _MODELS or path.startswith(_MODELS_PREFIX):
        _check_models_request(method, path, headers, via)
        return None, None
    if "." in path or "%" in path:
        _check_segments(path)
    _check_route(method, path, routes)
    length: int | None = None
    form: bytes | None = None
    types = 0
    chunked = False
    for name, value in headers:
        if name == b"content-type":
            types += 1
            if _check_content_type(value, path):
                form = value
        elif name == b"content-length":
            # The server has already refused a content-length that is not a number.
            length = int(value) if value.isdigit() else None
        elif name == b"transfer-encoding":
            chunked = True
        elif name == VIA_HEADER:
            _check_loop(value, via)
        elif name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            raise UnsupportedMediaType(
                f"Content-Encoding {value.decode('latin-1')!r} is not supported: send the "
                "body uncompressed"
            )
    if method in _NEVER_ROUTED or (method in _ROUTED_WITH_BODY and not length and not chunked):
        raise MethodNotAllowed(
            f"{method} {path} cannot be routed: relaygate picks the endpoint by the 'model' "
            "of a JSON request body, so send POST with a JSON body",
            allow="POST",
        )
    if form is not None and types > 1:
        # The boundary relaygate splits the body on must be the one the endpoint gets.
        raise BadRequest("a multipart request must have one Content-Type header")
    return length, form


def _check_models_request(
    method: str, path: str, headers: Iterable[tuple[bytes, bytes]], via: bytes
) -> None:
    """The model list routes, answered by relaygate itself: GET (or HEAD) only, and not
    a request that already passed through this relaygate."""
    if method not in ("GET", "HEAD"):
        raise MethodNotAllowed(
            f"{method} is not allowed on {path}: the model list takes GET",
            allow=_MODELS_ALLOW,
        )
    for name, value in headers:
        if name == VIA_HEADER:
            _check_loop(value, via)


def _check_route(method: str, path: str, routes: RoutePolicy) -> None:
    below = path[3:]
    if routes.allows(method, below):
        return
    methods = routes.methods_for(below)
    if methods:
        raise MethodNotAllowed(
            f"{method} is not allowed on {path}; it takes {', '.join(methods)}",
            allow=", ".join(methods),
        )
    raise UnsupportedRoute(
        f"relaygate does not forward {method} {path}: it forwards the inference routes "
        "of each endpoint's provider (chat completions, completions, embeddings, "
        "responses, messages, audio, images, moderations, rerank…), never the provider "
        "account's own resources such as files, batches or fine-tuning"
    )


def _check_loop(value: bytes, via: bytes) -> None:
    if via in (mark.strip().lower() for mark in value.split(b",")):
        raise LoopDetected(
            "this request has already passed through this relaygate: an endpoint's URL "
            "points back at relaygate itself; an admin must change that endpoint's URL"
        )


def _check_segments(path: str) -> None:
    for segment in path.split("/"):
        # The forwarding URL is parsed again, and %2e there would become a dot too.
        if segment.lower().replace("%2e", ".") in _DOT_SEGMENTS:
            raise BadRequest(
                f"the path {path!r} has a '.' or '..' segment; relaygate forwards paths "
                "as they are below the endpoint's URL, never outside it",
                code="invalid_path",
            )


def _check_content_type(value: bytes, path: str) -> bool:
    """Whether ``value`` is multipart/form-data on a route that takes it; raises
    :class:`UnsupportedMediaType` for a type relaygate does not read."""
    media = value.partition(b";")[0].strip().lower()
    if not media or media in (_JSON, _PLAIN):
        return False
    if media.endswith(_JSON_SUFFIX) and b"/" in media:
        return False
    if media == _MULTIPART:
        if path in FORM_PATHS:
            form_boundary(value)  # raises BadRequest for none, or one not every parser reads
            return True
        raise UnsupportedMediaType(
            f"multipart/form-data is not supported on {path}: relaygate reads a form's "
            f"'model' only on the routes that take file uploads ({_FORM_ROUTES}); send "
            "this route a JSON body with 'Content-Type: application/json'"
        )
    hint = ""
    if media == _FORM:
        hint = " (curl -d sends this type unless given -H 'Content-Type: application/json')"
    shown = media.decode("latin-1")
    raise UnsupportedMediaType(
        f"Content-Type {shown!r} is not supported{hint}: send a JSON body with "
        "'Content-Type: application/json'"
    )
