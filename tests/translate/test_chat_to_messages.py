"""OpenAI chat completions in front of Anthropic's Messages API: request, response, error
(the stream is in test_chat_stream). Outputs are checked against the official SDKs' own
types."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pydantic
import pytest
from anthropic.types import message_create_params
from openai.types.chat import ChatCompletion

from relaygate.errors import TranslationError
from relaygate.translate.base import SELF_HOSTED
from relaygate.translate.chat_to_messages import (
    DEFAULT_MAX_TOKENS,
    error,
    request,
    response,
)

OLD = "claude-sonnet-4-5-20250929"  # thinking only as {"type": "enabled", budget}; sampling
MID = "claude-sonnet-4-6"  # thinking as {"type": "adaptive"}; sampling
NEW = "claude-opus-4-7"  # thinking only as {"type": "adaptive"}; no sampling fields

_PARAMS: dict[bool, pydantic.TypeAdapter[Any]] = {
    False: pydantic.TypeAdapter(message_create_params.MessageCreateParamsNonStreaming),
    True: pydantic.TypeAdapter(message_create_params.MessageCreateParamsStreaming),
}


def _force(value: Any) -> Any:
    """Pydantic validates ``Iterable`` fields lazily: walk them so every item is checked."""
    if isinstance(value, dict):
        return {k: _force(v) for k, v in value.items()}
    if isinstance(value, list | tuple | Iterator):
        return [_force(v) for v in value]
    return value


# The anthropic SDK no longer types the sampling fields, which only models before Opus 4.7
# take (its users pass them as extra_body); the API still takes them on those models.
SAMPLING = ("temperature", "top_p", "top_k")


def assert_anthropic_body(body: dict[str, Any]) -> None:
    """The body validates as the anthropic SDK's MessageCreateParams, and nothing in it is
    unknown to them (pydantic drops unknown TypedDict keys, so a round trip shows them)."""
    typed = {k: v for k, v in body.items() if k not in SAMPLING}
    validated = _force(_PARAMS[bool(body.get("stream"))].validate_python(typed))
    assert validated == typed


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"location": {"type": "string"}},
    "required": ["location"],
}
WEATHER_FUNCTION = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "parameters": WEATHER_SCHEMA,
}
WEATHER = {"type": "function", "function": WEATHER_FUNCTION}
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": WEATHER_SCHEMA,
}
PNG = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)

REQUESTS = [
    pytest.param(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]},
        OLD,
        {"model": OLD, "messages": [user("Hello")], "max_tokens": DEFAULT_MAX_TOKENS},
        (),
        id="minimal",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
                {"role": "user", "content": [{"type": "text", "text": "Again"}]},
            ],
        },
        OLD,
        {
            "model": OLD,
            "system": "Be brief.\n\nUse French.",
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "Again"}],
                }
            ],
            "max_tokens": DEFAULT_MAX_TOKENS,
        },
        (),
        id="system-and-developer-anywhere-and-same-role-merge",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Compare"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://example.com/a.jpg", "detail": "low"},
                        },
                    ],
                }
            ],
        },
        OLD,
        {
            "model": OLD,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Compare"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                        {
                            "type": "image",
                            "source": {"type": "url", "url": "https://example.com/a.jpg"},
                        },
                    ],
                }
            ],
            "max_tokens": DEFAULT_MAX_TOKENS,
        },
        (),
        id="images",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "Weather in SF and NYC?"},
                {
                    "role": "assistant",
                    "content": "Checking.",
                    "reasoning_content": "The user wants two cities.",
                    "tool_calls": [
                        call("toolu_1", "get_weather", '{"location": "San Francisco, CA"}'),
                        call("toolu_2", "get_weather", '{"location":"New York, NY"}'),
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_1", "content": "15 C"},
                {
                    "role": "tool",
                    "tool_call_id": "toolu_2",
                    "content": [{"type": "text", "text": "22 C"}],
                },
                {"role": "user", "content": "Which is warmer?"},
                {"role": "assistant", "content": None, "tool_calls": [call("toolu_3", "now", "")]},
                {"role": "tool", "tool_call_id": "toolu_3", "content": ""},
            ],
            "tools": [WEATHER, {"type": "function", "function": {"name": "now"}}],
        },
        OLD,
        {
            "model": OLD,
            "messages": [
                user("Weather in SF and NYC?"),
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Checking."},
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "get_weather",
                            "input": {"location": "San Francisco, CA"},
                        },
                        {
                            "type": "tool_use",
                            "id": "toolu_2",
                            "name": "get_weather",
                            "input": {"location": "New York, NY"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "15 C"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_2",
                            "content": [{"type": "text", "text": "22 C"}],
                        },
                        {"type": "text", "text": "Which is warmer?"},
                    ],
                },
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "toolu_3", "name": "now", "input": {}}],
                },
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_3"}]},
            ],
            "tools": [
                WEATHER_TOOL,
                {"name": "now", "input_schema": {"type": "object", "properties": {}}},
            ],
            "max_tokens": DEFAULT_MAX_TOKENS,
        },
        (),
        id="tool-loop",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 100,
            "max_completion_tokens": 300,
            "stop": "END",
            "temperature": 1.5,
            "top_p": 0.9,
            "top_k": 40,
            "user": "user-42",
            "stream": True,
            "stream_options": {"include_usage": True},
            "n": 1,
        },
        OLD,
        {
            "model": OLD,
            "messages": [user("Hi")],
            "max_tokens": 300,
            "stop_sequences": ["END"],
            "temperature": 1.0,
            "top_p": 0.9,
            "top_k": 40,
            "metadata": {"user_id": "user-42"},
            "stream": True,
        },
        (),
        id="sampling-cap-user-stream",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "Hi"}],
            "stop": ["a", "b"],
            "temperature": -1,
            "response_format": {"type": "json_object"},
            "logprobs": False,
            "top_logprobs": None,
            "seed": 0,
            "presence_penalty": 0.5,
            "frequency_penalty": 0.1,
            "logit_bias": {"50256": -100},
        },
        OLD,
        {
            "model": OLD,
            "messages": [user("Hi")],
            "max_tokens": DEFAULT_MAX_TOKENS,
            "stop_sequences": ["a", "b"],
            "temperature": 0.0,
        },
        ("response_format", "seed", "presence_penalty", "frequency_penalty", "logit_bias"),
        id="dropped-fields-named-unless-unset",
    ),
    *[
        pytest.param(
            {
                "model": "m",
                "messages": [{"role": "user", "content": "Hi"}],
                "tools": [WEATHER],
                "tool_choice": choice,
                "parallel_tool_calls": parallel,
            },
            OLD,
            {
                "model": OLD,
                "messages": [user("Hi")],
                "max_tokens": DEFAULT_MAX_TOKENS,
                "tools": [WEATHER_TOOL],
                **({"tool_choice": expected} if expected else {}),
            },
            (),
            id=f"tool-choice-{label}",
        )
        for label, choice, parallel, expected in [
            ("auto", "auto", None, {"type": "auto"}),
            ("required", "required", None, {"type": "any"}),
            ("none", "none", False, {"type": "none"}),
            (
                "function",
                {"type": "function", "function": {"name": "get_weather"}},
                None,
                {"type": "tool", "name": "get_weather"},
            ),
            ("unset", None, None, None),
            ("serial", None, False, {"type": "auto", "disable_parallel_tool_use": True}),
            ("serial-any", "required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ]
    ],
    pytest.param(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "Hi"}],
            "reasoning_effort": "medium",
            "temperature": 0.2,
            "top_k": 5,
            "top_p": 0.5,
        },
        OLD,
        {
            "model": OLD,
            "messages": [user("Hi")],
            "max_tokens": DEFAULT_MAX_TOKENS + 4096,
            "thinking": {"type": "enabled", "budget_tokens": 4096},
        },
        ("temperature", "top_k", "top_p"),
        id="reasoning-budget-model-default-cap",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "Hi"}],
            "reasoning_effort": "high",
            "max_completion_tokens": 2000,
            "top_p": 0.95,
        },
        "claude-3-7-sonnet-latest",
        {
            "model": "claude-3-7-sonnet-latest",
            "messages": [user("Hi")],
            "max_tokens": 2000,
            "top_p": 0.95,
            "thinking": {"type": "enabled", "budget_tokens": 1999},
        },
        (),
        id="reasoning-budget-capped-below-client-cap",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "Hi"}],
            "reasoning_effort": "low",
            "max_tokens": 1000,
            "temperature": 0.3,
        },
        OLD,
        {"model": OLD, "messages": [user("Hi")], "max_tokens": 1000, "temperature": 0.3},
        ("reasoning_effort",),
        id="reasoning-no-room-under-cap",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "Hi"}],
            "reasoning_effort": "xhigh",
        },
        NEW,
        {
            "model": NEW,
            "messages": [user("Hi")],
            "max_tokens": DEFAULT_MAX_TOKENS + 32768,
            "thinking": {"type": "adaptive", "display": "summarized"},
            "output_config": {"effort": "xhigh"},
        },
        (),
        id="reasoning-adaptive-model",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "Hi"}],
            "reasoning_effort": "minimal",
            "max_completion_tokens": 500,
            "temperature": 0.7,
            "top_p": 0.97,
        },
        MID,
        {
            "model": MID,
            "messages": [user("Hi")],
            "max_tokens": 500,
            "top_p": 0.97,
            "thinking": {"type": "adaptive", "display": "summarized"},
            "output_config": {"effort": "low"},
        },
        ("temperature",),
        id="reasoning-adaptive-model-keeps-client-cap",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "Hi"}],
            "temperature": 0,
            "top_p": 0.9,
            "top_k": 10,
        },
        NEW,
        {"model": NEW, "messages": [user("Hi")], "max_tokens": DEFAULT_MAX_TOKENS},
        ("temperature", "top_p", "top_k"),
        id="sampling-left-out-for-models-that-refuse-it",
    ),
    pytest.param(
        {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0.5},
        MID,
        {
            "model": MID,
            "messages": [user("Hi")],
            "max_tokens": DEFAULT_MAX_TOKENS,
            "temperature": 0.5,
        },
        (),
        id="sampling-kept-for-4-6",
    ),
    pytest.param(
        {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "reasoning_effort": "none"},
        NEW,
        {"model": NEW, "messages": [user("Hi")], "max_tokens": DEFAULT_MAX_TOKENS},
        (),
        id="reasoning-none",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "Hi"}],
            "tools": [WEATHER],
            "tool_choice": "required",
            "reasoning_effort": "high",
        },
        NEW,
        {
            "model": NEW,
            "messages": [user("Hi")],
            "max_tokens": DEFAULT_MAX_TOKENS,
            "tools": [WEATHER_TOOL],
            "tool_choice": {"type": "any"},
        },
        ("reasoning_effort",),
        id="reasoning-left-out-when-tool-forced",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "tool_calls": [call("t1", "get_weather", "{}")]},
                {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
            ],
            "tools": [WEATHER],
            "reasoning_effort": "low",
        },
        OLD,
        {
            "model": OLD,
            "messages": [
                user("Weather?"),
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}],
                },
            ],
            "max_tokens": DEFAULT_MAX_TOKENS,
            "tools": [WEATHER_TOOL],
        },
        ("reasoning_effort",),
        id="reasoning-left-out-inside-a-tool-loop",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "Weather?"},
                {
                    "role": "assistant",
                    "content": None,
                    "function_call": {"name": "get_weather", "arguments": '{"location":"Oslo"}'},
                },
                {"role": "function", "name": "get_weather", "content": "cold"},
            ],
            "functions": [WEATHER_FUNCTION],
            "function_call": {"name": "get_weather"},
        },
        OLD,
        {
            "model": OLD,
            "messages": [
                user("Weather?"),
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": "function_call_1",
                            "name": "get_weather",
                            "input": {"location": "Oslo"},
                        }
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "function_call_1", "content": "cold"}
                    ],
                },
            ],
            "max_tokens": DEFAULT_MAX_TOKENS,
            "tools": [WEATHER_TOOL],
            "tool_choice": {"type": "tool", "name": "get_weather"},
        },
        (),
        id="legacy-functions",
    ),
]


@pytest.mark.parametrize(("payload", "upstream", "body", "dropped"), REQUESTS)
def test_request(
    payload: dict[str, Any], upstream: str, body: dict[str, Any], dropped: tuple[str, ...]
) -> None:
    """A chat body becomes the Messages body of the table, names what it left out, is a
    valid MessageCreateParams, and the client's body is left untouched."""
    before = copy.deepcopy(payload)
    translated = request(payload, upstream, SELF_HOSTED)
    assert translated.body == body
    assert translated.dropped == dropped
    assert payload == before
    assert_anthropic_body(translated.body)


