"""The openai SDK's Responses API through relaygate to an endpoint that serves only chat
completions: translated both ways, streamed with the full event sequence, function calls,
and the responses relaygate stores for their owner (``store``, ``previous_response_id``,
``GET``/``DELETE``), which nobody else can read or continue."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from sqlalchemy import func, select

from relaygate.db.tables import StoredResponse
from tests.support.gateway import Gateway
from tests.support.polling import eventually
from tests.support.scripted import ScriptedUpstream, Turn
from tests.translate.conftest import MODEL, posts, usage_records, user_key

WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def test_text_answer_and_usage_record(gateway: Gateway, scripted: ScriptedUpstream) -> None:
    """``responses.create`` with a string input and instructions reaches the endpoint as
    a chat completion (system, then user) and comes back as a Response whose output_text
    is the model's; the usage record names both APIs."""
    scripted.script.otherwise = Turn.say("Bonjour")
    gateway.add_endpoint("local", scripted.url, responses_api="translate")
    client = gateway.openai()
    response = client.responses.create(model=MODEL, instructions="Speak French.", input="Hi")
    assert response.output_text == "Bonjour"
    assert response.status == "completed" and response.model == MODEL
    assert response.usage is not None and response.usage.output_tokens > 0
    sent = scripted.script.chat_requests()[0].body
    assert sent["messages"] == [
        {"role": "system", "content": "Speak French."},
        {"role": "user", "content": "Hi"},
    ]
    [record] = eventually(lambda: usage_records(gateway), bool)
    assert (record["path"], record["upstream_path"]) == ("/v1/responses", "/chat/completions")
    assert record["completion_tokens"] == response.usage.output_tokens


def test_streamed_function_call_and_continuation(
    gateway: Gateway, scripted: ScriptedUpstream
) -> None:
    """A streamed function call arrives as Responses events (output_item.added, argument
    deltas, done, response.completed); continuing with previous_response_id and the
    call's output sends the endpoint the whole conversation, stored by relaygate."""
    script = scripted.script
    script.when(lambda r: bool(r.tool_outputs("get_weather")), Turn.say("Sunny in Oslo."))
    script.then(Turn.call("get_weather", city="Oslo"))
    gateway.add_endpoint("local", scripted.url, responses_api="translate")
    client = gateway.openai()

    with client.responses.stream(model=MODEL, input="Weather in Oslo?", tools=[WEATHER]) as s:
        kinds = [event.type for event in s]
        first = s.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    assert kinds[-1] == "response.completed"
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.arguments == '{"city": "Oslo"}'

    second = client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[WEATHER],
    )
    assert second.output_text == "Sunny in Oslo."
    messages = script.chat_requests()[-1].messages
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[0]["content"] == "Weather in Oslo?"
    assert messages[1]["tool_calls"][0]["id"] == call.call_id
    assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"}
    assert not script.problems


def test_stored_responses_belong_to_their_owner(
    gateway: Gateway, scripted: ScriptedUpstream
) -> None:
    """The owner reads, lists the input of and deletes their stored response; another
    user gets 404 for the same id and cannot continue it (400, nothing sent upstream),
    even knowing the id; a response made with store: false is not kept."""
    scripted.script.otherwise = Turn.say("Secret plans")
    gateway.add_endpoint("local", scripted.url, responses_api="translate")
    alice = gateway.openai(user_key(gateway, "alice"))
    mallory = gateway.openai(user_key(gateway, "mallory"))

    made = alice.responses.create(model=MODEL, input="Tell me the plan")
    assert alice.responses.retrieve(made.id).output_text == "Secret plans"
    items = alice.responses.input_items.list(made.id)
    assert [item.type for item in items.data] == ["message"]
    with pytest.raises(openai.NotFoundError):
        mallory.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        mallory.responses.delete(made.id)
    before = len(scripted.script.requests)
    with pytest.raises(openai.BadRequestError) as refused:
        mallory.responses.create(model=MODEL, previous_response_id=made.id, input="And?")
    assert refused.value.code == "previous_response_not_found"
    assert len(scripted.script.requests) == before

    alice.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(made.id)

    unstored = alice.responses.create(model=MODEL, input="Forget this", store=False)
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(unstored.id)


