"""Google Gemini endpoints: native paged listing, the models/ prefix, capabilities."""

from __future__ import annotations

from tests.providers.conftest import Running
from tests.support.gateway import Gateway
from tests.support.providers import GoogleState, gemini_model

API = "/admin/api/v1"
CHAT = ["generateContent", "countTokens", "streamGenerateContent"]


def models_of(gateway: Gateway) -> dict[str, dict[str, object]]:
    return {m["upstream_id"]: m for m in gateway.admin.get(f"{API}/models").json()}


def test_native_listing_pages_strips_prefix_and_maps_capabilities(
    gateway: Gateway, google_api: Running, google_state: GoogleState
) -> None:
    """All pages (pageToken) are read; ids lose models/; embeddings-only is tagged so."""
    google_state.models = [
        gemini_model("gemini-2.0-flash", CHAT),
        gemini_model("gemini-2.5-pro", CHAT, inputTokenLimit=2000000),
        gemini_model("text-embedding-004", ["embedContent"], outputTokenLimit=1),
    ]
    created = gateway.add_endpoint(
        "gemini", google_api.url, type="google", api_key=google_state.api_key
    )
    assert created["sync"]["status"] == "ok"
    models = models_of(gateway)
    assert sorted(models) == ["gemini-2.0-flash", "gemini-2.5-pro", "text-embedding-004"]
    assert models["text-embedding-004"]["capabilities"] == ["embeddings"]
    assert models["gemini-2.0-flash"]["capabilities"] == ["chat"]
    assert models["gemini-2.5-pro"]["context_window"] == 2000000
    assert models["gemini-2.0-flash"]["display_name"] == "Gemini 2.0 Flash"
    listed = {m.id: m.model_extra for m in gateway.openai().models.list()}
    assert listed["text-embedding-004"]["capabilities"] == ["embeddings"]  # type: ignore[index]


def test_requests_go_to_the_openai_compatible_base(
    gateway: Gateway, google_api: Running, google_state: GoogleState
) -> None:
    """Chat goes to {url}/chat/completions with Bearer and the bare model id."""
    google_state.models = [gemini_model("gemini-2.0-flash", CHAT)]
    gateway.add_endpoint("gemini", google_api.url, type="google", api_key=google_state.api_key)
    reply = gateway.openai().chat.completions.create(model="gemini-2.0-flash", messages=[])
    assert reply.choices[0].message.content == "Gemini says hi"
    seen = google_state.requests[-1]
    assert seen.path == "/v1beta/openai/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {google_state.api_key}"
    assert seen.json["model"] == "gemini-2.0-flash"


def test_falls_back_to_openai_listing(
    gateway: Gateway, google_api: Running, google_state: GoogleState
) -> None:
    """Without the native call (404), {url}/models is used, prefix stripped all the same."""
    google_state.native_listing = False
    google_state.models = [gemini_model("gemini-2.0-flash", CHAT)]
    created = gateway.add_endpoint(
        "gemini", google_api.url, type="google", api_key=google_state.api_key
    )
    assert created["sync"]["status"] == "ok"
    assert list(models_of(gateway)) == ["gemini-2.0-flash"]


def test_bad_key_is_the_sync_error(
    gateway: Gateway, google_api: Running, google_state: GoogleState
) -> None:
    """Google answers a bad key with 400 INVALID_ARGUMENT; its message is recorded."""
    google_state.models = [gemini_model("gemini-2.0-flash", CHAT)]
    created = gateway.add_endpoint("gemini", google_api.url, type="google", api_key="AIza-wrong")
    assert created["sync"]["status"] == "error"
    assert "HTTP 400" in created["sync"]["error"]
    assert "API key not valid" in created["sync"]["error"]


def test_repeating_page_token_is_an_error(
    gateway: Gateway, google_api: Running, google_state: GoogleState
) -> None:
    """A listing whose pages never end is a sync error, not a silently truncated list."""
    google_state.models = [gemini_model(f"g-{i}", CHAT) for i in range(5)]
    google_state.repeat_token = True
    created = gateway.add_endpoint(
        "gemini", google_api.url, type="google", api_key=google_state.api_key
    )
    assert created["sync"]["status"] == "error"
    assert "pagination" in created["sync"]["error"] and "did not end" in created["sync"]["error"]