def _with(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "Hi"}], **fields}


def _message(content: Any, role: str = "user") -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": role, "content": content}]}


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        pytest.param(_with(n=2), "n", id="n"),
        pytest.param(
            _message([{"type": "text", "text": "a"}, {"type": "input_audio", "input_audio": {}}]),
            "messages[0].content[1]",
            id="audio",
        ),
        pytest.param(
            _message([{"type": "file", "file": {"file_id": "f"}}]),
            "messages[0].content[0]",
            id="file",
        ),
        pytest.param(
            {
                "model": "m",
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "tool_calls": [call("t", "f", '{"a": ')]},
                ],
            },
            "messages[1].tool_calls[0].function.arguments",
            id="unparsable-arguments",
        ),
        pytest.param(
            {
                "model": "m",
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "tool_calls": [call("t", "f", "[1, 2]")]},
                ],
            },
            "messages[1].tool_calls[0].function.arguments",
            id="arguments-not-an-object",
        ),
        pytest.param(
            _message([{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]),
            "messages[0].content[0].image_url.url",
            id="image-url-scheme",
        ),
        pytest.param(
            _message([{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]),
            "messages[0].content[0].image_url.url",
            id="image-data-url-not-base64",
        ),
        pytest.param(_message("Hi", role="critic"), "messages[0].role", id="role"),
        pytest.param(_message("Be kind.", role="system"), "messages", id="no-turns"),
        pytest.param(
            _message([{"type": "image_url", "image_url": {"url": "https://x/y"}}], role="system"),
            "messages[0].content[0]",
            id="image-in-system",
        ),
        pytest.param(_message("Hi", role="tool"), "messages[0].tool_call_id", id="tool-no-id"),
        pytest.param(_message("Hi", role="function"), "messages[0]", id="function-no-call"),
        pytest.param(_with(reasoning_effort="extreme"), "reasoning_effort", id="effort"),
        pytest.param(
            _with(tools=[{"type": "custom", "custom": {"name": "x"}}]), "tools[0].type", id="tool"
        ),
        pytest.param(
            _with(tools=[WEATHER], tool_choice="sometimes"), "tool_choice", id="tool-choice"
        ),
        pytest.param(_with(max_tokens=0), "max_tokens", id="max-tokens"),
        pytest.param(_with(temperature="hot"), "temperature", id="temperature"),
        pytest.param(_with(stop=[1]), "stop[0]", id="stop"),
    ],
)
def test_request_refuses(payload: dict[str, Any], param: str) -> None:
    """A body that cannot be translated raises TranslationError naming the field."""
    with pytest.raises(TranslationError) as caught:
        request(payload, OLD, SELF_HOSTED)
    assert caught.value.param == param


