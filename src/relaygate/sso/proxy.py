"""Identities asserted by an authenticating proxy in front of relaygate (oauth2-proxy,
an ingress doing OIDC): the user in one header, their groups in another.

The headers are believed only from a client address inside ``trusted_proxy.addresses``.
The client address is the TCP peer of the connection (``serve`` runs uvicorn with
``proxy_headers`` off, so ``X-Forwarded-For`` never replaces it): the proxy itself, not
the browser behind it. From any other address the headers are ignored and a warning is
logged.
"""

from __future__ import annotations

import ipaddress
import logging

from starlette.requests import Request

from relaygate.services.identities import Asserted, Mapping
from relaygate.sign_in_settings import TrustedProxy

log = logging.getLogger(__name__)
MAX_HEADER_CHARS = 255
"""The longest user header accepted (an identity's subject); each group likewise."""
MAX_GROUPS = 200


def client_trusted(proxy: TrustedProxy, request: Request) -> bool:
    """Whether the request's client address (the socket peer) is in the proxy's CIDRs."""
    if request.client is None:
        return False
    try:
        address = ipaddress.ip_address(request.client.host)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(cidr, strict=False) for cidr in proxy.addresses)


def asserted(proxy: TrustedProxy, request: Request) -> Asserted | None:
    """The identity the proxy's headers assert, or None when there is none, or when they
    come from an untrusted address (then logged) or are malformed."""
    user = request.headers.get(proxy.user_header)
    if user is None:
        return None
    if not client_trusted(proxy, request):
        host = request.client.host if request.client else "an unknown address"
        log.warning("ignored %s from %s: not a trusted proxy address", proxy.user_header, host)
        return None
    user = user.strip()
    if not user or len(user) > MAX_HEADER_CHARS:
        return None
    groups: frozenset[str] = frozenset()
    if proxy.groups_header:
        raw = request.headers.get(proxy.groups_header, "")
        listed = [g.strip() for g in raw.split(",") if g.strip()]
        groups = frozenset(g for g in listed[:MAX_GROUPS] if len(g) <= MAX_HEADER_CHARS)
    return Asserted("proxy", user, user if "@" in user else None, user, groups)


def mapping(proxy: TrustedProxy) -> Mapping:
    """The trusted proxy's role and group mapping."""
    return Mapping(frozenset(proxy.admin_groups), dict(proxy.group_map))
