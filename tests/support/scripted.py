"""A scripted upstream that speaks only OpenAI chat completions, for agent loops end to end.

A test writes the model's side of a conversation as turns (a text, or tool calls) and
rules that pick a turn from the request, so an agent's loop plays out the same however many
side calls (titles, summaries) the agent makes::

    script = Script(["qwen3-coder"])
    script.when(lambda r: not r.tool_names, Turn.say("A title"))
    script.when(lambda r: bool(r.tool_outputs("Bash")), Turn.say("Done."))
    script.then(Turn.call("Bash", command="echo hi"))
    upstream = ScriptedUpstream(script).start()

Like the servers it stands in for (vLLM, llama.cpp, SGLang: FastAPI apps), it serves
``GET /v1/models`` and ``POST /v1/chat/completions`` and answers anything else 404
``{"detail": "Not Found"}``. A body that is not a chat completion (another API's fields,
a tool message answering no call) is refused 400 and noted in ``Script.problems``.
Shapes: https://platform.openai.com/docs/api-reference/chat/create ,
https://platform.openai.com/docs/api-reference/chat/streaming .
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.servers import ServerThread
from tests.support.upstream import Seen

Json = dict[str, Any]

ROLES = {"system", "developer", "user", "assistant", "tool"}
TOOL_CHOICES = {"auto", "none", "required"}
FOREIGN_FIELDS = {
    # Anthropic Messages
    "system",
    "thinking",
    "stop_sequences",
    "context_management",
    "output_config",
    "anthropic_version",
    "anthropic_beta",
    # OpenAI Responses
    "input",
    "instructions",
    "previous_response_id",
    "include",
    "text",
    "reasoning",
    "max_output_tokens",
    "truncation",
    "client_metadata",
}
PIECES = 3
"""How many chunks a streamed text, or a tool call's arguments, is cut into."""


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: Json


@dataclass(frozen=True)
class Turn:
    """One answer of the model: ``text``, ``calls`` to tools, or both (text first)."""

    text: str = ""
    calls: tuple[ToolCall, ...] = ()

    @classmethod
    def say(cls, text: str) -> Turn:
        return cls(text=text)

    @classmethod
    def call(cls, name: str, /, **arguments: Any) -> Turn:
        return cls(calls=(ToolCall(name, arguments),))


@dataclass(frozen=True)
class ChatRequest:
    """A chat-completions body as the upstream received it, with what rules ask of it."""

    body: Json

    @property
    def messages(self) -> list[Json]:
        messages = self.body.get("messages")
        return messages if isinstance(messages, list) else []

    @property
    def tool_names(self) -> list[str]:
        """The names of the function tools offered."""
        tools = self.body.get("tools") or []
        return [
            t["function"].get("name", "")
            for t in tools
            if isinstance(t, dict)
            and t.get("type") == "function"
            and isinstance(t.get("function"), dict)
        ]

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True

    @property
    def include_usage(self) -> bool:
        options = self.body.get("stream_options") or {}
        return self.stream and options.get("include_usage") is True

    def tool_outputs(self, name: str | None = None) -> list[str]:
        """The text of every tool message, or only of those answering calls of ``name``."""
        names: dict[str, str] = {}
        outputs = []
        for message in self.messages:
            if not isinstance(message, dict):
                continue
            for call in message.get("tool_calls") or []:
                if isinstance(call, dict) and isinstance(call.get("function"), dict):
                    names[str(call.get("id"))] = str(call["function"].get("name"))
            if message.get("role") == "tool" and (
                name is None or names.get(message.get("tool_call_id", "")) == name
            ):
                outputs.append(text_of(message.get("content")))
        return outputs


Rule = Callable[[ChatRequest], bool]


