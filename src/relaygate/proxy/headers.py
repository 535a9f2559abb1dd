"""Which headers pass between a client and an endpoint, both ways, and the ones
relaygate sets itself: allow-lists, never deny-lists (a trust boundary: the README,
"Security model")."""

from __future__ import annotations

from urllib.parse import quote

from relaygate.proxy.accounting import Exchange
from relaygate.proxy.asgi import Scope
from relaygate.ratelimit import add_rate_limit_headers
from relaygate.targets import Target, TargetSurface
from relaygate.upstream_client import Answer

# Hop-by-hop headers (RFC 9110 §7.6.1) and the ones relaygate sets itself.
# Request headers that reach the endpoint, by allow-list: what clients send to shape an
# answer, never what would choose another organisation, project or identity of the
# operator's key (OpenAI-Organization, OpenAI-Project, X-Forwarded-*, method overrides).
# The body's type is JSON (relaygate parsed it as such) or the client's multipart type
# with the boundary relaygate split it on, the auth header the endpoint's, x-request-id
# and x-relaygate-via relaygate's own.
_PASS_REQUEST = frozenset(
    {
        b"accept",
        b"user-agent",
        b"anthropic-version",
        b"idempotency-key",
        b"traceparent",
        b"tracestate",
    }
)
_PASS_REQUEST_PREFIXES = (b"x-stainless-",)  # the SDKs' own (language, retry count)
_ANTHROPIC_BETA = b"anthropic-beta"
# Anthropic betas that reach the account's resources (its files, code-execution
# containers, skills) rather than shape one answer: removed from anthropic-beta.
_RESOURCE_BETAS = ("files-api", "code-execution", "skills", "message-batches")
# Query parameters forwarded: Azure's api-version, the Anthropic SDK's beta=true.
_PASS_QUERY = frozenset({"api-version", "beta"})
# Response headers a client may see (by allow-list: an upstream must not set a
# client's HSTS, CORS, cookies or redirects through relaygate): the content headers,
# retry and rate-limit headers, and the providers' request ids and timings that the
# OpenAI and Anthropic SDKs and their users read. x-request-id and x-relaygate-* are
# relaygate's own, set once.
_PASS_RESPONSE = frozenset(
    {
        b"content-type",
        b"content-length",
        b"content-encoding",
        b"content-language",
        b"content-disposition",
        b"cache-control",
        b"retry-after",
        b"retry-after-ms",
        b"x-should-retry",
        b"request-id",  # Anthropic's request id
        b"openai-processing-ms",
        b"openai-version",
        b"anthropic-version",
    }
)
_PASS_RESPONSE_PREFIXES = (b"x-ratelimit-", b"anthropic-ratelimit-", b"ratelimit")
_NOSNIFF = (b"x-content-type-options", b"nosniff")
# The upstream's headers that describe its own body, not a translation of it.
TRANSLATED_AWAY = frozenset({b"content-type", b"content-length", b"content-encoding"})
ENDPOINT_HEADER = b"x-relaygate-endpoint"
REQUEST_ID_HEADER = b"x-request-id"
MODEL_HEADER = b"x-relaygate-model"
"""Sent when a fallback model answered: the public name of the model that did."""
JSON_TYPE = "application/json"


def upstream_headers(
    headers: list[tuple[bytes, bytes]],
    surface: TargetSurface,
    request_id: str,
    via: str,
    content_type: str = JSON_TYPE,
) -> list[tuple[str, str]]:
    """The headers a request sends the endpoint: ``content_type`` (JSON's unless the
    body is a form), the request's upstream id (``request_id``, a UUID), the client's
    headers of the allow-list (``anthropic-beta`` less the betas that reach account
    resources), the ``x-relaygate-via`` chain ending with ``via``, and the endpoint
    surface's auth and default headers; never a client's header named like the surface's own."""
    out = [("content-type", content_type), ("x-request-id", request_id)]
    sent: set[bytes] = set()
    for name, value in headers:
        # A client's header named like the endpoint's auth header stays behind.
        if name in surface.header_names:
            continue
        if name in _PASS_REQUEST or name.startswith(_PASS_REQUEST_PREFIXES):
            out.append((name.decode("latin-1"), value.decode("latin-1")))
            sent.add(name)
        elif name == _ANTHROPIC_BETA:
            betas = _betas(value)
            if betas:
                out.append(("anthropic-beta", betas))
                sent.add(name)
    if via:
        # The marks of the relaygates the request passed, this one's last.
        out.append(("x-relaygate-via", _via_chain(headers, via)))
    # The surface's own headers were decoded once, when the snapshot was built.
    for name, text_name, text_value in surface.defaults_text:
        if name not in sent:
            out.append((text_name, text_value))
    out.extend(surface.headers_text)
    return out


