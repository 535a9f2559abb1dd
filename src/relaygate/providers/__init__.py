"""Provider adapters, one module each; :func:`get_provider` finds one by endpoint type.

Adding a provider: a new module implementing :class:`Provider`, and a line below.
"""

from __future__ import annotations

from types import MappingProxyType

from relaygate.errors import BadRequest, ListingFailed
from relaygate.providers.anthropic import AnthropicProvider
from relaygate.providers.base import Access, AuthScheme, DiscoveredModel, Provider, Surface
from relaygate.providers.google import GoogleProvider
from relaygate.providers.openai import OpenAIProvider
from relaygate.routes import RoutePolicy

__all__ = [
    "ALL_ROUTES",
    "PROVIDER_TYPES",
    "Access",
    "AuthScheme",
    "DiscoveredModel",
    "ListingFailed",
    "Provider",
    "Surface",
    "get_provider",
]

_PROVIDERS: MappingProxyType[str, Provider] = MappingProxyType(
    {
        "openai": OpenAIProvider(),
        "anthropic": AnthropicProvider(),
        "google": GoogleProvider(),
    }
)
PROVIDER_TYPES = tuple(_PROVIDERS)
ALL_ROUTES = RoutePolicy.of(
    route for provider in _PROVIDERS.values() for route in provider.routes.exact
)
"""Every route some provider type forwards (endpoints' extra routes aside)."""


def get_provider(type_: str) -> Provider:
    """The adapter for endpoint type ``type_``; raises :class:`BadRequest` for unknown types."""
    try:
        return _PROVIDERS[type_]
    except KeyError:
        raise BadRequest(
            f"endpoint type {type_!r} is not supported; use one of: {', '.join(PROVIDER_TYPES)} "
            "(any OpenAI-compatible server is type 'openai')",
            param="type",
        ) from None