class Script:
    """What the model answers: the first rule whose predicate holds, else the next queued
    turn, else ``otherwise``. Everything the upstream received is in ``requests``; the
    bodies it refused, and why, in ``problems``."""

    def __init__(self, models: Iterable[str], otherwise: Turn | None = None) -> None:
        self.models = list(models)
        self.otherwise = otherwise or Turn.say("The script has no more turns.")
        self.rules: list[tuple[Rule, Turn]] = []
        self.turns: deque[Turn] = deque()
        self.requests: list[Seen] = []
        self.answered: list[Turn] = []
        self.problems: list[str] = []

    def when(self, rule: Rule, turn: Turn) -> Script:
        """Answer ``turn`` to every request ``rule`` holds for (rules are tried in order)."""
        self.rules.append((rule, turn))
        return self

    def then(self, *turns: Turn) -> Script:
        """Queue ``turns``, each answered once, in order, when no rule holds."""
        self.turns.extend(turns)
        return self

    def answer(self, request: ChatRequest) -> Turn:
        turn = next((turn for rule, turn in self.rules if rule(request)), None)
        if turn is None:
            turn = self.turns.popleft() if self.turns else self.otherwise
        self.answered.append(turn)
        return turn

    def chat_requests(self) -> list[ChatRequest]:
        """The chat-completions bodies received, in order."""
        bodies = [
            _parsed(seen.body) for seen in self.requests if seen.path == "/v1/chat/completions"
        ]
        return [ChatRequest(body) for body in bodies if isinstance(body, dict)]

    def routes(self) -> list[tuple[str, str]]:
        """(method, path) of every request received, in order."""
        return [(seen.method, seen.path) for seen in self.requests]


class ScriptedUpstream:
    """``script`` served on loopback; ``url`` is its API base (``/v1``)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.server = ServerThread(make_scripted(script))
        self.url = self.server.url + "/v1"

    def start(self) -> ScriptedUpstream:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()


def make_scripted(script: Script) -> Starlette:
    # Every handler runs on the server's one event loop: the script needs no lock.

    async def record(request: Request) -> Seen:
        seen = Seen(
            request.method,
            request.url.path,
            request.url.query,
            dict(request.headers),
            await request.body(),
        )
        script.requests.append(seen)
        return seen

    async def models(request: Request) -> Response:
        await record(request)
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "scripted"}
            for m in script.models
        ]
        return JSONResponse({"object": "list", "data": data})

    async def chat(request: Request) -> Response:
        body = _parsed((await record(request)).body)
        if not isinstance(body, dict):
            return refuse(script, ["the body is not a JSON object"])
        if body.get("model") not in script.models:
            message = f"The model `{body.get('model')}` does not exist."
            return JSONResponse(error(message, "NotFoundError", "model"), 404)
        problems = problems_with(body)
        if problems:
            return refuse(script, problems)
        chat_request = ChatRequest(body)
        turn = script.answer(chat_request)
        number = len(script.requests)
        if chat_request.stream:
            return StreamingResponse(
                stream(turn, chat_request, number), media_type="text/event-stream"
            )
        return JSONResponse(completion(turn, chat_request, number))

    async def not_found(request: Request) -> Response:
        await record(request)
        return JSONResponse({"detail": "Not Found"}, 404)

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/{path:path}", not_found, methods=methods),
        ]
    )


def error(message: str, kind: str = "invalid_request_error", param: str | None = None) -> Json:
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def refuse(script: Script, problems: list[str]) -> Response:
    script.problems.extend(problems)
    return JSONResponse(error("; ".join(problems)), 400)


def text_of(content: Any) -> str:
    """A message's content as text: a string, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def problems_with(body: Json) -> list[str]:
    """Why ``body`` is not a chat-completions request (nothing when it is one)."""
    problems = [f"unknown field {name!r}" for name in sorted(FOREIGN_FIELDS & body.keys())]
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return [*problems, "'messages' must be a non-empty list"]
    calls: set[str] = set()
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            problems.append(f"{where} has no role of {sorted(ROLES)}")
            continue
        content = message.get("content")
        if not (content is None or isinstance(content, str) or _parts(content)):
            problems.append(f"{where}.content is neither a string nor a list of parts")
        for call in message.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if (
                not isinstance(function, dict)
                or call.get("type") != "function"
                or not isinstance(call.get("id"), str)
                or not isinstance(function.get("name"), str)
                or not _json_object(function.get("arguments"))
            ):
                problems.append(f"{where}.tool_calls has a call that is not a function call")
                continue
            calls.add(call["id"])
        if message["role"] == "tool" and message.get("tool_call_id") not in calls:
            problems.append(f"{where} answers no earlier tool call")
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") != "function" or not isinstance(function, dict):
            problems.append(f"a tool is not a function tool: {json.dumps(tool)[:200]}")
        elif not isinstance(function.get("name"), str):
            problems.append("a function tool has no name")
    choice = body.get("tool_choice")
    if choice is not None and not (
        choice in TOOL_CHOICES if isinstance(choice, str) else _function_choice(choice)
    ):
        problems.append(f"'tool_choice' {json.dumps(choice)} is not a chat-completions choice")
    if "stream_options" in body and body.get("stream") is not True:
        problems.append("'stream_options' is only allowed when 'stream' is enabled")
    return problems


