"""Provider adapters, one module each; :func:`get_provider` finds one by endpoint type."""

from __future__ import annotations

from types import MappingProxyType

from relaygate.errors import BadRequest
from relaygate.providers.base import DiscoveredModel, ListingFailed, Provider
from relaygate.providers.openai import OpenAIProvider

__all__ = ["PROVIDER_TYPES", "DiscoveredModel", "ListingFailed", "Provider", "get_provider"]

_PROVIDERS: MappingProxyType[str, Provider] = MappingProxyType({"openai": OpenAIProvider()})
PROVIDER_TYPES = tuple(_PROVIDERS)


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