def test_stored_responses_are_encrypted_and_expire(
    tmp_path: Any, scripted: ScriptedUpstream
) -> None:
    """A stored response is encrypted at rest (its text is nowhere in the database file)
    and after responses_retention_days it can no longer be read or continued."""
    running = Gateway(tmp_path, responses_retention_days=2 / 86400).start()  # two seconds
    try:
        scripted.script.otherwise = Turn.say("A very particular sentence")
        running.add_endpoint("local", scripted.url, responses_api="translate")
        client = running.openai()
        made = client.responses.create(model=MODEL, input="Say it")
        stored = eventually(lambda: _stored_count(running), lambda count: count == 1, seconds=5)
        assert stored == 1
        assert b"A very particular sentence" not in running.dump()
        eventually(lambda: _readable(client, made.id), lambda readable: not readable, seconds=10)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(made.id)
        with pytest.raises(openai.BadRequestError):
            client.responses.create(model=MODEL, previous_response_id=made.id, input="Again")
    finally:
        running.stop()


def _readable(client: openai.OpenAI, response_id: str) -> bool:
    try:
        client.responses.retrieve(response_id)
    except openai.NotFoundError:
        return False
    return True


def _stored_count(gateway: Gateway) -> int:
    async def count() -> int:
        async with gateway.ctx.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(StoredResponse)) or 0)

    return gateway.on_loop(count)


def test_structured_output_reaches_the_endpoint_as_response_format(
    gateway: Gateway, scripted: ScriptedUpstream
) -> None:
    """``text.format`` with a JSON schema becomes the chat API's response_format, and the
    model's JSON comes back as output_text."""
    scripted.script.otherwise = Turn.say('{"answer": 42}')
    gateway.add_endpoint("local", scripted.url, responses_api="translate")
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    response = gateway.openai().responses.create(
        model=MODEL,
        input="The answer?",
        text={"format": {"type": "json_schema", "name": "answer", "schema": schema}},
    )
    assert response.output_text == '{"answer": 42}'
    sent = scripted.script.chat_requests()[0].body
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"] == schema


def test_auto_mode_finds_a_missing_responses_api(
    gateway: Gateway, scripted: ScriptedUpstream
) -> None:
    """In ``auto`` mode a Responses request to a chat-only endpoint is answered through
    translation after the endpoint's 404, and the endpoint object shows what was found."""
    scripted.script.otherwise = Turn.say("ok")
    gateway.add_endpoint("local", scripted.url)
    client = gateway.openai()
    assert client.responses.create(model=MODEL, input="Hi").output_text == "ok"
    assert client.responses.create(model=MODEL, input="Hi").output_text == "ok"
    assert posts(scripted) == [
        ("POST", "/v1/responses"),
        ("POST", "/v1/responses"),  # relaygate's own probe: the route is missing
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/chat/completions"),
    ]
    found = eventually(lambda: gateway.endpoint("local")["api_found"], bool)
    assert found == {"responses": "translate"}


def test_a_response_is_saved_once_the_database_can_take_it(
    gateway: Gateway, scripted: ScriptedUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    """A save the database cannot take for a reason of its own (here its table is gone:
    SQLite's OperationalError, PostgreSQL's undefined table) is kept and written at a
    later flush; before, it was dropped as though the database had refused its data."""
    scripted.script.otherwise = Turn.say("Kept for later")
    gateway.add_endpoint("local", scripted.url, responses_api="translate")
    client = gateway.openai()
    table = StoredResponse.__table__

    async def drop() -> None:
        async with gateway.ctx.engine.begin() as connection:
            await connection.run_sync(lambda sync: table.drop(sync))

    async def create() -> None:
        async with gateway.ctx.engine.begin() as connection:
            await connection.run_sync(lambda sync: table.create(sync))

    gateway.on_loop(drop)
    try:
        made = client.responses.create(model=MODEL, input="Say it")
        failed = eventually(  # a flush (every second) fails meanwhile
            lambda: [r for r in caplog.records if "could not write stored" in r.getMessage()],
            bool,
        )
        assert failed
    finally:
        gateway.on_loop(create)
    assert eventually(lambda: _stored_count(gateway), lambda count: count == 1) == 1
    assert client.responses.retrieve(made.id).output_text == "Kept for later"