def _parsed(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _parts(content: Any) -> bool:
    return isinstance(content, list) and all(
        isinstance(p, dict) and isinstance(p.get("type"), str) for p in content
    )


def _json_object(arguments: Any) -> bool:
    try:
        return isinstance(arguments, str) and isinstance(json.loads(arguments), dict)
    except ValueError:
        return False


def _function_choice(choice: Any) -> bool:
    return (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and isinstance(choice.get("function"), dict)
        and isinstance(choice["function"].get("name"), str)
    )


def _pieces(text: str, count: int = PIECES) -> list[str]:
    size = max(1, -(-len(text) // count))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _call_id(number: int, index: int) -> str:
    return f"call_{number}_{index}"


def _usage(turn: Turn, request: ChatRequest) -> Json:
    prompt = max(1, len(json.dumps(request.messages)) // 4)
    arguments = sum(len(json.dumps(call.arguments)) for call in turn.calls)
    output = max(1, (len(turn.text) + arguments) // 4)
    return {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output}


def _finish_reason(turn: Turn) -> str:
    return "tool_calls" if turn.calls else "stop"


def completion(turn: Turn, request: ChatRequest, number: int) -> Json:
    """The whole (non-streamed) answer."""
    message: Json = {"role": "assistant", "content": turn.text or None}
    if turn.calls:
        message["tool_calls"] = [
            {
                "id": _call_id(number, index),
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for index, call in enumerate(turn.calls)
        ]
    return {
        "id": f"chatcmpl-scripted-{number}",
        "object": "chat.completion",
        "created": 0,
        "model": request.body["model"],
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish_reason(turn),
            }
        ],
        "usage": _usage(turn, request),
    }


async def stream(turn: Turn, request: ChatRequest, number: int) -> AsyncIterator[bytes]:
    """The answer as OpenAI streams it: a role chunk, the text in pieces, each tool call
    opened with its id and name and its arguments in pieces, a finish chunk; with
    ``include_usage`` every chunk has ``"usage": null`` and a last one with no choices
    carries the usage."""

    def chunk(delta: Json, finish_reason: str | None = None) -> bytes:
        data: Json = {
            "id": f"chatcmpl-scripted-{number}",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": request.body["model"],
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if request.include_usage:
            data["usage"] = None
        return f"data: {json.dumps(data)}\n\n".encode()

    yield chunk({"role": "assistant", "content": ""})
    for piece in _pieces(turn.text):
        yield chunk({"content": piece})
    for index, call in enumerate(turn.calls):
        opened = {"name": call.name, "arguments": ""}
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": _call_id(number, index),
                        "type": "function",
                        "function": opened,
                    }
                ]
            }
        )
        for piece in _pieces(json.dumps(call.arguments)):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, _finish_reason(turn))
    if request.include_usage:
        last = {
            "id": f"chatcmpl-scripted-{number}",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": request.body["model"],
            "choices": [],
            "usage": _usage(turn, request),
        }
        yield f"data: {json.dumps(last)}\n\n".encode()
    yield b"data: [DONE]\n\n"
