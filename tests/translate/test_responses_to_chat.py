"""Responses client → chat-completions endpoint: request(), input_items(), response(), error()."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from openai.types.responses import Response

from relaygate.errors import TranslationError
from relaygate.translate import responses_to_chat as rtc
from relaygate.translate.base import GEMINI, OPENAI, SELF_HOSTED

Json = dict[str, Any]


def chat(payload: Json, dialect: Any = SELF_HOSTED, history: Any = ()) -> Json:
    return rtc.request(payload, "up-model", dialect, history).body


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def user(text: str) -> Json:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def assistant(text: str) -> Json:
    content = [{"type": "output_text", "text": text, "annotations": []}]
    return {"type": "message", "role": "assistant", "content": content}


def call(call_id: str, name: str = "shell", arguments: str = '{"cmd":"ls"}') -> Json:
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}


def output(call_id: str, text: str = "ok") -> Json:
    return {"type": "function_call_output", "call_id": call_id, "output": text}


def tool_call(call_id: str, name: str = "shell", arguments: str = '{"cmd":"ls"}') -> Json:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


APPLY_PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files.",
    "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch"'},
}
SHELL = {
    "type": "function",
    "name": "shell",
    "description": "Run a command.",
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
    "strict": False,
}


# -- request(): messages ------------------------------------------------------------------

MESSAGE_CASES: list[tuple[str, Json, list[Json]]] = [
    (
        "string input",
        {"input": "hi"},
        [{"role": "user", "content": "hi"}],
    ),
    (
        "instructions first, developer as system",
        {
            "instructions": "Be brief.",
            "input": [
                {"type": "message", "role": "developer", "content": "Use tools."},
                {"role": "user", "content": "hello"},
            ],
        },
        [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Use tools."},
            {"role": "user", "content": "hello"},
        ],
    ),
    (
        "text parts joined, refusal as text",
        {
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "a"},
                        {"type": "input_text", "text": "b"},
                    ],
                },
                {
                    "role": "assistant",
                    "content": [{"type": "refusal", "refusal": "no"}],
                },
            ]
        },
        [{"role": "user", "content": "a\nb"}, {"role": "assistant", "content": "no"}],
    ),
    (
        "user image as an image_url part",
        {
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "what is this?"},
                        {
                            "type": "input_image",
                            "image_url": "data:image/png;base64,AAAA",
                            "detail": "low",
                        },
                    ],
                }
            ]
        },
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
                    },
                ],
            }
        ],
    ),
    (
        "calls merged with the assistant text before them, outputs as tool messages",
        {
            "input": [
                user("list files"),
                assistant("Looking."),
                call("c1"),
                call("c2", arguments='{"cmd":"pwd"}'),
                output("c1", "a.txt"),
                output("c2", "/"),
            ]
        },
        [
            {"role": "user", "content": "list files"},
            {
                "role": "assistant",
                "content": "Looking.",
                "tool_calls": [tool_call("c1"), tool_call("c2", arguments='{"cmd":"pwd"}')],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "a.txt"},
            {"role": "tool", "tool_call_id": "c2", "content": "/"},
        ],
    ),
    (
        "a call with no assistant text before it, tool output given as parts",
        {
            "input": [
                user("go"),
                call("c1"),
                {
                    "type": "function_call_output",
                    "call_id": "c1",
                    "output": [{"type": "input_text", "text": "done"}],
                },
            ]
        },
        [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": None, "tool_calls": [tool_call("c1")]},
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
        ],
    ),
    (
        "images in tool outputs follow the tool messages as a user message",
        {
            "input": [
                call("c1", "view_image"),
                call("c2"),
                {
                    "type": "function_call_output",
                    "call_id": "c1",
                    "output": [
                        {"type": "input_text", "text": "a.png"},
                        {"type": "input_image", "image_url": "data:image/png;base64,AA"},
                    ],
                },
                output("c2", "a.png"),
                user("thanks"),
            ]
        },
        [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [tool_call("c1", "view_image"), tool_call("c2")],
            },
            {
                "role": "tool",
                "tool_call_id": "c1",
                "content": "a.png\n(The output's images follow in the next user message.)",
            },
            {"role": "tool", "tool_call_id": "c2", "content": "a.png"},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}
                ],
            },
            {"role": "user", "content": "thanks"},
        ],
    ),
    (
        "reasoning items dropped",
        {
            "input": [
                user("q"),
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"},
                assistant("a"),
            ]
        },
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
    ),
    (
        "custom tool call and its output",
        {
            "input": [
                user("patch it"),
                {
                    "type": "custom_tool_call",
                    "call_id": "p1",
                    "name": "apply_patch",
                    "input": "*** Begin Patch\n*** End Patch",
                },
                {"type": "custom_tool_call_output", "call_id": "p1", "output": "Done!"},
            ]
        },
        [
            {"role": "user", "content": "patch it"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    tool_call(
                        "p1", "apply_patch", compact({"input": "*** Begin Patch\n*** End Patch"})
                    )
                ],
            },
            {"role": "tool", "tool_call_id": "p1", "content": "Done!"},
        ],
    ),
]


@pytest.mark.parametrize(
    ("payload", "messages"), [c[1:] for c in MESSAGE_CASES], ids=[c[0] for c in MESSAGE_CASES]
)
def test_messages(payload: Json, messages: list[Json]) -> None:
    """Instructions and input items become chat messages as the module's table says."""
    assert chat(payload)["messages"] == messages


