"""Google Gemini, through its OpenAI-compatible base.

The endpoint ``url`` is Gemini's OpenAI-compatible base
(``https://generativelanguage.googleapis.com/v1beta/openai``); requests are
forwarded there with Bearer — https://ai.google.dev/gemini-api/docs/openai : chat
completions, embeddings and image generation (its batches and files are not).

Listing uses the native call at the parent path: ``GET …/v1beta/models
?pageSize=1000[&pageToken=…]`` with ``x-goog-api-key``, answered by ``{"models":
[{"name": "models/…", "displayName", "inputTokenLimit", "outputTokenLimit",
"supportedGenerationMethods"}], "nextPageToken"}`` —
https://ai.google.dev/api/models#method:-models.list . The ``models/`` prefix is
stripped. Where the native call is not there (404), ``GET {url}/models`` (the
OpenAI-compatible list) is used instead. A bad key is answered 400
``INVALID_ARGUMENT`` ("API key not valid") — https://ai.google.dev/gemini-api/docs/troubleshooting .
"""

from __future__ import annotations

from typing import Any

import aiohttp

from relaygate.providers.base import (
    BEARER,
    Access,
    AuthScheme,
    DiscoveredModel,
    Pages,
    Surface,
    as_int,
    as_str,
    get_json,
    not_a_list,
)
from relaygate.providers.openai import list_openai_models
from relaygate.routes import RoutePolicy

X_GOOG_API_KEY = AuthScheme("x-goog-api-key")
PAGE_SIZE = "1000"
MAX_PAGES = 100
INFERENCE_ROUTES = RoutePolicy.of(
    ("POST", path)
    for path in (
        "/chat/completions",
        "/embeddings",
        "/images/generations",
        # Translated to chat completions (relaygate.proxy.translation): Gemini's OpenAI
        # layer has neither.
        "/responses",
        "/messages",
        "/messages/count_tokens",
    )
)
_METHOD_CAPABILITIES = {
    "generateContent": "chat",
    "streamGenerateContent": "chat",
    "embedContent": "embeddings",
    "batchEmbedContents": "embeddings",
    "predict": "images",
    "bidiGenerateContent": "audio",
}


def strip_prefix(name: str) -> str:
    """``models/gemini-2.0-flash`` → ``gemini-2.0-flash``."""
    return name.removeprefix("models/")


def native_base(url: str) -> str:
    """The native API base for an OpenAI-compatible Gemini base: the parent of ``/openai``."""
    base = url.rstrip("/")
    return base.removesuffix("/openai") if base.endswith("/openai") else base


def gemini_model(item: dict[str, Any]) -> DiscoveredModel:
    """Map one native Gemini ``Model`` to a :class:`DiscoveredModel`; capabilities follow
    ``supportedGenerationMethods``."""
    methods = item.get("supportedGenerationMethods")
    capabilities: list[str] = []
    for method in methods if isinstance(methods, list) else []:
        capability = _METHOD_CAPABILITIES.get(method)
        if capability and capability not in capabilities:
            capabilities.append(capability)
    return DiscoveredModel(
        id=strip_prefix(item["name"]),
        owned_by="google",
        display_name=as_str(item.get("displayName")),
        context_window=as_int(item.get("inputTokenLimit")),
        max_output_tokens=as_int(item.get("outputTokenLimit")),
        capabilities=tuple(capabilities),
    )


class GoogleProvider:
    """Adapter for ``type: google`` endpoints."""

    type = "google"
    surfaces: tuple[Surface, ...] = (Surface(BEARER),)
    routes = INFERENCE_ROUTES

    async def list_models(
        self, http: aiohttp.ClientSession, access: Access, timeout: float
    ) -> list[DiscoveredModel]:
        url = native_base(access.url) + "/models"
        headers = access.headers(X_GOOG_API_KEY)
        models: list[DiscoveredModel] = []
        params = {"pageSize": PAGE_SIZE}
        pages = Pages(url, MAX_PAGES)
        while True:
            answer = await get_json(
                http, url, headers, timeout, params, allow_404=True, max_bytes=access.max_bytes
            )
            if answer.status == 404:
                return await self._openai_listing(http, access, timeout)
            payload = answer.body
            found = None
            if isinstance(payload, dict):
                # An empty result is {} (no "models" key); anything else must carry the array.
                found = payload.get("models", [] if not payload else None)
            if not isinstance(found, list):
                raise not_a_list(url, 'no "models" array')
            for item in found:
                if not isinstance(item, dict) or not as_str(item.get("name")):
                    raise not_a_list(url, 'an entry has no "name"')
                models.append(gemini_model(item))
            access.check_count(url, len(models))
            assert isinstance(payload, dict)
            token = as_str(payload.get("nextPageToken"))
            if not token:
                break
            params = {"pageSize": PAGE_SIZE, "pageToken": pages.next(token)}
        return models

    async def _openai_listing(
        self, http: aiohttp.ClientSession, access: Access, timeout: float
    ) -> list[DiscoveredModel]:
        listed = await list_openai_models(
            http, access.url.rstrip("/") + "/models", access.headers(BEARER), timeout, access
        )
        return [
            DiscoveredModel(
                id=strip_prefix(m.id),
                owned_by=m.owned_by or "google",
                display_name=m.display_name,
                created=m.created,
            )
            for m in listed
        ]
