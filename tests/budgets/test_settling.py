"""When the proxy settles a budget reservation on its way out (``Accounting.settling``):
before the last message of a whole answer, or before the event ``data: [DONE]`` of an
OpenAI stream, and never on text of the answer's that only looks like that event."""

from __future__ import annotations

from typing import Any, cast

from relaygate.budgets import Budgets, Reservation
from relaygate.metrics import Metrics
from relaygate.proxy.accounting import Accounting, Exchange
from relaygate.ratelimit import RateLimiter
from relaygate.usage_records import UsageQueue, now


class Ledger:
    """Stands in for the budgets: records each settlement and when it came."""

    def __init__(self, sent: list[bytes]) -> None:
        self.sent = sent
        self.settled_after: list[int] = []
        self.now = now  # the clock usage records are stamped by

    async def settle(self, reservation: Any, target: Any, cost: Any, *, whole: bool) -> None:
        self.settled_after.append(len(self.sent))


async def settled_after(chunks: list[bytes], *, finished_before_last: bool = True) -> list[int]:
    """Send a streamed answer of ``chunks`` (then an empty last message) through the
    settling ``send``; returns after how many body messages each settlement came."""
    sent: list[bytes] = []
    ledger = Ledger(sent)
    metrics = Metrics()
    accounting = Accounting(metrics, UsageQueue(metrics), RateLimiter(), cast(Budgets, ledger))
    exchange = Exchange(0.0, "r")
    exchange.stream = True
    exchange.upstream_status = 200
    exchange.reservation = cast(Reservation, object())

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append(message["body"])

    settling = accounting.settling(send, exchange, done_marker=True)
    await settling({"type": "http.response.start", "status": 200, "headers": []})
    for chunk in chunks:
        await settling({"type": "http.response.body", "body": chunk, "more_body": True})
    exchange.finished = finished_before_last
    await settling({"type": "http.response.body", "body": b""})
    return ledger.settled_after


async def test_a_stream_is_settled_before_its_done_event() -> None:
    chunks = [b'data: {"choices": []}\n\n', b'data: {"usage": {}}\n\ndata: [DONE]\n\n']
    assert await settled_after(chunks) == [1]  # before the chunk holding [DONE]
    assert await settled_after([b"data: {}\n\n", b"data: [DONE]\n\n"]) == [1]
    assert await settled_after([b"data: {}\r\n\r\ndata: [DONE]\r\n\r\n"]) == [0]


async def test_answer_text_that_reads_like_the_done_event_settles_nothing_early() -> None:
    """A read that begins inside an event, with the model's text ``data: [DONE]``, or
    that text on a line of its own within an event, is not the end: the answer settles
    before its last message, once, as any other."""
    inside = [b'data: {"choices": [{"delta": {"content": "say ', b'data: [DONE]"}}]}\n\n']
    assert await settled_after(inside) == [2]
    within = [b'data: {"a": 1}\ndata: [DONE]\n\n']
    assert await settled_after(within) == [1]


async def test_a_broken_answer_is_left_to_the_end_of_the_request() -> None:
    """An answer not whole (``finished`` unset) is not settled on its way out."""
    assert await settled_after([b"data: {}\n\n"], finished_before_last=False) == []