def test_history_goes_between_instructions_and_input() -> None:
    """With previous_response_id, the stored items come after this request's instructions
    and before its input, and a call in them merges like any other."""
    history = [user("list files"), assistant("Sure."), call("c1")]
    body = chat({"instructions": "Sys", "input": [output("c1", "x")]}, history=history)
    assert body["messages"] == [
        {"role": "system", "content": "Sys"},
        {"role": "user", "content": "list files"},
        {"role": "assistant", "content": "Sure.", "tool_calls": [tool_call("c1")]},
        {"role": "tool", "tool_call_id": "c1", "content": "x"},
    ]


REFUSED: list[tuple[str, Json, str]] = [
    ("unknown item type", {"input": [user("a"), {"type": "web_search_call"}]}, "input[1].type"),
    ("unknown role", {"input": [{"role": "critic", "content": "x"}]}, "input[0].role"),
    (
        "image by file_id",
        {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
        "input[0].content[0].file_id",
    ),
    (
        "input_file",
        {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
        "input[0].content[0]",
    ),
    (
        "image outside a user message",
        {
            "input": [
                {
                    "role": "assistant",
                    "content": [{"type": "input_image", "image_url": "https://x/i.png"}],
                }
            ]
        },
        "input[0].content[0]",
    ),
    (
        "call without call_id",
        {"input": [{"type": "function_call", "name": "f"}]},
        "input[0].call_id",
    ),
    ("background", {"input": "x", "background": True}, "background"),
    ("conversation", {"input": "x", "conversation": "conv_1"}, "conversation"),
    ("input of the wrong type", {"input": 3}, "input"),
    ("no input at all", {}, "input"),
    (
        "unknown text format",
        {"input": "x", "text": {"format": {"type": "yaml"}}},
        "text.format.type",
    ),
]


@pytest.mark.parametrize(
    ("payload", "param"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_refused(payload: Json, param: str) -> None:
    """A body a chat endpoint cannot serve raises TranslationError naming the field."""
    with pytest.raises(TranslationError) as caught:
        chat(payload)
    assert caught.value.param == param


# -- request(): tools and settings --------------------------------------------------------


def test_tools() -> None:
    """Function tools keep their schema, a freeform custom tool becomes a function taking
    one string ``input`` described by its grammar, hosted tools are left out and named."""
    payload = {"input": "x", "tools": [SHELL, APPLY_PATCH, {"type": "web_search"}]}
    translated = rtc.request(payload, "m", SELF_HOSTED)
    shell, patch = translated.body["tools"]
    assert shell == {
        "type": "function",
        "function": {
            "name": "shell",
            "description": "Run a command.",
            "parameters": SHELL["parameters"],
            "strict": False,
        },
    }
    assert patch["function"]["name"] == "apply_patch"
    assert patch["function"]["description"] == "Edit files."
    parameters = patch["function"]["parameters"]
    assert parameters["required"] == ["input"]
    assert parameters["properties"]["input"]["type"] == "string"
    assert 'start: "*** Begin Patch"' in parameters["properties"]["input"]["description"]
    assert translated.dropped == ("tools.web_search",)


TOOL_CHOICES: list[tuple[Any, Any]] = [
    ("auto", "auto"),
    ("none", "none"),
    ("required", "required"),
    ({"type": "function", "name": "shell"}, {"type": "function", "function": {"name": "shell"}}),
    (
        {"type": "custom", "name": "apply_patch"},
        {"type": "function", "function": {"name": "apply_patch"}},
    ),
]


@pytest.mark.parametrize(("choice", "expected"), TOOL_CHOICES)
def test_tool_choice(choice: Any, expected: Any) -> None:
    """tool_choice keeps its meaning in chat's shape."""
    body = chat({"input": "x", "tools": [SHELL, APPLY_PATCH], "tool_choice": choice})
    assert body["tool_choice"] == expected


def test_tool_settings_need_tools() -> None:
    """With every tool left out, tool_choice and parallel_tool_calls are not sent (chat
    endpoints refuse them without tools), and a forced choice is named as dropped."""
    payload = {
        "input": "x",
        "tools": [{"type": "file_search", "vector_store_ids": ["v"]}],
        "tool_choice": "required",
        "parallel_tool_calls": False,
    }
    translated = rtc.request(payload, "m", SELF_HOSTED)
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & translated.body.keys()
    assert translated.dropped == ("tools.file_search", "tool_choice")
    with_tools = chat({**payload, "tools": [SHELL]})
    assert with_tools["parallel_tool_calls"] is False


FORMATS: list[tuple[Any, Any]] = [
    ({"format": {"type": "text"}}, None),
    ({"format": {"type": "json_object"}}, {"type": "json_object"}),
    (
        {
            "format": {
                "type": "json_schema",
                "name": "p",
                "schema": {"type": "object"},
                "strict": True,
            }
        },
        {
            "type": "json_schema",
            "json_schema": {"name": "p", "schema": {"type": "object"}, "strict": True},
        },
    ),
]


@pytest.mark.parametrize(("text", "expected"), FORMATS)
def test_text_format(text: Json, expected: Any) -> None:
    """text.format becomes response_format; plain text needs none."""
    assert chat({"input": "x", "text": text}).get("response_format") == expected


SETTINGS: list[tuple[str, Json, Any, Json, tuple[str, ...]]] = [
    (
        "sampling, cap and user",
        {"temperature": 0.2, "top_p": 0.9, "max_output_tokens": 50, "user": "u1"},
        SELF_HOSTED,
        {"temperature": 0.2, "top_p": 0.9, "max_tokens": 50, "user": "u1"},
        (),
    ),
    (
        "OpenAI's cap field, safety_identifier as user",
        {"max_output_tokens": 50, "safety_identifier": "s1"},
        OPENAI,
        {"max_completion_tokens": 50, "user": "s1"},
        (),
    ),
    (
        "reasoning effort where the dialect takes it",
        {"reasoning": {"effort": "high", "summary": "auto"}},
        GEMINI,
        {"reasoning_effort": "high"},
        (),
    ),
    (
        "reasoning effort dropped elsewhere",
        {"reasoning": {"effort": "high"}},
        SELF_HOSTED,
        {},
        ("reasoning",),
    ),
    (
        "streaming asks for usage",
        {"stream": True},
        SELF_HOSTED,
        {"stream": True, "stream_options": {"include_usage": True}},
        (),
    ),
    (
        "relaygate's and meaningless fields go silently, others are named",
        {
            "store": False,
            "previous_response_id": "resp_1",
            "include": ["reasoning.encrypted_content"],
            "truncation": "auto",
            "metadata": {"a": "b"},
            "background": False,
            "prompt_cache_key": "k",
            "service_tier": "auto",
            "top_logprobs": 3,
            "text": {"verbosity": "low"},
        },
        SELF_HOSTED,
        {},
        ("text.verbosity", "top_logprobs"),
    ),
]


@pytest.mark.parametrize(
    ("payload", "dialect", "expected", "dropped"),
    [c[1:] for c in SETTINGS],
    ids=[c[0] for c in SETTINGS],
)
def test_settings(payload: Json, dialect: Any, expected: Json, dropped: tuple[str, ...]) -> None:
    """Settings map to the dialect's fields; what the endpoint cannot take is named."""
    translated = rtc.request({"input": "x", **payload}, "up", dialect)
    extra = {k: v for k, v in translated.body.items() if k not in ("model", "messages")}
    assert translated.body["model"] == "up"
    assert extra == expected
    assert translated.dropped == dropped


def test_payload_not_mutated() -> None:
    """request() leaves the client's body (and the history) as it found them."""
    payload = {
        "instructions": "s",
        "input": [user("a"), assistant("b"), call("c1"), output("c1")],
        "tools": [SHELL, APPLY_PATCH],
        "tool_choice": {"type": "function", "name": "shell"},
        "text": {"format": {"type": "json_schema", "name": "x", "schema": {}}},
        "stream": True,
    }
    history = [user("0"), assistant("1"), call("c0")]
    before = copy.deepcopy((payload, history))
    rtc.request(payload, "m", OPENAI, history)
    rtc.request(payload, "m", OPENAI, history)
    assert (payload, history) == before


def test_input_items() -> None:
    """A string input is stored as one user message item; a list is stored as it is."""
    assert rtc.input_items({"input": "hi"}) == [user("hi")]
    items = [user("a"), call("c1")]
    assert rtc.input_items({"input": items}) == items
    assert rtc.input_items({}) == []
    with pytest.raises(TranslationError):
        rtc.input_items({"input": ["nope"]})


# -- response() ---------------------------------------------------------------------------


def completion(message: Json, finish: str = "stop", usage: Json | None = None) -> Json:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "up",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
        ],
        "usage": usage or {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def answer(body: Json, request: Json | None = None) -> Json:
    result = rtc.response(
        body, "public", request=request or {"input": "x"}, response_id="resp_r1", created_at=100
    )
    Response.model_validate(result)
    return result


def test_response_text() -> None:
    """A text answer is one completed message item, with usage and the defaults echoed."""
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 2},
    }
    result = answer(completion({"content": "Hello"}, usage=usage))
    assert result["id"] == "resp_r1"
    assert result["object"] == "response"
    assert result["created_at"] == 100
    assert result["model"] == "public"
    assert result["status"] == "completed"
    assert result["error"] is None and result["incomplete_details"] is None
    assert result["output"] == [
        {
            "type": "message",
            "id": "msg_r1_0",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Hello", "annotations": []}],
        }
    ]
    assert result["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 15,
    }
    assert result["tool_choice"] == "auto"
    assert result["parallel_tool_calls"] is True
    assert result["text"] == {"format": {"type": "text"}}
    assert result["metadata"] == {}
    assert result["truncation"] == "disabled"
    assert result["tools"] == []
    assert Response.model_validate(result).output_text == "Hello"


def test_response_echoes_request() -> None:
    """The request's settings come back on the Response, as the API echoes them."""
    request = {
        "input": "x",
        "instructions": "Be brief.",
        "tools": [SHELL],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "temperature": 0.3,
        "max_output_tokens": 99,
        "previous_response_id": "resp_0",
        "reasoning": {"effort": "low"},
        "text": {"format": {"type": "json_object"}},
        "metadata": {"k": "v"},
        "store": False,
    }
    result = answer(completion({"content": "{}"}), request)
    for key in ("instructions", "tools", "tool_choice", "parallel_tool_calls", "temperature"):
        assert result[key] == request[key]
    assert result["max_output_tokens"] == 99
    assert result["previous_response_id"] == "resp_0"
    assert result["reasoning"] == {"effort": "low", "summary": None}
    assert result["text"] == {"format": {"type": "json_object"}}
    assert result["metadata"] == {"k": "v"}
    assert result["store"] is False


def test_response_reasoning_and_calls() -> None:
    """Reasoning, text and tool calls become reasoning, message and function_call items in
    that order, with ids derived from the response id."""
    message = {
        "content": "Running.",
        "reasoning_content": "I should list.",
        "tool_calls": [tool_call("c1"), tool_call("c2", arguments='{"cmd":"pwd"}')],
    }
    result = answer(completion(message, "tool_calls"), {"input": "x", "tools": [SHELL]})
    assert result["output"] == [
        {
            "type": "reasoning",
            "id": "rs_r1_0",
            "summary": [{"type": "summary_text", "text": "I should list."}],
        },
        {
            "type": "message",
            "id": "msg_r1_1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Running.", "annotations": []}],
        },
        {
            "type": "function_call",
            "id": "fc_r1_2",
            "call_id": "c1",
            "name": "shell",
            "arguments": '{"cmd":"ls"}',
            "status": "completed",
        },
        {
            "type": "function_call",
            "id": "fc_r1_3",
            "call_id": "c2",
            "name": "shell",
            "arguments": '{"cmd":"pwd"}',
            "status": "completed",
        },
    ]


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_response_incomplete(finish: str, reason: str) -> None:
    """A completion cut by the cap or a filter is an incomplete Response, saying why."""
    result = answer(completion({"content": "Hel"}, finish))
    assert result["status"] == "incomplete"
    assert result["incomplete_details"] == {"reason": reason}