def _anthropic_message(content: list[Any], stop_reason: str, **usage: int) -> dict[str, Any]:
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 6, **usage},
    }


def _completion(message: dict[str, Any], finish: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "claude-public",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage,
    }


USAGE_12_6 = {
    "prompt_tokens": 12,
    "completion_tokens": 6,
    "total_tokens": 18,
    "prompt_tokens_details": {"cached_tokens": 0},
}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            _anthropic_message([{"type": "text", "text": "Hi! My name is Claude."}], "end_turn"),
            _completion(
                {"role": "assistant", "content": "Hi! My name is Claude.", "refusal": None},
                "stop",
                USAGE_12_6,
            ),
            id="text",
        ),
        pytest.param(
            _anthropic_message(
                [
                    {"type": "thinking", "thinking": "They want weather.", "signature": "EqQB"},
                    {"type": "text", "text": "Let me check."},
                    {
                        "type": "tool_use",
                        "id": "toolu_01A09q90qw90lq917835lq9",
                        "name": "get_weather",
                        "input": {"location": "San Francisco, CA", "unit": "celsius"},
                    },
                ],
                "tool_use",
            ),
            _completion(
                {
                    "role": "assistant",
                    "content": "Let me check.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "toolu_01A09q90qw90lq917835lq9",
                            "type": "function",
                            "function": {
                                "name": "get_weather",
                                "arguments": '{"location":"San Francisco, CA","unit":"celsius"}',
                            },
                        }
                    ],
                    "reasoning_content": "They want weather.",
                },
                "tool_calls",
                USAGE_12_6,
            ),
            id="thinking-and-tool-use",
        ),
        pytest.param(
            _anthropic_message(
                [{"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}], "tool_use"
            ),
            _completion(
                {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "now", "arguments": "{}"},
                        }
                    ],
                },
                "tool_calls",
                USAGE_12_6,
            ),
            id="tool-use-only",
        ),
        pytest.param(
            _anthropic_message(
                [{"type": "text", "text": "Once upon"}],
                "max_tokens",
                cache_creation_input_tokens=100,
                cache_read_input_tokens=2000,
            ),
            _completion(
                {"role": "assistant", "content": "Once upon", "refusal": None},
                "length",
                {
                    "prompt_tokens": 2112,
                    "completion_tokens": 6,
                    "total_tokens": 2118,
                    "prompt_tokens_details": {"cached_tokens": 2000},
                },
            ),
            id="max-tokens-and-cache",
        ),
        pytest.param(
            _anthropic_message([], "refusal"),
            _completion(
                {"role": "assistant", "content": None, "refusal": None},
                "content_filter",
                USAGE_12_6,
            ),
            id="refusal",
        ),
        pytest.param(
            _anthropic_message([{"type": "text", "text": "42"}], "stop_sequence"),
            _completion(
                {"role": "assistant", "content": "42", "refusal": None}, "stop", USAGE_12_6
            ),
            id="stop-sequence",
        ),
    ],
)
def test_response(body: dict[str, Any], expected: dict[str, Any]) -> None:
    """An Anthropic message becomes the chat.completion of the table, valid for the openai SDK."""
    translated = response(body, "claude-public", created=1700000000)
    assert translated == expected
    ChatCompletion.model_validate(translated)


