"""Translation from the attacker's side: a user steering what ``auto`` finds for every
user, filling relaygate's store, smuggling header text or odd ids; an endpoint whose
tokenizer refuses; all refused or contained."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from relaygate.services.stored_responses import ResponseStore, Saved
from tests.support.gateway import Gateway
from tests.support.hostile import RecordingUpstream, Reply, json_reply
from tests.support.scripted import ScriptedUpstream, Turn
from tests.support.upstream import Seen
from tests.translate.conftest import MODEL, posts

ASK = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def recorder() -> Iterator[RecordingUpstream]:
    server = RecordingUpstream()
    server.state.models = [MODEL]
    yield server
    server.stop()


def test_a_clients_own_404_does_not_decide_for_every_user(
    gateway: Gateway, recorder: RecordingUpstream
) -> None:
    """A Responses endpoint that answers 404 to one client's content (an unknown item id)
    but serves the route is not switched to translation for everyone: relaygate's own
    empty probe shows the route exists, and the client gets the endpoint's 404."""

    async def answer(seen: Seen) -> Reply:
        if seen.path == "/v1/responses" and b"rs_bogus" in seen.body:
            return json_reply(404, {"error": {"message": "Item with id 'rs_bogus' not found"}})
        return json_reply(400, {"error": {"message": "missing input"}})

    recorder.state.answer = answer
    gateway.add_endpoint("native", recorder.url)
    bogus = [{"type": "reasoning", "id": "rs_bogus", "summary": []}]
    with pytest.raises(openai.NotFoundError) as refused:
        gateway.openai().responses.create(model=MODEL, input=bogus)  # type: ignore[arg-type]
    assert "rs_bogus" in refused.value.message
    assert [json.loads(s.body) for s in recorder.state.requests][1] == {}
    assert gateway.endpoint("native")["api_found"] == {}


def test_a_tokenizer_that_refuses_never_cools_the_endpoint(
    gateway: Gateway, recorder: RecordingUpstream
) -> None:
    """count_tokens asks the server's own /tokenize (at its root, beside /v1); one that
    answers 403 gives the estimate, is not asked again, and never counts against the
    endpoint's health: chat still works for everyone."""

    async def answer(seen: Seen) -> Reply:
        if seen.path == "/tokenize":
            return json_reply(403, {"error": {"message": "forbidden"}})
        return json_reply(200, _completion())

    recorder.state.answer = answer
    gateway.add_endpoint("local", recorder.url, messages_api="translate")
    claude = gateway.anthropic()
    try:
        for _ in range(5):
            counted = claude.messages.with_raw_response.count_tokens(model=MODEL, messages=ASK)  # type: ignore[arg-type]
            assert counted.headers["x-relaygate-token-count"] == "estimate"
        assert gateway.openai().chat.completions.create(model=MODEL, messages=ASK)  # type: ignore[arg-type]
    finally:
        claude.close()
    tokenized = [s for s in recorder.state.requests if s.path == "/tokenize"]
    assert 1 <= len(tokenized) <= 2  # until what was found reaches the snapshot


def test_count_tokens_uses_a_tokenizer_at_the_server_root(
    gateway: Gateway, recorder: RecordingUpstream
) -> None:
    """Where the server has a tokenizer (vLLM's /tokenize answering a count), the count
    is its own, for the translated chat messages."""

    async def answer(seen: Seen) -> Reply:
        return json_reply(200, {"count": 42, "max_model_len": 4096})

    recorder.state.answer = answer
    gateway.add_endpoint("local", recorder.url, messages_api="translate")
    claude = gateway.anthropic()
    try:
        raw = claude.messages.with_raw_response.count_tokens(
            model=MODEL,
            system="Be brief.",
            messages=ASK,  # type: ignore[arg-type]
        )
    finally:
        claude.close()
    assert raw.headers["x-relaygate-token-count"] == "tokenizer"
    assert raw.parse().input_tokens == 42
    [seen] = recorder.state.requests
    assert seen.path == "/tokenize"
    assert json.loads(seen.body)["messages"][0] == {"role": "system", "content": "Be brief."}


def test_field_names_never_become_header_text(gateway: Gateway, scripted: ScriptedUpstream) -> None:
    """A client's unknown field named with a line break or at length, named back in
    x-relaygate-dropped, never reaches the header: the answer arrives whole."""
    scripted.script.otherwise = Turn.say("ok")
    gateway.add_endpoint("local", scripted.url, responses_api="translate")
    body = {"model": MODEL, "input": "Hi", "x\r\nset-cookie: a=b": 1, "y" * 5000: 2, "top_k": 3}
    response = gateway.admin.post("/v1/responses", json=body)
    assert response.status_code == 200, response.text
    assert "set-cookie" not in response.headers
    assert "\n" not in response.headers.get("x-relaygate-dropped", "")
    assert len(response.headers.get("x-relaygate-dropped", "")) < 2000


@pytest.mark.parametrize("ident", ["resp_\x00x", "../resp", "r" * 65, "", "resp id"])
def test_an_odd_previous_response_id_is_a_400(
    gateway: Gateway, scripted: ScriptedUpstream, ident: str
) -> None:
    """A previous_response_id that cannot be an id (a NUL, a slash, too long, empty) is
    refused 400 naming the field, before any lookup or upstream request."""
    gateway.add_endpoint("local", scripted.url, responses_api="translate")
    body = {"model": MODEL, "input": "Hi", "previous_response_id": ident}
    response = gateway.admin.post("/v1/responses", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "previous_response_id"
    assert posts(scripted) == []


def test_a_conversation_past_the_body_limit_is_refused(
    tmp_path: Path, scripted: ScriptedUpstream
) -> None:
    """Stored turns are read back only up to max_body_bytes of conversation: a longer
    one is refused 400 conversation_too_long, not loaded whole."""
    scripted.script.otherwise = Turn.say("ok")
    running = Gateway(tmp_path, max_body_bytes=30_000).start()
    try:
        running.add_endpoint("local", scripted.url, responses_api="translate")
        client = running.openai()
        first = client.responses.create(model=MODEL, input="x" * 9_000)
        second = client.responses.create(
            model=MODEL, input="y" * 9_000, previous_response_id=first.id
        )
        third = client.responses.create(
            model=MODEL, input="z" * 9_000, previous_response_id=second.id
        )
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(model=MODEL, input="more", previous_response_id=third.id)
        assert refused.value.code == "conversation_too_long"
    finally:
        running.stop()


def test_a_save_whose_user_is_gone_does_not_block_the_others(
    gateway: Gateway,
) -> None:
    """A stored response whose owner was deleted before it was written is dropped; the
    other saves of the same batch are written and readable."""
    user = gateway.create_user("kept")
    store = ResponseStore(gateway.ctx, 1_000_000)
    response: dict[str, Any] = {"id": "resp_kept", "status": "completed", "output": []}
    store.save(Saved(user["id"], None, MODEL, [], response))
    store.save(Saved(999_999, None, MODEL, [], {**response, "id": "resp_orphan"}))
    gateway.on_loop(store.flush)
    fresh = ResponseStore(gateway.ctx, 1_000_000)
    assert gateway.on_loop(lambda: fresh.get(user["id"], "resp_kept"))["id"] == "resp_kept"
    with pytest.raises(Exception, match="no response"):
        gateway.on_loop(lambda: fresh.get(999_999, "resp_orphan"))


def _completion() -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
