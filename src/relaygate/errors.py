"""relaygate's error hierarchy, and its one mapping to OpenAI-shaped responses.

::

    RelaygateError                      (status, OpenAI error type, code)
    ├── ConfigError                     one-line startup message, no HTTP status
    ├── BadRequest                      400 invalid_request_error
    ├── AuthenticationFailed            401 invalid_api_key
    ├── PermissionDenied                403 permission_denied
    ├── NotFound                        404 not_found
    │   ├── ModelNotFound               404 model_not_found
    │   └── UnsupportedRoute            404 unsupported_route
    ├── MethodNotAllowed                405 method_not_allowed (with an ``allow`` header)
    ├── RequestTimeout                  408 request_timeout
    ├── Conflict                        409 conflict
    ├── PayloadTooLarge                 413 request_too_large
    ├── UnsupportedMediaType            415 unsupported_media_type
    ├── RateLimited                     429 rate_limit_exceeded (type ``requests`` or
    │                                       ``tokens``, with Retry-After and x-ratelimit-*)
    ├── ConcurrencyLimited              429 concurrency_limit_exceeded (with Retry-After)
    ├── BudgetExceeded                  429 budget_exceeded (type ``insufficient_quota``,
    │                                       with Retry-After for a periodic budget)
    ├── HeadersTooLarge                 431 request_header_fields_too_large
    ├── UpstreamFailed                  502 upstream_error
    ├── ModelUnavailable                503 model_offline
    ├── Overloaded                      503 server_overloaded (with Retry-After; also
    │                                       ``budget_store_unavailable``)
    ├── ClientDisconnected              499 (never sent: the client is gone)
    ├── UpstreamTimeout                 504 upstream_timeout
    └── LoopDetected                    508 loop_detected

Raised inside relaygate and turned into something else where they are caught (never
answered as they are)::

    Exception
    ├── ListingFailed            an endpoint's model list failed: its sync's error
    ├── CredentialsUnavailable   an endpoint's key cannot be had: a sync error, and the
    │                                snapshot leaves the endpoint out
    ├── DecryptionFailed         a stored value was not encrypted with this secret key
    ├── TranslationError         a body one API cannot be turned into another's: 400
    ├── EventTooLarge            a streamed event past ``max_event_bytes``: the stream
    │                                ends with an error event
    ├── TryNextTarget            a target failed before answering: fail over, else
    │                                answer its ``error``
    ├── NotServed                an endpoint does not serve a route (404/405 to a probe):
    │                                translate the request instead
    └── ClaimLost                a replica's claim on a batch ran out mid-step: stop

Responses follow OpenAI's error object,
``{"error": {"message", "type", "param", "code"}}``
(https://platform.openai.com/docs/guides/error-codes).
"""

from __future__ import annotations

import math

import orjson