def test_custom_tool_round_trip() -> None:
    """apply_patch: asked for as a function, answered as a custom_tool_call with the raw
    input, and sent back next turn as the same function call with its output."""
    request = {"input": "fix it", "tools": [APPLY_PATCH, SHELL]}
    sent = chat(request)["tools"][0]["function"]
    assert sent["name"] == "apply_patch"
    patch = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch"
    arguments = compact({"input": patch})
    result = answer(
        completion({"tool_calls": [tool_call("p1", "apply_patch", arguments)]}), request
    )
    item = result["output"][0]
    assert item == {
        "type": "custom_tool_call",
        "id": "ctc_r1_0",
        "call_id": "p1",
        "name": "apply_patch",
        "input": patch,
    }
    history = [*rtc.input_items(request), *result["output"]]
    follow = {"input": [{"type": "custom_tool_call_output", "call_id": "p1", "output": "Done"}]}
    messages = chat({**follow, "tools": [APPLY_PATCH]}, history=history)["messages"]
    assert messages == [
        {"role": "user", "content": "fix it"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [tool_call("p1", "apply_patch", arguments)],
        },
        {"role": "tool", "tool_call_id": "p1", "content": "Done"},
    ]


def test_custom_tool_raw_arguments() -> None:
    """A model that answers a custom tool with raw text rather than {"input": …} has that
    text taken as the input."""
    request = {"input": "x", "tools": [APPLY_PATCH]}
    raw = "*** Begin Patch\n*** End Patch"
    result = answer(completion({"tool_calls": [tool_call("p1", "apply_patch", raw)]}), request)
    assert result["output"][0]["input"] == raw


