"""Token counts read from answers as they pass, without holding the stream back.

Formats followed:

- OpenAI: ``usage.prompt_tokens`` / ``completion_tokens`` / ``total_tokens`` in chat
  completions, completions and embeddings; ``usage.input_tokens`` / ``output_tokens`` in
  the Responses API (``response.usage`` in its ``response.completed`` stream event). A chat
  or completions stream carries usage in a last chunk with ``"choices": []`` when the
  request set ``stream_options.include_usage``
  (https://platform.openai.com/docs/api-reference/chat/streaming).
- Anthropic: ``usage.input_tokens`` / ``output_tokens`` (plus
  ``cache_creation_input_tokens`` and ``cache_read_input_tokens``, counted as input); in a
  stream, ``message_start`` carries ``message.usage`` and ``message_delta`` the running
  ``usage.output_tokens`` (https://docs.anthropic.com/en/api/messages-streaming).
- Gemini: ``usageMetadata.promptTokenCount`` / ``candidatesTokenCount`` /
  ``totalTokenCount`` (https://ai.google.dev/api/generate-content#UsageMetadata).
- OpenAI audio transcriptions: ``usage`` is ``{"type": "tokens", "input_tokens",
  "output_tokens", "total_tokens"}`` or ``{"type": "duration", "seconds"}`` (models billed
  by the audio's length), in the answer or in a stream's ``transcript.text.done`` event
  (https://platform.openai.com/docs/api-reference/audio/json-object); image edits report
  ``usage.input_tokens`` / ``output_tokens`` / ``total_tokens``
  (https://platform.openai.com/docs/api-reference/images/object).
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

# Where usage is: the key ``"usage"`` with an object for its value (not OpenAI's
# ``"usage":null`` of every other chunk), or Gemini's ``usageMetadata``. One regular
# expression finds the three spellings in one scan, in C, however many nulls precede.
_USAGE_KEY = re.compile(rb'"usage(?:": ?\{|Metadata")')
_LINE_ENDS = (b"\n", b"\r")
_TAIL = 64 * 1024
_WHOLE = 1024 * 1024
_MAX_CARRY = 1024 * 1024


class Tokens:
    """Prompt, completion and total tokens found so far, and the ``seconds`` of audio an
    answer billed by duration reports (None: not reported)."""

    __slots__ = ("completion", "prompt", "seconds", "total")

    def __init__(self) -> None:
        self.prompt: int | None = None
        self.completion: int | None = None
        self.total: int | None = None
        self.seconds: float | None = None

    def take(self, usage: Any, gemini: bool = False) -> None:
        """Read one ``usage`` object (any of the formats above); later values win."""
        if not isinstance(usage, dict):
            return
        if usage.get("type") == "duration":
            seconds = usage.get("seconds")
            if (
                isinstance(seconds, int | float)
                and not isinstance(seconds, bool)
                and math.isfinite(seconds)
                and 0 <= seconds <= MAX_AUDIO_SECONDS
            ):
                self.seconds = float(seconds)
            return
        if gemini:
            # Thinking is billed as output, and counted apart from the candidates' tokens
            # (https://ai.google.dev/api/generate-content#UsageMetadata).
            prompt, completion = usage.get("promptTokenCount"), usage.get("candidatesTokenCount")
            thoughts = usage.get("thoughtsTokenCount")
            if thoughts is not None:
                completion = _count(_int(completion) + _int(thoughts))
            total = usage.get("totalTokenCount")
        else:
            prompt = usage.get("prompt_tokens")
            if prompt is None and "input_tokens" in usage:
                prompt = _count(
                    _int(usage.get("input_tokens"))
                    + _int(usage.get("cache_creation_input_tokens"))
                    + _int(usage.get("cache_read_input_tokens"))
                )
            completion = usage.get("completion_tokens", usage.get("output_tokens"))
            total = usage.get("total_tokens")
        prompt, completion, total = _count(prompt), _count(completion), _count(total)
        if prompt is not None:
            self.prompt = prompt
        if completion is not None:
            self.completion = completion
        if total is not None:
            self.total = total
        elif self.prompt is not None or self.completion is not None:
            self.total = min((self.prompt or 0) + (self.completion or 0), MAX_TOKENS)

    def take_object(self, data: Any) -> None:
        """Read the usage inside one decoded answer or stream event."""
        if not isinstance(data, dict):
            return
        if "usage" in data:
            self.take(data["usage"])
        elif "usageMetadata" in data:
            self.take(data["usageMetadata"], gemini=True)
        for inner in ("message", "response"):  # Anthropic message_start, Responses events
            nested = data.get(inner)
            if isinstance(nested, dict) and "usage" in nested:
                self.take(nested["usage"])


MAX_AUDIO_SECONDS = 10**7
"""The longest audio an answer billed by duration is taken to report (about 115 days)."""

MAX_TOKENS = 2**31 - 1
"""The largest token count taken from an answer (the usage records' columns hold no more)."""


def _count(value: Any) -> int | None:
    """``value`` as a token count: a whole number from 0 to :data:`MAX_TOKENS`, else None
    (not reported). An endpoint's answer is not trusted with more: a negative count would
    credit a budget, a bool is no count, and one past the columns' range would fail the
    batch of usage records it is written in."""
    if type(value) is int and 0 <= value <= MAX_TOKENS:
        return value
    return None


def _int(value: Any) -> int:
    return value if type(value) is int and 0 <= value <= MAX_TOKENS else 0


def _usage_at(data: bytes, start: int = 0) -> int:
    """Where the next usage key (see :data:`_USAGE_KEY`) is in ``data`` from ``start``,
    or -1: one scan, no copy."""
    found = _USAGE_KEY.search(data, start)
    return -1 if found is None else found.start()


def _has_usage(data: bytes) -> bool:
    return _USAGE_KEY.search(data) is not None


def _usage_lines(data: bytes) -> list[bytes]:
    """The lines of ``data`` (LF line ends only) that hold a usage key, each once; the
    others are neither split off nor copied."""
    lines = []
    at = _usage_at(data)
    while at >= 0:
        end = data.find(b"\n", at)
        end = len(data) if end < 0 else end
        lines.append(data[data.rfind(b"\n", 0, at) + 1 : end])
        at = _usage_at(data, end)
    return lines


class BodyTokens:
    """Reads the usage of a whole JSON answer: keeps the chunks of a body up to 1 MiB
    (references, not copies), of a larger one only its last 64 KiB, where every format
    above puts ``usage``."""

    __slots__ = ("_chunks", "_size", "tokens")

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self.tokens = Tokens()

    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size > _WHOLE and len(self._chunks) > 1:
            tail = b"".join(self._chunks)[-_TAIL:]
            self._chunks = [tail]

    def finish(self) -> Tokens:
        body = b"".join(self._chunks)
        self._chunks = []
        if not _has_usage(body):
            return self.tokens
        if self._size <= _WHOLE:
            try:
                self.tokens.take_object(orjson.loads(body))
                return self.tokens
            except orjson.JSONDecodeError:
                pass
        usage = _object_after(body, body.rfind(b'"usage'))
        if usage is not None:
            self.tokens.take(usage, gemini=body.rfind(b'"usageMetadata"') >= 0)
        return self.tokens


def _object_after(body: bytes, at: int) -> Any:
    """The JSON object that follows the key starting at ``at`` (``"usage": {...}``)."""
    if at < 0:
        return None
    start = body.find(b"{", at)
    if start < 0:
        return None
    depth, in_string, escaped = 0, False, False
    for index in range(start, len(body)):
        byte = body[index]
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte == 0x7B:
            depth += 1
        elif byte == 0x7D:
            depth -= 1
            if depth == 0:
                try:
                    return orjson.loads(body[start : index + 1])
                except orjson.JSONDecodeError:
                    return None
    return None


def _lf(data: bytes) -> bytes:
    """``data`` with every line ending (CRLF, CR) made LF, as the SSE spec reads them."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n") if b"\r" in data else data


class StreamTokens:
    """Reads usage from a server-sent-events stream chunk by chunk.

    Lines end at LF, CRLF or CR, and an event at a blank line
    (https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream).
    Only complete lines are read; the partial line at the end of a chunk is carried to
    the next, up to ``max_event`` bytes. With ``strip`` (relaygate asked for
    ``stream_options.include_usage`` on the client's behalf), the usage-only chunk
    (``"choices": []``) is taken out of what the client receives: only then are partial
    events held back until their end (and the events sent on with LF line ends);
    otherwise every chunk passes on unchanged at once. An event longer than ``max_event``
    ends the reading: the stream's usage goes uncounted (``gave_up``) and its bytes pass
    through as they come.
    """

    __slots__ = ("_carry", "_max", "_strip", "gave_up", "tokens")

    def __init__(self, strip: bool = False, max_event: int = _MAX_CARRY) -> None:
        self._carry = b""
        self._strip = strip
        self._max = max_event
        self.gave_up = False
        """Whether an event past ``max_event`` stopped the reading of this stream."""
        self.tokens = Tokens()

    def feed(self, chunk: bytes) -> bytes:
        """Take one chunk; returns the bytes to send the client now (``chunk`` itself
        unless usage is stripped from it or an event is held back). A chunk of whole
        lines that follows whole lines, the common case, costs one scan for the usage
        key and no copy; only the event that holds usage is parsed."""
        if self.gave_up:
            return chunk
        if self._strip:
            if not self._carry and chunk.endswith(b"\n\n") and not _has_usage(chunk):
                return chunk  # whole events, none of them the usage chunk
            return self._feed_stripping(chunk)
        if not self._carry and chunk.endswith(_LINE_ENDS):
            # A CR at the end may be half of a CRLF: the LF that follows makes an empty
            # line, which reads as nothing.
            if _has_usage(chunk):
                for line in _usage_lines(_lf(chunk)):
                    self._read_line(line)
            return chunk
        data = self._carry + chunk if self._carry else chunk
        # The last line end: a CR at the very end may be the first half of a CRLF, so the
        # line it ends is read once the next chunk shows (an empty line costs nothing).
        end = max(data.rfind(b"\n"), data.rfind(b"\r"))
        complete, self._carry = data[: end + 1], data[end + 1 :]
        if len(self._carry) > self._max:
            self._give_up()
        if end >= 0 and _has_usage(complete):
            for line in _usage_lines(_lf(complete)):
                self._read_line(line)
        return chunk

    def _feed_stripping(self, chunk: bytes) -> bytes:
        data = self._carry + chunk if self._carry else chunk
        # A CR at the end may be half of a CRLF: it waits for the next chunk.
        held = b"\r" if data.endswith(b"\r") else b""
        data = _lf(data[:-1] if held else data)
        end = data.rfind(b"\n\n")
        if end < 0:
            self._carry = data + held
            if len(self._carry) > self._max:
                rest = self._carry
                self._give_up()
                return rest
            return b""
        out, self._carry = data[: end + 2], data[end + 2 :] + held
        at = _usage_at(out)
        if at < 0:
            return out
        # Only the events that hold a usage key are looked at; a usage-only one is cut
        # out, the bytes around it kept as they are.
        kept: list[bytes] = []
        start = 0
        while at >= 0:
            begin = out.rfind(b"\n\n", 0, at)
            begin = 0 if begin < 0 else begin + 2
            end = out.find(b"\n\n", at) + 2  # out ends with a blank line
            if self._usage_only(out[begin : end - 2]):
                kept.append(out[start:begin])
                start = end
            at = _usage_at(out, end)
        if not start:
            return out
        kept.append(out[start:])
        return b"".join(kept)

    def _give_up(self) -> None:
        self.gave_up = True
        self._carry = b""

    def _usage_only(self, event: bytes) -> bool:
        """Read the event's usage; True when it is a usage-only chunk (no choices)."""
        for line in event.split(b"\n"):
            data = self._read_line(line)
            if isinstance(data, dict) and data.get("choices") == [] and data.get("usage"):
                return True
        return False

    def _read_line(self, line: bytes) -> Any:
        if not line.startswith(b"data:") or not _has_usage(line):
            return None
        try:
            data = orjson.loads(line[5:])
        except orjson.JSONDecodeError:
            return None
        self.tokens.take_object(data)
        return data

    def finish(self) -> bytes:
        """The end of the stream: returns any bytes still held back."""
        rest, self._carry = self._carry, b""
        if self.gave_up:
            return b""
        if rest and not self._strip:
            for line in _usage_lines(_lf(rest)):
                self._read_line(line)
            return b""
        return _lf(rest) if self._strip else rest