class RelaygateError(Exception):
    """Base of every error relaygate raises on purpose."""

    status = 500
    type = "server_error"
    code: str | None = "internal_error"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    """Response headers the error calls for besides the content type (e.g. ``allow``)."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class ConfigError(RelaygateError):
    """The configuration or the environment is unusable; the message says what to fix."""


class BadRequest(RelaygateError):
    status, type, code = 400, "invalid_request_error", "invalid_request"


class AuthenticationFailed(RelaygateError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class PermissionDenied(RelaygateError):
    status, type, code = 403, "permission_error", "permission_denied"


class NotFound(RelaygateError):
    status, type, code = 404, "invalid_request_error", "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class UnsupportedRoute(NotFound):
    """A route relaygate never forwards (not an inference route of any endpoint)."""

    code = "unsupported_route"


class MethodNotAllowed(RelaygateError):
    """The route exists but not for this method; ``allow`` lists the methods it takes."""

    status, type, code = 405, "invalid_request_error", "method_not_allowed"

    def __init__(self, message: str, *, allow: str):
        super().__init__(message)
        self.headers = ((b"allow", allow.encode("latin-1")),)


class RequestTimeout(RelaygateError):
    """The request (its head or its body) did not arrive in time."""

    status, type, code = 408, "invalid_request_error", "request_timeout"


class Conflict(RelaygateError):
    status, type, code = 409, "invalid_request_error", "conflict"


class PayloadTooLarge(RelaygateError):
    """A body over its limit. ``body_ended`` says whether the part that passed the limit
    was its last (nothing is left to read and drop before answering)."""

    status, type, code = 413, "invalid_request_error", "request_too_large"
    body_ended = False


class UnsupportedMediaType(RelaygateError):
    status, type, code = 415, "invalid_request_error", "unsupported_media_type"


class RateLimited(RelaygateError):
    """Over a rate limit. Like OpenAI's 429 body, ``type`` names the limit reached:
    ``requests`` or ``tokens`` (https://platform.openai.com/docs/guides/rate-limits);
    ``headers`` are ``Retry-After`` and the ``x-ratelimit-*`` headers."""

    status, type, code = 429, "requests", "rate_limit_exceeded"

    def __init__(self, message: str, *, limit: str, headers: tuple[tuple[bytes, bytes], ...]):
        super().__init__(message)
        self.type = limit
        self.headers = headers


class ConcurrencyLimited(RelaygateError):
    """The caller's key or user has its most requests in flight already."""

    status, type, code = 429, "requests", "concurrency_limit_exceeded"
    headers = ((b"retry-after", b"1"),)


class BudgetExceeded(RelaygateError):
    """A budget that applies to the request has not enough left for it (see
    :mod:`relaygate.budgets`); OpenAI answers a spent quota with the type
    ``insufficient_quota`` (https://platform.openai.com/docs/guides/error-codes)."""

    status, type, code = 429, "insufficient_quota", "budget_exceeded"

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        if retry_after is not None:
            self.headers = ((b"retry-after", str(max(1, math.ceil(retry_after))).encode()),)


class HeadersTooLarge(RelaygateError):
    status, type, code = 431, "invalid_request_error", "request_header_fields_too_large"


class UpstreamFailed(RelaygateError):
    status, type, code = 502, "upstream_error", "upstream_error"


class ModelUnavailable(RelaygateError):
    status, type, code = 503, "service_unavailable", "model_offline"


class Overloaded(RelaygateError):
    """Refused for now; ``retry_after`` is the seconds to wait (sent as ``Retry-After``)."""

    status, type, code = 503, "service_unavailable", "server_overloaded"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float = 1.0,
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message, param=param, code=code)
        self.retry_after = retry_after
        self.headers = ((b"retry-after", str(max(1, math.ceil(retry_after))).encode()),)


class ClientDisconnected(RelaygateError):
    """The client went away before its request was whole: nothing is answered or
    forwarded (499 is what usage records and metrics say)."""

    status, type, code = 499, "invalid_request_error", "client_disconnected"


class UpstreamTimeout(RelaygateError):
    status, type, code = 504, "timeout_error", "upstream_timeout"


class LoopDetected(RelaygateError):
    """The request came back to the relaygate it passed through (RFC 5842 §7.2)."""

    status, type, code = 508, "invalid_request_error", "loop_detected"


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    """Serialise one OpenAI-shaped error object to JSON bytes."""
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    )


def render(exc: RelaygateError) -> tuple[int, bytes]:
    """Map an error to its HTTP status and OpenAI-shaped JSON body."""
    return exc.status, error_body(exc.message, exc.type, exc.code, exc.param)


class ListingFailed(Exception):
    """Listing an endpoint's models failed; ``str()`` is the operator-facing reason."""


class CredentialsUnavailable(Exception):
    """The endpoint's key cannot be had; ``str()`` says why, never the key."""


class DecryptionFailed(Exception):
    """A stored value was not encrypted with this vault's secret key."""


class TranslationError(Exception):
    """A client's body that cannot be translated; ``param`` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class EventTooLarge(Exception):
    """An event, or a line of one, grew past the reader's ``max_event`` bytes."""


class TryNextTarget(Exception):
    """Raised by :meth:`Upstream.attempt` when a target failed before answering and the
    next one should be tried; ``error`` is what to answer if none is left."""

    def __init__(self, error: RelaygateError):
        super().__init__(error.message)
        self.error = error


class NotServed(Exception):
    """Raised by :meth:`Upstream.attempt` on a probe (``auto`` mode) that the endpoint
    answered 404 or 405: the route is not served there, so translate it."""


class ClaimLost(Exception):
    """This replica's claim on a batch ran out, or the batch was cancelled, mid-step."""