# -- error() ------------------------------------------------------------------------------

ERRORS: list[tuple[str, int, Any, Json]] = [
    (
        "already OpenAI's shape",
        400,
        {"error": {"message": "bad", "type": "invalid_request_error", "param": "x", "code": "c"}},
        {"message": "bad", "type": "invalid_request_error", "param": "x", "code": "c"},
    ),
    (
        "OpenAI's shape with fields missing",
        429,
        {"error": {"message": "slow down"}},
        {"message": "slow down", "type": "invalid_request_error", "param": None, "code": None},
    ),
    (
        "FastAPI detail",
        404,
        {"detail": "Not Found"},
        {"message": "Not Found", "type": "invalid_request_error", "param": None, "code": None},
    ),
    (
        "FastAPI validation errors",
        422,
        {"detail": [{"loc": ["body", "model"], "msg": "Field required", "type": "missing"}]},
        {"message": "Field required", "type": "invalid_request_error", "param": None, "code": None},
    ),
    (
        "vLLM's flat error",
        400,
        {"object": "error", "message": "too long", "type": "BadRequestError", "code": 400},
        {"message": "too long", "type": "invalid_request_error", "param": None, "code": None},
    ),
    (
        "a string error",
        503,
        {"error": "loading model"},
        {"message": "loading model", "type": "server_error", "param": None, "code": None},
    ),
    (
        "no body",
        502,
        None,
        {
            "message": "The model endpoint answered with HTTP 502.",
            "type": "server_error",
            "param": None,
            "code": None,
        },
    ),
]


@pytest.mark.parametrize(
    ("status", "body", "expected"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS]
)
def test_error(status: int, body: Any, expected: Json) -> None:
    """Upstream errors come out in OpenAI's error shape, typed by status."""
    assert rtc.error(status, body) == {"error": expected}