def test_response_created_defaults_to_zero() -> None:
    """Without a created time the completion says 0: the module reads no clock."""
    body = _anthropic_message([{"type": "text", "text": "x"}], "end_turn")
    assert response(body, "m")["created"] == 0


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        pytest.param(
            529,
            {
                "type": "error",
                "error": {"type": "overloaded_error", "message": "Overloaded"},
                "request_id": "req_1",
            },
            {"message": "Overloaded", "type": "overloaded_error", "param": None, "code": None},
            id="anthropic",
        ),
        pytest.param(
            429,
            {"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}},
            {"message": "Slow down", "type": "rate_limit_error", "param": None, "code": None},
            id="rate-limit",
        ),
        pytest.param(
            502,
            None,
            {
                "message": "the Anthropic endpoint answered HTTP 502",
                "type": "api_error",
                "param": None,
                "code": None,
            },
            id="no-body",
        ),
        pytest.param(
            401,
            {"message": "bad key"},
            {"message": "bad key", "type": "authentication_error", "param": None, "code": None},
            id="message-field",
        ),
        pytest.param(
            404,
            {"error": "no such model"},
            {"message": "no such model", "type": "not_found_error", "param": None, "code": None},
            id="error-string",
        ),
        pytest.param(
            418,
            "  I'm a teapot ",
            {
                "message": "I'm a teapot",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            },
            id="text-body",
        ),
    ],
)
def test_error(status: int, body: Any, expected: dict[str, Any]) -> None:
    """An endpoint's error body becomes OpenAI's error object with the message and type."""
    assert error(status, body) == {"error": expected}
