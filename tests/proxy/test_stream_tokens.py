"""Reading usage from event streams as they pass (relaygate.proxy.tokens), chunk by chunk:
what a chunk costs (it passes as the very object read, uncopied) and what an upstream
can and cannot make relaygate count or keep from the client."""

from __future__ import annotations

import json
from typing import Any

from relaygate.proxy.tokens import BodyTokens, StreamTokens, Tokens


def event(data: dict[str, Any], spaced: bool = False) -> bytes:
    separators = (", ", ": ") if spaced else (",", ":")
    return b"data: " + json.dumps(data, separators=separators).encode() + b"\n\n"


def chunk(n: int) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": f"w{n} "}}],
        "usage": None,
    }


USAGE = {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}}


def test_whole_events_pass_as_the_same_object() -> None:
    """A chunk of whole events without usage goes on as the very bytes object read, in
    both modes: no copy per chunk, even when each carries OpenAI's "usage": null."""
    for strip in (False, True):
        tokens = StreamTokens(strip)
        for n in range(3):
            data = event(chunk(n), spaced=n == 1)
            assert tokens.feed(data) is data
        assert tokens.tokens.completion is None  # "usage": null is no usage


def test_usage_counted_and_stripped_only_when_asked() -> None:
    """The usage chunk is read in both modes, and kept from the client only when
    relaygate asked for it (strip)."""
    for strip in (False, True):
        tokens = StreamTokens(strip)
        sent = [tokens.feed(event(chunk(0))), tokens.feed(event(USAGE, spaced=strip))]
        sent.append(tokens.feed(b"data: [DONE]\n\n"))
        sent.append(tokens.finish())
        assert (tokens.tokens.prompt, tokens.tokens.completion) == (5, 9)
        out = b"".join(sent)
        assert (b'"usage":{' in out or b'"usage": {' in out) is not strip
        assert out.endswith(b"data: [DONE]\n\n")


def test_usage_split_across_reads_is_counted() -> None:
    """An event cut anywhere, its usage key included, is still read whole."""
    stream = event(chunk(0)) + event(USAGE) + b"data: [DONE]\n\n"
    at = stream.index(b'"usage":{') + 3
    for strip in (False, True):
        for cut in (at, at + 10, len(stream) - 3):
            tokens = StreamTokens(strip)
            out = tokens.feed(stream[:cut]) + tokens.feed(stream[cut:]) + tokens.finish()
            assert tokens.tokens.completion == 9, (strip, cut)
            assert out == (stream if not strip else event(chunk(0)) + b"data: [DONE]\n\n")


def test_crlf_stream_still_stripped() -> None:
    """An upstream ending lines with CRLF has its usage chunk read and stripped, its
    events sent on with LF line ends as before."""
    stream = (event(chunk(0)) + event(USAGE) + b"data: [DONE]\n\n").replace(b"\n", b"\r\n")
    tokens = StreamTokens(True)
    out = b"".join(tokens.feed(stream[i : i + 7]) for i in range(0, len(stream), 7))
    out += tokens.finish()
    assert tokens.tokens.total == 14
    assert out == event(chunk(0)) + b"data: [DONE]\n\n"


def test_usage_text_in_content_counts_nothing_and_is_not_stripped() -> None:
    """A model (or a hostile upstream) writing a usage object as text in its content
    neither changes the count nor makes relaygate drop that chunk."""
    fake = {
        "choices": [{"index": 0, "delta": {"content": '"usage":{"prompt_tokens":999999}'}}],
        "usage": None,
    }
    data = event(fake)
    assert b'\\"usage\\":{' in data
    for strip in (False, True):
        tokens = StreamTokens(strip)
        assert tokens.feed(data) == data
        assert tokens.tokens.prompt is None


def test_event_past_the_bound_gives_up_and_passes_through() -> None:
    """An event longer than max_event stops the reading (usage uncounted) and its bytes
    go on unchanged: nothing past the bound is held."""
    for strip in (False, True):
        tokens = StreamTokens(strip, max_event=1000)
        big = b"data: " + b"x" * 1500
        out = tokens.feed(big[:600]) + tokens.feed(big[600:])
        assert tokens.gave_up
        assert out == big
        assert tokens.feed(event(USAGE)) == event(USAGE)
        assert tokens.tokens.prompt is None


def test_json_body_usage_after_usage_null_fields() -> None:
    """A JSON answer's usage is read with the same marker rules: a nested "usage": null
    is not mistaken for it."""
    body = json.dumps({"meta": {"usage": None}, **USAGE}).encode()
    tokens = BodyTokens()
    tokens.feed(body[:10])
    tokens.feed(body[10:])
    assert tokens.finish().total == 14


def test_counts_an_endpoint_cannot_be_trusted_with_are_not_taken() -> None:
    """An endpoint's usage is taken only as whole numbers from 0 to 2**31 - 1: a
    negative count would credit a budget, ``true`` is no count, a float is not whole, and
    a count past the usage records' columns would fail the batch it is written in."""
    for hostile in (-5, True, 2**31, 2**70, 3.5, "7", None):
        tokens = Tokens()
        tokens.take({"prompt_tokens": hostile, "completion_tokens": hostile})
        assert (tokens.prompt, tokens.completion, tokens.total) == (None, None, None), hostile
        tokens.take({"input_tokens": hostile, "cache_read_input_tokens": 3, "output_tokens": 1})
        assert (tokens.prompt, tokens.completion) == (3, 1), hostile
    tokens = Tokens()
    tokens.take({"prompt_tokens": 2**31 - 1, "completion_tokens": 2**31 - 1})
    assert (tokens.prompt, tokens.total) == (2**31 - 1, 2**31 - 1)


def test_gemini_thinking_tokens_count_as_completion_tokens() -> None:
    """Gemini reports thinking apart from the candidates' tokens and bills it as output
    (https://ai.google.dev/api/generate-content#UsageMetadata): both are completion
    tokens, so a priced model charges the thinking too."""
    tokens = Tokens()
    tokens.take_object(
        {
            "usageMetadata": {
                "promptTokenCount": 12,
                "candidatesTokenCount": 30,
                "thoughtsTokenCount": 200,
                "totalTokenCount": 242,
            }
        }
    )
    assert (tokens.prompt, tokens.completion, tokens.total) == (12, 230, 242)
    plain = Tokens()
    plain.take_object({"usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4}})
    assert (plain.prompt, plain.completion, plain.total) == (3, 4, 7)


def test_audio_seconds_an_endpoint_cannot_be_trusted_with_are_not_taken() -> None:
    """A transcription's duration is taken from 0 to 10**7 seconds: a negative, endless
    or absurd length (1e19) is recorded as not reported."""
    for hostile in (-1, float("inf"), 1e19, True, "60"):
        tokens = Tokens()
        tokens.take({"type": "duration", "seconds": hostile})
        assert tokens.seconds is None, hostile
    tokens = Tokens()
    tokens.take({"type": "duration", "seconds": 61.5})
    assert tokens.seconds == 61.5