def client_headers(
    scope: Scope,
    response: Answer,
    target: Target,
    state: Exchange,
    headers_at: float,
) -> list[tuple[bytes, bytes]]:
    """The headers the client's response starts with: the upstream's allowed ones
    and relaygate's own (endpoint, request id, timing, fallback model, rate limits)."""
    out_headers = response_headers(response.raw_headers)
    # What an upstream says is never a page of relaygate's origin.
    out_headers.append(_NOSNIFF)
    out_headers.append((ENDPOINT_HEADER, target.endpoint_name.encode()))
    out_headers.append((REQUEST_ID_HEADER, state.request_id.encode()))
    out_headers.append(
        (
            b"server-timing",
            (
                f"relaygate;dur={(state.sent_at - state.arrived) * 1000:.2f}, "
                f"upstream;dur={(headers_at - state.sent_at) * 1000:.2f}"
            ).encode(),
        )
    )
    if state.served_model is not None:
        out_headers.append((MODEL_HEADER, state.served_model.encode()))
    add_rate_limit_headers(scope, out_headers)
    return out_headers


def wire_path(scope: Scope) -> str:
    """The request's path below ``/v1``, byte for byte as the client sent it (a ``%3F``
    stays an escaped ``?``, never becomes a query upstream), and the query parameters
    of :data:`_PASS_QUERY`, as sent."""
    raw: bytes = scope.get("raw_path") or b""
    if raw.startswith(b"/v1/"):
        wire = raw[3:].decode("latin-1")
    else:  # no raw path, or an escaped /v1 prefix: the checked path, escaped again
        wire = quote(scope["path"][3:], safe="/:@!$&'()*+,;=-._~")
    query: bytes = scope.get("query_string") or b""
    if not query:
        return wire
    kept = [
        pair for pair in query.decode("latin-1").split("&") if pair.partition("=")[0] in _PASS_QUERY
    ]
    return wire + "?" + "&".join(kept) if kept else wire


def _betas(value: bytes) -> str:
    """An ``anthropic-beta`` value less the betas that reach the account's resources."""
    return ",".join(
        beta
        for beta in (part.strip() for part in value.decode("latin-1").split(","))
        if beta and not beta.startswith(_RESOURCE_BETAS)
    )


def response_headers(raw: tuple[tuple[bytes, bytes], ...]) -> list[tuple[bytes, bytes]]:
    """The headers of an upstream answer that reach the client, names lower-cased: those
    of the allow-list, less any the upstream's own ``Connection`` header names
    (hop-by-hop, RFC 9110 §7.6.1)."""
    out: list[tuple[bytes, bytes]] = []
    hop: set[bytes] | None = None
    for name, value in raw:
        name = name.lower()
        if name in _PASS_RESPONSE or name.startswith(_PASS_RESPONSE_PREFIXES):
            out.append((name, value))
        elif name == b"connection":
            hop = hop or set()
            hop.update(token.strip().lower() for token in value.split(b","))
    if hop:
        out = [(name, value) for name, value in out if name not in hop]
    return out


def _via_chain(headers: list[tuple[bytes, bytes]], via: str) -> str:
    before = [value.decode("latin-1") for name, value in headers if name == b"x-relaygate-via"]
    return ",".join([*before, via])
