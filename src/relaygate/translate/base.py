"""What every direction of translation offers, and what it is told about the endpoint.

A direction is a module with:

- ``request(payload, upstream_model, dialect) -> Translated``: the client's JSON body
  (already parsed; never mutated) as the endpoint's. Raises :class:`TranslationError`
  (a 400 for the client) for a body that cannot be translated, naming the field.
- ``response(body, model, ...) -> dict``: the endpoint's whole JSON answer (a 2xx) as
  the client's, with ``model`` (the public name the client asked for) in it.
- ``error(status, body) -> dict``: the endpoint's error answer (any JSON or None) as an
  error in the client's API shape, for the same status.
- ``Stream(model, ...)``: turns the endpoint's server-sent events into the client's.
  ``event(ev)`` takes one :class:`relaygate.translate.sse.Event` and returns the bytes to
  send now (whole events, maybe none); ``end()`` is called when the endpoint's stream
  ended (cleanly or not) and returns what closes the client's stream; ``fail(message)``
  returns an error event in the client's API for a stream that broke off.

Everything is pure: no I/O, no clock but what is passed in.

What an endpoint answers is never trusted: any field may hold any JSON value. The readers
at the end of this module (:func:`obj`, :func:`array`, :func:`first`, :func:`string`,
:func:`count`) give a field's value when it has the type the API documents, and an absent
one otherwise, so that ``response``, ``error`` and every ``Stream`` method read any JSON
without an exception and still answer in the client's API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from relaygate.translate.sse import Event

Json = dict[str, Any]
"""A JSON object as the wire carries it (the APIs' own shapes, cited per module)."""

MAX_COUNT = 2**53 - 1
"""The largest count (tokens, an index) read: every JSON reader keeps it exact, and sums of
a few of them still fit the 64-bit integers the encoder writes."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """What the endpoint's chat-completions API takes beyond OpenAI's common core.

    ``top_k``: a ``top_k`` sampling parameter (vLLM, SGLang, llama.cpp, Ollama do;
    OpenAI and Gemini do not). ``reasoning_effort``: OpenAI's ``reasoning_effort``
    (``low``/``medium``/``high``; OpenAI and Gemini's OpenAI layer take it).
    ``max_tokens_field``: the name of the output cap, ``max_tokens`` or OpenAI's newer
    ``max_completion_tokens``.
    """

    top_k: bool = True
    reasoning_effort: bool = False
    max_tokens_field: str = "max_tokens"


SELF_HOSTED = Dialect()
OPENAI = Dialect(top_k=False, reasoning_effort=True, max_tokens_field="max_completion_tokens")
GEMINI = Dialect(top_k=False, reasoning_effort=True)


def dialect_for(provider_type: str, url: str) -> Dialect:
    """The dialect of an endpoint's chat completions: Gemini's for ``google`` endpoints,
    OpenAI's for ``api.openai.com``, a self-hosted server's (vLLM, SGLang, llama.cpp,
    Ollama) for any other."""
    if provider_type == "google":
        return GEMINI
    if urlsplit(url).hostname == "api.openai.com":
        return OPENAI
    return SELF_HOSTED


@dataclass(frozen=True, slots=True)
class Translated:
    """A request translated: the endpoint's JSON ``body``, and the client's fields that
    the endpoint cannot take and were left out (``dropped``, e.g. ``("thinking",)``;
    the proxy names them in the ``x-relaygate-dropped`` response header)."""

    body: Json
    dropped: tuple[str, ...] = field(default=())


class Stream(Protocol):
    """Turns an endpoint's server-sent events into the client's, as they arrive."""

    def event(self, event: Event) -> bytes:
        """One event of the endpoint's stream; returns the client's bytes to send now."""
        ...

    def end(self) -> bytes:
        """The endpoint's stream ended; returns what closes the client's stream."""
        ...

    def fail(self, message: str) -> bytes:
        """The endpoint's stream broke off; returns an error event for the client."""
        ...


# -- reading untrusted JSON --------------------------------------------------------------


def obj(value: Any) -> Json:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def array(value: Any) -> list[Any]:
    """``value`` if it is a JSON array, else an empty one."""
    return value if isinstance(value, list) else []


def first(value: Any) -> Json:
    """The first element of ``value`` if it is an array that starts with an object (the
    first choice of a completion), else an empty object."""
    values = array(value)
    return obj(values[0]) if values else {}


def string(value: Any) -> str | None:
    """``value`` if it is a string, else None."""
    return value if isinstance(value, str) else None


def count(value: Any) -> int | None:
    """``value`` if it is a count: an integer (not a boolean) from 0 to :data:`MAX_COUNT`;
    else None (floats, negatives and numbers too large for a count)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT:
        return value
    return None
