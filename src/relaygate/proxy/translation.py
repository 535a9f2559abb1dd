"""Requests translated to the API their endpoint serves, and answers translated back.

=================================  ==========================  ======================
the client sends                   to an endpoint of type       relaygate sends
=================================  ==========================  ======================
``POST /v1/messages``              openai, google (messages)    ``/chat/completions``
``POST /v1/messages/count_tokens`` openai, google (messages)    ``/tokenize`` or estimate
``POST /v1/responses``             openai, google (responses)   ``/chat/completions``
``POST /v1/chat/completions``      anthropic (chat: translate)  ``/messages``
=================================  ==========================  ======================

An endpoint's mode for each API is ``native`` (forwarded as sent), ``translate``, or
``auto``: natively, until the endpoint answers 404 or 405 for the route; then the same
request is translated at once and so are later ones, until the endpoint's next sync
(:mod:`relaygate.services.api_findings`). ``auto`` on a ``google`` endpoint translates
(Gemini's OpenAI layer has neither API); on an ``anthropic`` endpoint, chat completions go
to Anthropic's OpenAI-compatible layer unless ``chat_api`` is ``translate``.

The mappings themselves are :mod:`relaygate.translate`'s; here they meet the request
path: a :class:`Conversion` per attempt, and a :class:`Reply` that turns the endpoint's
answer into the client's API as it arrives (event by event for streams; a JSON answer,
at most ``max_body`` bytes, once whole).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from relaygate.errors import BadRequest, TranslationError
from relaygate.proxy.replies import JsonReply, Reply, StreamReply
from relaygate.services.api_findings import ApiFindings
from relaygate.services.stored_responses import RESPONSE_ID, ResponseStore, Saved
from relaygate.snapshot import Principal
from relaygate.targets import Target, TargetApis
from relaygate.translate import chat_to_messages, messages_to_chat, responses_to_chat
from relaygate.translate.base import Json

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
RESPONSES = "/v1/responses"
CHAT = "/v1/chat/completions"
NATIVE, TRANSLATE, PROBE = "native", "translate", "probe"
"""How one attempt goes: as sent, translated, or as sent but translated on a 404/405."""
# What ``auto`` finds is kept per route: a server may serve /messages and not its
# count_tokens.
_API_OF = {MESSAGES: "messages", COUNT_TOKENS: "count_tokens", RESPONSES: "responses"}
_SAFE_NAME = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-[]")
_MOST_DROPPED = 20
TRANSLATED_HEADER = b"x-relaygate-translated"
"""On a translated answer: the route the endpoint was sent (e.g. ``/chat/completions``)."""
DROPPED_HEADER = b"x-relaygate-dropped"
"""On a translated answer: the request's fields the endpoint's API could not take."""
TOKEN_COUNT_HEADER = b"x-relaygate-token-count"
"""On ``count_tokens`` through translation: ``tokenizer`` or ``estimate``."""


@dataclass(slots=True)
class Conversion:
    """One attempt's request translated for its target: the ``path`` (below the
    endpoint URL) and JSON ``body`` to send, the client's fields ``dropped``, and how to
    make the :class:`Reply` for the endpoint's status and content type (once made, it is
    ``answer``). ``local`` is a whole answer made without the endpoint (a token count
    estimated)."""

    path: str
    body: bytes
    reply: Callable[[int, str], Reply]
    dropped: tuple[str, ...] = ()
    local: bytes | None = None
    answer: Reply | None = None
    helper: bool = False
    """A request relaygate makes for its own answer (a tokenizer's count), below the
    server's root rather than the endpoint URL (``/v1`` left out): its failures never
    count against the endpoint's health nor fail over."""

    def make_reply(self, status: int, content_type: str) -> Reply:
        """The reply for the endpoint's answer, with relaygate's translation headers."""
        reply = self.answer = self.reply(status, content_type)
        reply.headers.append((TRANSLATED_HEADER, self.path.encode()))
        # The names come from the client's body: only plain ones, a few, go in a header.
        named = [n for n in self.dropped if len(n) <= 64 and set(n) <= _SAFE_NAME]
        if named:
            header = ", ".join(dict.fromkeys(named[:_MOST_DROPPED]))
            reply.headers.append((DROPPED_HEADER, header.encode()))
        return reply

    def url(self, base_url: str) -> str:
        """Where to send it, for an endpoint at ``base_url``."""
        if self.helper and base_url.endswith("/v1"):
            return base_url[:-3] + self.path
        return base_url + self.path


@dataclass(slots=True)
class Turn:
    """What a Responses request translated needs besides its body: the conversation
    before it (``previous_response_id``'s), and the new response's id and time."""

    history: list[Any]
    response_id: str
    created_at: int


class Translation:
    """Chooses, per target, whether a request goes as sent or translated, remembers
    what ``auto`` found (in this process at once, in the database through
    ``findings``), builds the translated requests and stores translated responses in
    ``responses``. Answers are held at most ``max_body`` bytes; stream events at most
    ``max_event``."""

    def __init__(
        self,
        findings: ApiFindings,
        responses: ResponseStore | None,
        *,
        max_event: int,
        max_body: int,
    ) -> None:
        self._findings = findings
        self._responses = responses
        self._max_event = max_event
        self._max_body = max_body
        # Endpoint id → (the endpoint's TargetApis when found, API → mode): a finding
        # holds until the endpoint is loaded again (its findings stored, or cleared).
        self._found: dict[int, tuple[TargetApis, dict[str, str]]] = {}

    @property
    def responses(self) -> ResponseStore | None:
        """Where translated responses are stored for their owners (None: nowhere)."""
        return self._responses

    def found(self, target: Target, api: str) -> str | None:
        """What ``auto`` found of ``api`` on ``target``'s endpoint, if anything."""
        memo = self._found.get(target.endpoint_id)
        if memo is not None and memo[0] is target.apis:
            mode = memo[1].get(api)
            if mode is not None:
                return mode
        return target.apis.finding(api)

    def note(self, target: Target, api: str, mode: str) -> None:
        """Remember that ``api`` on ``target``'s endpoint is ``mode``."""
        if self.found(target, api) == mode:
            return
        memo = self._found.get(target.endpoint_id)
        if memo is None or memo[0] is not target.apis:
            memo = (target.apis, {})
            self._found[target.endpoint_id] = memo
        memo[1][api] = mode
        self._findings.note(target.endpoint_id, api, mode)

    def mode(self, path: str, target: Target, payload: Json) -> str:
        """How a request of ``payload`` on ``path`` goes to ``target``: :data:`NATIVE`,
        :data:`TRANSLATE` or :data:`PROBE`. A Responses request continuing a stored
        response (``previous_response_id``) is always translated: the conversation is
        relaygate's, never the provider account's."""
        apis = target.apis
        if path == CHAT:
            return TRANSLATE if apis.type == "anthropic" and apis.chat == TRANSLATE else NATIVE
        api = _API_OF.get(path)
        if api == "responses" and payload.get("previous_response_id") is not None:
            return TRANSLATE
        if api is None or apis.type == "anthropic":
            return NATIVE
        configured = apis.responses if api == "responses" else apis.messages
        if configured != "auto":
            return configured
        if apis.type == "google":
            return TRANSLATE
        return self.found(target, api) or PROBE

    @staticmethod
    def api_of(path: str) -> str:
        """The name a finding about ``path`` is noted under (``messages``,
        ``count_tokens``, ``responses``)."""
        return _API_OF[path]

    async def turn(self, path: str, payload: Json, principal: Principal) -> Turn | None:
        """For a Responses request: the conversation it continues (raises
        :class:`BadRequest` for a ``previous_response_id`` that is not the caller's) and
        the id of the response it makes; None for other routes."""
        if path != RESPONSES:
            return None
        previous = payload.get("previous_response_id")
        history: list[Any] = []
        if previous is not None:
            if not isinstance(previous, str) or not RESPONSE_ID.fullmatch(previous):
                raise BadRequest(
                    "previous_response_id must be the id of one of your responses",
                    param="previous_response_id",
                )
            if self._responses is None:
                raise BadRequest("relaygate stores no responses here", param="store")
            history = await self._responses.history(principal.user_id, previous)
        return Turn(history, "resp_" + secrets.token_hex(24), int(time.time()))

    def convert(
        self,
        path: str,
        payload: Json,
        target: Target,
        name: str,
        turn: Turn | None,
        *,
        usage_asked: bool = False,
    ) -> Conversion:
        """``payload`` (sent on ``path``) translated for ``target``, answered under the
        public model name ``name``; ``usage_asked``: the client's own stream asked for
        the usage chunk. Raises :class:`BadRequest` for a body that cannot be
        translated."""
        try:
            if path == MESSAGES:
                return self._messages(payload, target, name)
            if path == COUNT_TOKENS:
                return self._count_tokens(payload, target)
            if path == RESPONSES:
                assert turn is not None
                return self._responses_api(payload, target, name, turn)
            return self._chat(payload, target, name, usage_asked)
        except TranslationError as exc:
            raise BadRequest(exc.message, param=exc.param) from None
        except (orjson.JSONEncodeError, RecursionError):
            raise BadRequest(
                "the request body is nested too deeply to translate (at most 255 levels)"
            ) from None

    def _messages(self, payload: Json, target: Target, name: str) -> Conversion:
        translated = messages_to_chat.request(payload, target.upstream_id, target.apis.dialect)

        def reply(status: int, content_type: str) -> Reply:
            if 200 <= status < 300 and content_type.startswith("text/event-stream"):
                stream = messages_to_chat.Stream(name)
                return StreamReply(status, stream, self._max_event, self._max_body)
            return self._json(
                status, lambda body: messages_to_chat.response(body, name), messages_to_chat.error
            )

        return Conversion(
            "/chat/completions",
            orjson.dumps(translated.body),
            reply,
            translated.dropped,
        )

    def _responses_api(self, payload: Json, target: Target, name: str, turn: Turn) -> Conversion:
        translated = responses_to_chat.request(
            payload, target.upstream_id, target.apis.dialect, turn.history
        )
        ident, created = turn.response_id, turn.created_at

        def reply(status: int, content_type: str) -> Reply:
            if 200 <= status < 300 and content_type.startswith("text/event-stream"):
                stream = responses_to_chat.Stream(
                    name, request=payload, response_id=ident, created_at=created
                )
                return StreamReply(status, stream, self._max_event, self._max_body)
            return self._json(
                status,
                lambda body: responses_to_chat.response(
                    body, name, request=payload, response_id=ident, created_at=created
                ),
                responses_to_chat.error,
            )

        return Conversion(
            "/chat/completions",
            orjson.dumps(translated.body),
            reply,
            translated.dropped,
        )

    def _chat(self, payload: Json, target: Target, name: str, usage: bool) -> Conversion:
        translated = chat_to_messages.request(payload, target.upstream_id, target.apis.dialect)

        def reply(status: int, content_type: str) -> Reply:
            created = int(time.time())
            if 200 <= status < 300 and content_type.startswith("text/event-stream"):
                stream = chat_to_messages.Stream(name, include_usage=usage, created=created)
                return StreamReply(status, stream, self._max_event, self._max_body)
            return self._json(
                status,
                lambda body: chat_to_messages.response(body, name, created=created),
                chat_to_messages.error,
            )

        return Conversion("/messages", orjson.dumps(translated.body), reply, translated.dropped)

    def _count_tokens(self, payload: Json, target: Target) -> Conversion:
        estimate = messages_to_chat.estimate_tokens(payload)
        if self.found(target, "tokenize") == "missing":
            conversion = Conversion("/tokenize", b"", _never)
            conversion.local = orjson.dumps({"input_tokens": estimate})
            return conversion
        sized = {**payload, "max_tokens": 1}
        chat = messages_to_chat.request(sized, target.upstream_id, target.apis.dialect).body
        body = {"model": target.upstream_id, "messages": chat.get("messages", [])}
        if chat.get("tools"):
            body["tools"] = chat["tools"]

        def reply(status: int, content_type: str) -> Reply:
            def convert(status: int, answer: Any) -> tuple[int, Json]:
                count = _token_count(answer) if 200 <= status < 300 else None
                if status in (401, 403, 404, 405):
                    # No tokenizer there, or none this key may use: not asked again
                    # until the endpoint's next sync.
                    self.note(target, "tokenize", "missing")
                elif count is not None:
                    self.note(target, "tokenize", NATIVE)
                source = b"estimate" if count is None else b"tokenizer"
                made.headers.append((TOKEN_COUNT_HEADER, source))
                return 200, {"input_tokens": estimate if count is None else count}

            made = JsonReply(status, convert, self._max_body)
            return made

        # vLLM and SGLang serve /tokenize at the server's root, beside /v1.
        return Conversion("/tokenize", orjson.dumps(body), reply, helper=True)

    def _json(
        self,
        status: int,
        success: Callable[[Json], Json],
        error: Callable[[int, Any], Json],
    ) -> JsonReply:
        def convert(status: int, body: Any) -> tuple[int, Json]:
            if 200 <= status < 300:
                if isinstance(body, dict):
                    return status, success(body)
                return 502, error(
                    502,
                    {
                        "error": {
                            "message": "the endpoint's answer was not "
                            "a JSON object, or too large to translate"
                        }
                    },
                )
            return status, error(status, body)

        return JsonReply(status, convert, self._max_body)

    def finished(
        self,
        conversion: Conversion,
        payload: Json,
        principal: Principal,
        name: str,
        turn: Turn | None,
    ) -> None:
        """After a translated Responses answer: store it for its owner unless the
        request said ``store: false`` or it did not complete."""
        reply = conversion.answer
        if turn is None or reply is None or self._responses is None:
            return
        if payload.get("store") is False:
            return
        result = reply.result
        if not isinstance(result, dict) or result.get("status") not in ("completed", "incomplete"):
            return
        previous = payload.get("previous_response_id")
        self._responses.save(
            Saved(
                principal.user_id,
                previous if isinstance(previous, str) else None,
                name,
                responses_to_chat.input_items(payload),
                result,
            )
        )


def _token_count(answer: Any) -> int | None:
    """The count in a tokenizer's answer: vLLM's and SGLang's ``count``, or the length
    of llama.cpp's ``tokens``."""
    if not isinstance(answer, dict):
        return None
    count = answer.get("count")
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count
    tokens = answer.get("tokens")
    return len(tokens) if isinstance(tokens, list) else None


def _never(status: int, content_type: str) -> Reply:
    raise AssertionError("a local answer is never sent upstream")
