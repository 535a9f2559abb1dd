"""OpenAI and every OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama, Together, …).

Listing: ``GET {url}/models`` with ``Authorization: Bearer <key>`` (key optional),
answered by ``{"object": "list", "data": [{"id", "object": "model", "created",
"owned_by"}, …]}`` — https://platform.openai.com/docs/api-reference/models/list .
Compatible servers add fields relaygate keeps when present: vLLM's
``max_model_len``, Together's ``context_length``, ``display_name`` and ``type``
(``chat``, ``language``, ``embedding``, ``image``, ``audio``) —
https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html ,
https://docs.together.ai/reference/models-1 . Servers that page the list
(``has_more`` with ``last_id``, as OpenAI's list objects do) are followed with
``after``. Forwarding: the inference routes (:data:`INFERENCE_ROUTES`), Bearer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp

from relaygate.providers.base import (
    BEARER,
    Access,
    DiscoveredModel,
    Pages,
    Surface,
    as_int,
    as_str,
    from_epoch,
    get_json,
    not_a_list,
)
from relaygate.routes import RoutePolicy

_TYPE_CAPABILITIES = {
    "chat": ("chat",),
    "language": ("completions",),
    "code": ("completions",),
    "embedding": ("embeddings",),
    "image": ("images",),
    "audio": ("audio",),
}
MAX_PAGES = 100
INFERENCE_ROUTES = RoutePolicy.of(
    ("POST", path)
    for path in (
        # https://platform.openai.com/docs/api-reference: the routes that generate or
        # score from a request's own input and keep nothing on the account.
        "/chat/completions",
        "/completions",
        "/embeddings",
        "/responses",
        "/responses/input_tokens",
        "/responses/compact",
        "/moderations",
        "/audio/speech",
        "/audio/transcriptions",
        "/audio/translations",
        "/images/generations",
        "/images/edits",
        "/images/variations",
        # Self-hosted servers' extensions (vLLM, SGLang, llama.cpp, TEI, Infinity).
        "/rerank",
        "/score",
        "/tokenize",
        "/detokenize",
        "/pooling",
        "/classify",
        # Anthropic's Messages API: served natively by some servers (vLLM, llama.cpp),
        # translated to chat completions for the rest (relaygate.proxy.translation).
        "/messages",
        "/messages/count_tokens",
    )
)


def openai_model(item: dict[str, Any]) -> DiscoveredModel:
    """Map one entry of an OpenAI-style model list to a :class:`DiscoveredModel`."""
    kind = item.get("type")
    return DiscoveredModel(
        id=item["id"],
        owned_by=as_str(item.get("owned_by")),
        display_name=as_str(item.get("display_name")),
        context_window=as_int(item.get("max_model_len")) or as_int(item.get("context_length")),
        created=from_epoch(item.get("created")),
        capabilities=_TYPE_CAPABILITIES.get(kind, ()) if isinstance(kind, str) else (),
    )


async def list_data_pages(
    http: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    timeout: float,
    to_model: Callable[[dict[str, Any]], DiscoveredModel],
    *,
    bounds: Access,
    cursor: str = "after",
    params: dict[str, str] | None = None,
) -> list[DiscoveredModel]:
    """Every entry of a paged ``{"data": [...], "has_more", "last_id"}`` list at ``url``
    (OpenAI's list object; Anthropic's, paged with ``after_id``), mapped by ``to_model``.
    The next page is asked with ``cursor=<last_id>``. Raises :class:`ListingFailed`,
    also for a page over ``bounds.max_bytes`` or more than ``bounds.max_models`` in all."""
    models: list[DiscoveredModel] = []
    base = dict(params or {})
    query = dict(base)
    pages = Pages(url, MAX_PAGES)
    while True:
        answer = await get_json(
            http, url, headers, timeout, query or None, max_bytes=bounds.max_bytes
        )
        payload = answer.body
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list):
            raise not_a_list(url, 'no "data" array')
        for count, item in enumerate(data, 1):
            if not isinstance(item, dict) or not as_str(item.get("id")):
                raise not_a_list(url, 'an entry has no "id"')
            models.append(to_model(item))
            if count % 500 == 0:
                await asyncio.sleep(0)  # a list of 100,000 models never holds the loop
        bounds.check_count(url, len(models))
        assert isinstance(payload, dict)
        last = as_str(payload.get("last_id"))
        if payload.get("has_more") is not True or not last or not data:
            break
        query = {**base, cursor: pages.next(last)}
    return models


async def list_openai_models(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], timeout: float, bounds: Access
) -> list[DiscoveredModel]:
    """Every model at ``url`` (an OpenAI-style list endpoint), following pages, within
    ``bounds``' limits."""
    return await list_data_pages(http, url, headers, timeout, openai_model, bounds=bounds)


class OpenAIProvider:
    """Adapter for ``type: openai`` endpoints."""

    type = "openai"
    surfaces: tuple[Surface, ...] = (Surface(BEARER),)
    routes = INFERENCE_ROUTES

    async def list_models(
        self, http: aiohttp.ClientSession, access: Access, timeout: float
    ) -> list[DiscoveredModel]:
        return await list_openai_models(
            http, access.url.rstrip("/") + "/models", access.headers(BEARER), timeout, access
        )
