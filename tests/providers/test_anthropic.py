"""Anthropic endpoints: paged listing, metadata, and the anthropic SDK through relaygate."""

from __future__ import annotations

import threading

import anthropic
import pytest

from tests.conftest import Upstream
from tests.providers.conftest import Running
from tests.support.gateway import Gateway
from tests.support.providers import AnthropicState, anthropic_model

API = "/admin/api/v1"


@pytest.fixture
def claude(gateway: Gateway, anthropic_api: Running, anthropic_state: AnthropicState) -> Gateway:
    anthropic_state.models = [
        anthropic_model(
            "claude-opus-4",
            max_input_tokens=200000,
            max_tokens=32000,
            capabilities={"image_input": {"supported": True}},
        ),
        anthropic_model("claude-sonnet-4", max_input_tokens=200000, max_tokens=64000),
        anthropic_model("claude-haiku-3", max_input_tokens=0, max_tokens=0),
    ]
    created = gateway.add_endpoint(
        "claude", anthropic_api.url, type="anthropic", api_key=anthropic_state.api_key
    )
    assert created["sync"]["status"] == "ok", created["sync"]
    return gateway


def test_listing_follows_pages_and_keeps_metadata(
    claude: Gateway, anthropic_state: AnthropicState
) -> None:
    """All pages are read (after_id), with display name, created_at, limits and vision."""
    assert anthropic_state.listing_calls == ["limit=1000", "limit=1000&after_id=claude-sonnet-4"]
    models = {m["upstream_id"]: m for m in claude.admin.get(f"{API}/models").json()}
    assert sorted(models) == ["claude-haiku-3", "claude-opus-4", "claude-sonnet-4"]
    opus = models["claude-opus-4"]
    assert opus["display_name"] == "Claude-Opus-4"
    assert (opus["context_window"], opus["max_output_tokens"]) == (200000, 32000)
    assert opus["created"].startswith("2025-02-19")
    assert opus["capabilities"] == ["chat", "tools", "vision"]
    assert models["claude-haiku-3"]["context_window"] is None
    listed = {m.id: m for m in claude.openai().models.list()}
    assert listed["claude-opus-4"].model_extra["context_window"] == 200000  # type: ignore[index]


def test_bad_key_is_the_sync_error(
    gateway: Gateway, anthropic_api: Running, anthropic_state: AnthropicState
) -> None:
    """Anthropic's 401 for a bad key is recorded with its own message."""
    created = gateway.add_endpoint(
        "claude", anthropic_api.url, type="anthropic", api_key="sk-ant-wrong-key-9999"
    )
    error = created["sync"]["error"]
    assert created["sync"]["status"] == "error"
    assert "HTTP 401" in error and "invalid x-api-key: …" in error
    assert "sk-ant-wrong-key-9999" not in error
    assert b"sk-ant-wrong-key-9999" not in gateway.dump()


def test_messages_with_the_anthropic_sdk(claude: Gateway, anthropic_state: AnthropicState) -> None:
    """messages.create through relaygate: x-api-key set to the provider key, the client's
    anthropic-version and anthropic-beta passed on."""
    client = claude.anthropic()
    message = client.messages.create(
        model="claude-sonnet-4",
        max_tokens=64,
        messages=[{"role": "user", "content": "Hello"}],
        extra_headers={"anthropic-beta": "output-128k-2025-02-19"},
    )
    assert message.content[0].text == "Hi from Claude"  # type: ignore[union-attr]
    seen = anthropic_state.requests[-1]
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == anthropic_state.api_key
    assert seen.headers["anthropic-version"] == client.default_headers["anthropic-version"]
    assert seen.headers["anthropic-beta"] == "output-128k-2025-02-19"
    assert claude.admin_key not in str(seen.headers)
    assert "authorization" not in seen.headers


def test_bearer_auth_from_newer_sdks(claude: Gateway) -> None:
    """A relaygate key sent as Authorization: Bearer (auth_token) works as well."""
    client = claude.anthropic(auth_token=claude.admin_key)
    reply = client.messages.create(
        model="claude-opus-4", max_tokens=8, messages=[{"role": "user", "content": "x"}]
    )
    assert reply.stop_reason == "end_turn"


def test_version_set_only_when_client_sent_none(
    claude: Gateway, anthropic_state: AnthropicState
) -> None:
    """relaygate supplies anthropic-version when missing and keeps the client's otherwise."""
    response = claude.admin.post(
        "/v1/messages", json={"model": "claude-opus-4", "max_tokens": 8, "messages": []}
    )
    assert response.status_code == 200
    assert anthropic_state.requests[-1].headers["anthropic-version"] == "2023-06-01"
    claude.admin.post(
        "/v1/messages",
        headers={"anthropic-version": "2099-01-01"},
        json={"model": "claude-opus-4", "max_tokens": 8, "messages": []},
    )
    assert anthropic_state.requests[-1].headers["anthropic-version"] == "2099-01-01"


def test_streamed_messages_arrive_event_by_event(
    claude: Gateway, anthropic_state: AnthropicState
) -> None:
    """The first text delta reaches the SDK while the provider still holds the rest."""
    hold = threading.Event()
    anthropic_state.hold_stream = hold
    client = claude.anthropic(timeout=10)
    with client.messages.stream(
        model="claude-sonnet-4", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        texts = stream.text_stream
        assert next(texts) == "Hello"
        assert not hold.is_set()
        hold.set()
        assert "".join(texts) == " from Claude"
        final = stream.get_final_message()
    assert final.usage.output_tokens == 3


def test_count_tokens(claude: Gateway) -> None:
    client = claude.anthropic()
    counted = client.messages.count_tokens(
        model="claude-opus-4", messages=[{"role": "user", "content": "Hi"}]
    )
    assert counted.input_tokens == 12


def test_chat_completions_use_the_openai_surface(
    claude: Gateway, anthropic_state: AnthropicState, upstream: Upstream
) -> None:
    """/v1/chat/completions to a Claude model goes to Anthropic's OpenAI layer with Bearer,
    beside an OpenAI-compatible endpoint served through the same relaygate."""
    claude.add_endpoint("local", upstream.url)
    client = claude.openai()
    reply = client.chat.completions.create(model="claude-opus-4", messages=[])
    assert reply.choices[0].message.content == "Claude via OpenAI surface"
    seen = anthropic_state.requests[-1]
    assert seen.headers["authorization"] == f"Bearer {anthropic_state.api_key}"
    assert "x-api-key" not in seen.headers
    local = client.chat.completions.create(model="gpt-test", messages=[])
    assert local.choices[0].message.content == "hello from upstream"


def test_unknown_model_with_anthropic_sdk(claude: Gateway) -> None:
    client = claude.anthropic()
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="claude-nope", max_tokens=8, messages=[])


def test_metadata_changes_are_picked_up_by_the_next_sync(
    claude: Gateway, anthropic_state: AnthropicState
) -> None:
    """A re-sync stores changed metadata and /v1/models shows it; nothing else changes."""
    anthropic_state.models[0]["display_name"] = "Claude Opus 4 (renamed)"
    result = claude.admin.post(f"{API}/endpoints/1/sync").json()
    assert (result["added"], result["reactivated"], result["deactivated"]) == (0, 0, 0)
    listed = {m.id: m.model_extra for m in claude.openai().models.list()}
    assert listed["claude-opus-4"]["display_name"] == "Claude Opus 4 (renamed)"  # type: ignore[index]
