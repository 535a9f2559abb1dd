"""Anthropic (Claude), natively.

Listing: ``GET {url}/models?limit=1000[&after_id=…]`` with ``x-api-key`` and
``anthropic-version: 2023-06-01``, answered by ``{"data": [{"id", "type": "model",
"display_name", "created_at", "max_input_tokens", "max_tokens", "capabilities"}],
"has_more", "first_id", "last_id"}``; pages are followed while ``has_more`` is true —
https://docs.anthropic.com/en/api/models-list . Errors are
``{"type": "error", "error": {"type", "message"}}`` — https://docs.anthropic.com/en/api/errors .

Forwarding: the Messages API (``/messages``, ``/messages/count_tokens``, streaming
included — https://docs.anthropic.com/en/api/messages) with ``x-api-key``,
``anthropic-version`` set only when the client sent none; and ``/chat/completions``
to Anthropic's OpenAI SDK compatibility layer with Bearer —
https://docs.anthropic.com/en/api/openai-sdk . Nothing else (message batches, files,
models, the admin API) is forwarded.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from relaygate.providers.base import (
    BEARER,
    Access,
    AuthScheme,
    DiscoveredModel,
    Surface,
    as_int,
    as_str,
    from_rfc3339,
)
from relaygate.providers.openai import list_data_pages
from relaygate.routes import RoutePolicy

API_VERSION = "2023-06-01"
X_API_KEY = AuthScheme("x-api-key")
NATIVE_PATHS = ("/messages",)
PAGE_LIMIT = "1000"
INFERENCE_ROUTES = RoutePolicy.of(
    ("POST", path) for path in ("/messages", "/messages/count_tokens", "/chat/completions")
)


def _supported(capabilities: dict[str, Any], name: str) -> bool:
    entry = capabilities.get(name)
    return isinstance(entry, dict) and entry.get("supported") is True


def anthropic_model(item: dict[str, Any]) -> DiscoveredModel:
    """Map one Anthropic ``ModelInfo`` to a :class:`DiscoveredModel`. Every Claude model
    chats and uses tools; vision when ``capabilities.image_input`` says so."""
    capabilities = ["chat", "tools"]
    reported = item.get("capabilities")
    if isinstance(reported, dict) and _supported(reported, "image_input"):
        capabilities.append("vision")
    return DiscoveredModel(
        id=item["id"],
        owned_by="anthropic",
        display_name=as_str(item.get("display_name")),
        context_window=as_int(item.get("max_input_tokens")),
        max_output_tokens=as_int(item.get("max_tokens")),
        created=from_rfc3339(item.get("created_at")),
        capabilities=tuple(capabilities),
    )


class AnthropicProvider:
    """Adapter for ``type: anthropic`` endpoints (``url`` like https://api.anthropic.com/v1)."""

    type = "anthropic"
    surfaces: tuple[Surface, ...] = (
        Surface(X_API_KEY, NATIVE_PATHS, (("anthropic-version", API_VERSION),)),
        Surface(BEARER),
    )
    routes = INFERENCE_ROUTES

    async def list_models(
        self, http: aiohttp.ClientSession, access: Access, timeout: float
    ) -> list[DiscoveredModel]:
        url = access.url.rstrip("/") + "/models"
        headers = {**access.headers(X_API_KEY), "anthropic-version": API_VERSION}
        return await list_data_pages(
            http,
            url,
            headers,
            timeout,
            anthropic_model,
            bounds=access,
            cursor="after_id",
            params={"limit": PAGE_LIMIT},
        )
