"""An Anthropic Messages client in front of a chat-completions endpoint: the request
(checked against the ``openai`` SDK's own parameter types), and the token estimate. The
answer side (response, errors, streams) is in ``test_messages_stream.py``."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
from pydantic import TypeAdapter

from relaygate.errors import TranslationError
from relaygate.translate import messages_stream
from relaygate.translate import messages_to_chat as m2c
from relaygate.translate.base import GEMINI, OPENAI, SELF_HOSTED, Dialect

Json = dict[str, Any]

CHAT_MESSAGE: TypeAdapter[ChatCompletionMessageParam] = TypeAdapter(ChatCompletionMessageParam)
CHAT_TOOL: TypeAdapter[ChatCompletionToolParam] = TypeAdapter(ChatCompletionToolParam)
SAMPLE = Path(__file__).parent / "samples" / "claude_code_messages.json"


def user(content: Any) -> Json:
    return {"role": "user", "content": content}


def assistant(content: Any) -> Json:
    return {"role": "assistant", "content": content}


def system(content: Any) -> Json:
    return {"role": "system", "content": content}


def ask(*messages: Json, **fields: Any) -> Json:
    return {"model": "claude-x", "max_tokens": 100, "messages": list(messages), **fields}


def chat(*messages: Json, **fields: Any) -> Json:
    return {"model": "up", "messages": list(messages), "max_tokens": 100, **fields}


PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}
WEATHER_TOOL = {
    "name": "weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    "cache_control": {"type": "ephemeral"},
}
WEATHER_FUNCTION = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city.",
        "parameters": WEATHER_TOOL["input_schema"],
    },
}
CALL = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}

# -- request -----------------------------------------------------------------------------

REQUESTS: list[tuple[str, Json, Dialect, Json, tuple[str, ...]]] = [
    ("string content", ask(user("Hi")), SELF_HOSTED, chat(user("Hi")), ()),
    (
        "system string",
        ask(user("Hi"), system="Be brief."),
        SELF_HOSTED,
        chat({"role": "system", "content": "Be brief."}, user("Hi")),
        (),
    ),
    (
        "system blocks joined, cache_control ignored",
        ask(
            user("Hi"),
            system=[
                {"type": "text", "text": "A."},
                {"type": "text", "text": "B.", "cache_control": {"type": "ephemeral"}},
            ],
        ),
        SELF_HOSTED,
        chat({"role": "system", "content": "A.\nB."}, user("Hi")),
        (),
    ),
    (
        "text blocks become one string",
        ask(user([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])),
        SELF_HOSTED,
        chat(user("a\nb")),
        (),
    ),
    (
        "images become image_url parts",
        ask(
            user(
                [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image", "source": PNG},
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                ]
            )
        ),
        SELF_HOSTED,
        chat(
            user(
                [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                ]
            )
        ),
        (),
    ),
    (
        "assistant tool_use becomes tool_calls, thinking left out",
        ask(
            user("Weather in Paris?"),
            assistant(
                [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "xyz"},
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "weather",
                        "input": {"city": "Paris"},
                    },
                ]
            ),
        ),
        SELF_HOSTED,
        chat(
            user("Weather in Paris?"),
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
        ),
        (),
    ),
    (
        "assistant with only a tool call has null content",
        ask(assistant([{"type": "tool_use", "id": "t", "name": "weather", "input": {}}])),
        SELF_HOSTED,
        chat({"role": "assistant", "content": None, "tool_calls": [{**CALL, "id": "t"}]}),
        (),
    ),
    (
        "tool results come first, one tool message each",
        ask(
            user(
                [
                    {"type": "text", "text": "Both done?"},
                    {"type": "tool_result", "tool_use_id": "a", "content": "sunny"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "b",
                        "content": [
                            {"type": "text", "text": "line 1"},
                            {"type": "image", "source": PNG},
                            {"type": "text", "text": "line 2"},
                        ],
                    },
                ]
            )
        ),
        SELF_HOSTED,
        chat(
            {"role": "tool", "tool_call_id": "a", "content": "sunny"},
            {"role": "tool", "tool_call_id": "b", "content": "line 1\nline 2"},
            user("Both done?"),
        ),
        ("tool_result images",),
    ),
    (
        "a turn of only tool results has no user message; is_error is prefixed",
        ask(
            user([{"type": "tool_result", "tool_use_id": "a", "content": "boom", "is_error": True}])
        ),
        SELF_HOSTED,
        chat({"role": "tool", "tool_call_id": "a", "content": "Error: boom"}),
        (),
    ),
    (
        "custom tools become functions, server tools are dropped",
        ask(
            user("Hi"),
            tools=[WEATHER_TOOL, {"type": "web_search_20250305", "name": "web_search"}],
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
        ),
        SELF_HOSTED,
        chat(
            user("Hi"),
            tools=[WEATHER_FUNCTION],
            tool_choice="required",
            parallel_tool_calls=False,
        ),
        ("tools[web_search_20250305]",),
    ),
    (
        "tool_choice naming a tool",
        ask(user("Hi"), tools=[WEATHER_TOOL], tool_choice={"type": "tool", "name": "weather"}),
        SELF_HOSTED,
        chat(
            user("Hi"),
            tools=[WEATHER_FUNCTION],
            tool_choice={"type": "function", "function": {"name": "weather"}},
        ),
        (),
    ),
    (
        "tool_choice none; no tools left means no tool fields at all",
        ask(
            user("Hi"),
            tools=[{"type": "bash_20250124", "name": "bash"}],
            tool_choice={"type": "none"},
        ),
        SELF_HOSTED,
        chat(user("Hi")),
        ("tools[bash_20250124]",),
    ),
    (
        "sampling on a self-hosted endpoint",
        ask(
            user("Hi"),
            stop_sequences=["END"],
            temperature=0.2,
            top_p=0.9,
            top_k=40,
            metadata={"user_id": "u-1"},
            stream=True,
            thinking={"type": "enabled", "budget_tokens": 2048},
            container="ignored",
        ),
        SELF_HOSTED,
        chat(
            user("Hi"),
            stop=["END"],
            temperature=0.2,
            top_p=0.9,
            top_k=40,
            user="u-1",
            stream=True,
            stream_options={"include_usage": True},
        ),
        ("thinking",),
    ),
    (
        "OpenAI: max_completion_tokens, top_k dropped, thinking as reasoning_effort",
        ask(user("Hi"), top_k=40, thinking={"type": "enabled", "budget_tokens": 8000}),
        OPENAI,
        {
            "model": "up",
            "messages": [user("Hi")],
            "max_completion_tokens": 100,
            "reasoning_effort": "medium",
        },
        ("top_k",),
    ),
    (
        "thinking disabled sends nothing",
        ask(user("Hi"), thinking={"type": "disabled"}),
        GEMINI,
        chat(user("Hi")),
        (),
    ),
    (
        "adaptive thinking is medium effort",
        ask(user("Hi"), thinking={"type": "adaptive", "display": "omitted"}),
        GEMINI,
        chat(user("Hi"), reasoning_effort="medium"),
        (),
    ),
    (
        "adaptive thinking dropped where the dialect has no effort",
        ask(user("Hi"), thinking={"type": "adaptive"}),
        SELF_HOSTED,
        chat(user("Hi")),
        ("thinking",),
    ),
    (
        "system messages stay in place: after tool results, and last",
        ask(
            user("Run it."),
            system("Tools changed."),
            assistant([{"type": "tool_use", "id": "t", "name": "weather", "input": {}}]),
            user([{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]),
            system([{"type": "text", "text": "A."}, {"type": "text", "text": "B."}]),
            system="Be brief.",
        ),
        SELF_HOSTED,
        chat(
            system("Be brief."),
            user("Run it."),
            system("Tools changed."),
            {"role": "assistant", "content": None, "tool_calls": [{**CALL, "id": "t"}]},
            {"role": "tool", "tool_call_id": "t", "content": "ok"},
            system("A.\nB."),
        ),
        (),
    ),
    (
        "system messages before any turn are joined to the system prompt",
        ask(
            system("Env."),
            system([{"type": "text", "text": "More.", "cache_control": {"type": "ephemeral"}}]),
            user("Hi"),
            system("Late."),
            system="Be brief.",
        ),
        SELF_HOSTED,
        chat(system("Be brief.\n\nEnv.\n\nMore."), user("Hi"), system("Late.")),
        (),
    ),
    (
        "a leading system message without a system prompt; empty ones left out",
        ask(system("Env."), system([]), user("Hi"), system("")),
        SELF_HOSTED,
        chat(system("Env."), user("Hi")),
        (),
    ),
    (
        "a tool's $schema and defer_loading are not sent",
        ask(
            user("Hi"),
            tools=[
                {
                    "name": "f",
                    "input_schema": {
                        "$schema": "https://json-schema.org/draft/2020-12/schema",
                        "type": "object",
                        "properties": {"$schema": {"type": "string"}},
                    },
                    "defer_loading": True,
                }
            ],
        ),
        OPENAI,
        {
            "model": "up",
            "messages": [user("Hi")],
            "max_completion_tokens": 100,
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "parameters": {
                            "type": "object",
                            "properties": {"$schema": {"type": "string"}},
                        },
                    },
                }
            ],
        },
        (),
    ),
]


@pytest.mark.parametrize(
    ("payload", "dialect", "expected", "dropped"),
    [case[1:] for case in REQUESTS],
    ids=[case[0] for case in REQUESTS],
)
def test_request(payload: Json, dialect: Dialect, expected: Json, dropped: tuple[str, ...]) -> None:
    """Each Messages request maps to the chat request and the dropped names in the table."""
    before = copy.deepcopy(payload)
    translated = m2c.request(payload, "up", dialect)
    assert translated.body == expected
    assert translated.dropped == dropped
    assert payload == before


@pytest.mark.parametrize(
    ("budget", "effort"),
    [(1024, "low"), (4095, "low"), (4096, "medium"), (16383, "medium"), (16384, "high")],
)
def test_thinking_budget_to_effort(budget: int, effort: str) -> None:
    """Thinking budgets map to low below 4096, medium below 16384 and high from there."""
    payload = ask(user("Hi"), thinking={"type": "enabled", "budget_tokens": budget})
    assert m2c.request(payload, "up", OPENAI).body["reasoning_effort"] == effort


BAD_REQUESTS: list[tuple[Json, str]] = [
    ({"model": "m", "max_tokens": 1}, "messages"),
    ({"model": "m", "max_tokens": 1, "messages": ["hello"]}, "messages[0]"),
    (ask({"role": "developer", "content": "x"}), "messages[0].role"),
    (ask({"content": "x"}), "messages[0].role"),
    (ask(user("x"), system(7)), "messages[1].content"),
    (ask(user("x"), system([{"type": "image", "source": PNG}])), "messages[1].content[0].type"),
    (ask(user(42)), "messages[0].content"),
    (ask(user("ok"), user([{"type": "document", "source": {}}])), "messages[1].content[0].type"),
    (ask(user([{"text": "no type"}])), "messages[0].content[0]"),
    (
        ask(user([{"type": "image", "source": {"type": "file", "file_id": "f"}}])),
        "messages[0].content[0].source",
    ),
    (ask(user([{"type": "tool_result", "content": "x"}])), "messages[0].content[0].tool_use_id"),
    (
        ask(user([{"type": "tool_result", "tool_use_id": "a", "content": [{"type": "document"}]}])),
        "messages[0].content[0].content[0].type",
    ),
    (ask(assistant([{"type": "tool_use", "name": "x", "input": {}}])), "messages[0].content[0]"),
    (ask(user("x"), system=[{"type": "image", "source": PNG}]), "system[0].type"),
    (ask(user("x"), system=7), "system"),
    (ask(user("x"), tools="weather"), "tools"),
    (ask(user("x"), tools=[WEATHER_TOOL], tool_choice={"type": "sometimes"}), "tool_choice.type"),
]


@pytest.mark.parametrize(("payload", "param"), BAD_REQUESTS)
def test_request_rejects(payload: Json, param: str) -> None:
    """A body that cannot be translated raises TranslationError naming the field at fault."""
    with pytest.raises(TranslationError) as caught:
        m2c.request(payload, "up", SELF_HOSTED)
    assert caught.value.param == param


# -- a captured Claude Code request -------------------------------------------------------

CHAT_FIELDS = {
    "model",
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "temperature",
    "top_p",
    "top_k",
    "reasoning_effort",
    "user",
    "stream",
    "stream_options",
}


def assert_valid_chat(body: Json) -> None:
    """``body`` is a chat completions request an OpenAI-strict server takes: known fields
    only; every message of the ``openai`` SDK's types, the first a system one; tool messages
    right after the assistant message whose calls they answer, each call answered once;
    tools as functions with an object schema and no ``$schema``."""
    assert set(body) <= CHAT_FIELDS, set(body) - CHAT_FIELDS
    json.dumps(body)
    messages = body["messages"]
    assert messages and messages[0]["role"] == "system"
    pending: set[str] = set()
    for i, message in enumerate(messages):
        CHAT_MESSAGE.validate_python(message)
        assert message["role"] in {"system", "user", "assistant", "tool"}
        if message["role"] == "tool":
            assert message["tool_call_id"] in pending, f"messages[{i}] answers no pending call"
            pending.remove(message["tool_call_id"])
            continue
        assert not pending, f"messages[{i}] comes before calls {pending} are answered"
        if message["role"] == "assistant":
            pending = {call["id"] for call in message.get("tool_calls", [])}
    assert not pending
    for tool in body.get("tools", []):
        CHAT_TOOL.validate_python(tool)
        assert tool["type"] == "function" and set(tool["function"]) <= {
            "name",
            "description",
            "parameters",
        }
        assert tool["function"]["parameters"]["type"] == "object"
        assert "$schema" not in tool["function"]["parameters"]


def claude_code_sample() -> Json:
    """What Claude Code 2.1.332 sent: a system prompt of text blocks, a user turn, a system
    message, a Bash tool_use and its tool_result (with cache_control), adaptive thinking,
    ``output_config``, ``context_management``, tools with ``$schema`` and one with
    ``defer_loading``, and ``metadata.user_id`` as a JSON string."""
    sample: Json = json.loads(SAMPLE.read_text())
    return sample


def roles(body: Json) -> list[str]:
    return [message["role"] for message in body["messages"]]


@pytest.mark.parametrize(
    ("dialect", "effort", "dropped"),
    [(SELF_HOSTED, None, ("thinking",)), (OPENAI, "medium", ()), (GEMINI, "medium", ())],
)
def test_claude_code_sample(dialect: Dialect, effort: str | None, dropped: tuple[str, ...]) -> None:
    """The captured request becomes a valid chat request: its system message in place, the
    tool result answering the call before it, every tool a function; the fields chat has no
    use for are left out, adaptive thinking is medium effort where the dialect takes one."""
    sample = claude_code_sample()
    before = copy.deepcopy(sample)
    translated = m2c.request(sample, "qwen3-coder", dialect)
    body = translated.body
    assert sample == before
    assert_valid_chat(body)
    assert translated.dropped == dropped
    assert roles(body) == ["system", "user", "system", "assistant", "tool"]
    assert body["messages"][2]["content"] == sample["messages"][1]["content"]
    [call] = body["messages"][3]["tool_calls"]
    assert call["function"]["name"] == "Bash"
    assert json.loads(call["function"]["arguments"]) == sample["messages"][2]["content"][0]["input"]
    assert body["messages"][4] == {
        "role": "tool",
        "tool_call_id": call["id"],
        "content": "relaygate-ok",
    }
    names = [tool["function"]["name"] for tool in body["tools"]]
    assert names == [tool["name"] for tool in sample["tools"]]
    assert body.get("reasoning_effort") == effort
    assert body["user"] == sample["metadata"]["user_id"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["model"] == "qwen3-coder"


def test_claude_code_sample_with_system_messages_first_and_last() -> None:
    """The captured request with a system message also before the first turn (joined to the
    system prompt), a second one in the middle and one (text blocks) after the turn of tool
    results, last: still a valid chat request, the later system messages in place."""
    sample = claude_code_sample()
    messages = sample["messages"]
    last = [
        {"type": "text", "text": "The Write tool is no longer available."},
        {"type": "text", "text": "Use Bash.", "cache_control": {"type": "ephemeral"}},
    ]
    sample["messages"] = [
        system("Session started."),
        messages[0],
        messages[1],
        system([{"type": "text", "text": "ToolSearch is now available."}]),
        *messages[2:],
        system(last),
    ]
    body = m2c.request(sample, "qwen3-coder", SELF_HOSTED).body
    assert_valid_chat(body)
    assert roles(body) == ["system", "user", "system", "system", "assistant", "tool", "system"]
    first = body["messages"][0]["content"]
    assert first.startswith("x-anthropic-billing-header") and first.endswith("\n\nSession started.")
    assert body["messages"][3]["content"] == "ToolSearch is now available."
    assert body["messages"][-1] == system("The Write tool is no longer available.\nUse Bash.")


def test_answer_side_is_re_exported() -> None:
    """The proxy reaches the answer side through this module."""
    assert m2c.Stream is messages_stream.Stream
    assert m2c.response is messages_stream.response
    assert m2c.error is messages_stream.error


# -- count_tokens ------------------------------------------------------------------------


def test_estimate_tokens() -> None:
    """The estimate is ceil(characters / 4) plus 4 per message and 1,600 per image."""
    payload = ask(
        user([{"type": "text", "text": "x" * 10}, {"type": "image", "source": PNG}]),
        assistant([{"type": "thinking", "thinking": "y" * 999, "signature": "s"}]),
        system="s" * 6,
        tools=[{"name": "ab", "description": "cd", "input_schema": {}}],
    )
    # 10 + 6 + 2 + 2 + len("{}") = 22 characters → 6 tokens, 2 messages, 1 image.
    assert m2c.estimate_tokens(payload) == 6 + 8 + 1600


def test_estimate_tokens_counts_tool_traffic() -> None:
    """Tool inputs and results count as the text they are sent as."""
    payload = ask(
        assistant([{"type": "tool_use", "id": "t", "name": "abcd", "input": {"k": 1}}]),
        user(
            [
                {
                    "type": "tool_result",
                    "tool_use_id": "t",
                    "content": [{"type": "text", "text": "z" * 12}],
                }
            ]
        ),
    )
    # 4 + len('{"k": 1}') (8) + 12 = 24 characters → 6 tokens, 2 messages.
    assert m2c.estimate_tokens(payload) == 6 + 8


def test_estimate_tokens_is_at_least_one() -> None:
    """Even an empty body estimates at one token."""
    assert m2c.estimate_tokens({}) == 1
