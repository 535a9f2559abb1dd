"""OpenAI and every OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama, Together, …).

Listing: ``GET {url}/models`` with ``Authorization: Bearer <key>`` (key optional),
answered by ``{"object": "list", "data": [{"id", "object": "model", "created",
"owned_by"}, …]}`` — https://platform.openai.com/docs/api-reference/models/list
"""

from __future__ import annotations

import aiohttp

from relaygate.providers.base import DiscoveredModel, ListingFailed, get_json


class OpenAIProvider:
    """Adapter for ``type: openai`` endpoints."""

    type = "openai"

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"} if api_key else {}

    async def list_models(
        self, http: aiohttp.ClientSession, url: str, api_key: str | None, timeout: float
    ) -> list[DiscoveredModel]:
        listing_url = url.rstrip("/") + "/models"
        payload = await get_json(http, listing_url, self.auth_headers(api_key), timeout)
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list):
            raise ListingFailed(
                f'response from {listing_url} is not a model list (no "data" array)'
            )
        models = []
        for item in data:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
                raise ListingFailed(
                    f'response from {listing_url} is not a model list (an entry has no "id")'
                )
            owned_by = item.get("owned_by")
            models.append(
                DiscoveredModel(
                    id=item["id"], owned_by=owned_by if isinstance(owned_by, str) else None
                )
            )
        return models
