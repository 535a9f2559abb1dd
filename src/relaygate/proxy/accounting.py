"""One proxied request's state, and what is accounted for once it is answered: its
usage record, its metrics, the tokens it used against the caller's rate limits and
its cost against the caller's budgets."""

from __future__ import annotations

import asyncio
import logging
import time

from relaygate.budgets import Budgets, Reservation
from relaygate.logs import upstream_request_id
from relaygate.metrics import Metrics
from relaygate.proxy.asgi import Message, Send
from relaygate.proxy.batched import Ticket
from relaygate.proxy.tokens import Tokens
from relaygate.ratelimit import RateLimiter
from relaygate.snapshot import Principal
from relaygate.targets import Target
from relaygate.usage_records import UsageEntry, UsageQueue, cost_of, now

log = logging.getLogger(__name__)


_EVENT_ENDS = (b"\n\n", b"\r\n\r\n", b"\r\r")
_DONE = b"data: [DONE]"


def _ends_stream(chunk: bytes, at_event: bool) -> bool:
    """Whether ``chunk`` holds the event ``data: [DONE]`` that ends an OpenAI stream
    (https://platform.openai.com/docs/api-reference/chat-streaming): at the start of an
    event, so never text of the answer's (``at_event``: ``chunk`` starts where an event
    does)."""
    if at_event and chunk.startswith(_DONE):
        return True
    return any(end + _DONE in chunk for end in _EVENT_ENDS)


class Exchange:
    """One proxied request across its attempts: its progress, and what its usage record
    needs. The proxy fills it in as the request goes; :class:`Accounting` reads it once
    the answer is out. Times are ``time.perf_counter()`` seconds (0.0: not yet).

    ``arrived`` is when the request came in, ``request_id`` the id it is known by to
    its client and in the logs, ``upstream_id`` the one it goes upstream by (the same
    when it is a UUID, see :func:`relaygate.logs.upstream_request_id`); every other
    attribute starts empty (``sent_at`` at ``arrived``).
    """

    __slots__ = (
        "arrived",
        "body_whole",
        "cost",
        "finished",
        "first_byte_at",
        "holds_slot",
        "model",
        "principal",
        "request_id",
        "reservation",
        "routed",
        "sent_at",
        "served_model",
        "started",
        "stream",
        "strip_usage",
        "target",
        "ticket",
        "tokens",
        "upstream_id",
        "upstream_path",
        "upstream_status",
    )

    @property
    def tokens_missing(self) -> bool:
        """Whether the answer reported no token counts at all."""
        tokens = self.tokens
        return tokens is None or (tokens.prompt is None and tokens.completion is None)

    def __init__(self, arrived: float, request_id: str) -> None:
        self.arrived = arrived
        self.request_id = request_id
        self.upstream_id = upstream_request_id(request_id)
        self.principal: Principal | None = None
        self.model: str | None = None
        """The model the client asked for."""
        self.routed = False
        """Whether ``model`` is a known public name (else it is not a metric label)."""
        self.served_model: str | None = None
        """The fallback model that answered, when not ``model``."""
        self.target: Target | None = None
        """The target of the latest attempt."""
        self.stream = False
        self.strip_usage = False
        """Whether the usage chunk was asked for by relaygate, so kept from the client."""
        self.tokens: Tokens | None = None
        self.sent_at = arrived
        self.first_byte_at = 0.0
        self.started = False
        """Whether the response has started going out to the client."""
        self.upstream_path: str | None = None
        """The route the target was sent when relaygate translated the request (e.g.
        ``/chat/completions`` for a client's ``/v1/messages``), below the endpoint URL."""
        self.upstream_status = 0
        """The status of the upstream response that went out (0: none did)."""
        self.finished = False
        self.body_whole = False
        """Whether the request body was read to its end."""
        self.holds_slot = False
        """Whether the request is counted in its key's and user's requests in flight."""
        self.reservation: Reservation | None = None
        """What the request holds of its budgets, until settled."""
        self.cost: float | None = None
        """The answer's cost, once recorded (None: unknown or free)."""
        self.ticket: Ticket | None = None
        """For a batch request, its batch and the per-endpoint slots it must hold."""


class Accounting:
    """Accounts for answered requests: queues their usage records on ``usage``, updates
    ``metrics``, counts their tokens against ``limiter``'s tokens per minute and settles
    their reservations on ``budgets``."""

    def __init__(
        self,
        metrics: Metrics,
        usage: UsageQueue,
        limiter: RateLimiter,
        budgets: Budgets | None = None,
    ) -> None:
        self._metrics = metrics
        self._usage = usage
        self._limiter = limiter
        self._budgets = budgets
        # Usage records are stamped by the clock budgets go by, so that spend rebuilt
        # from them falls in the same periods (a test's clock included).
        self._now = budgets.now if budgets is not None else now
        self._settling: set[asyncio.Future[None]] = set()
        """Settlements under way in tasks of their own (see :meth:`settling`)."""

    def record(self, path: str, exchange: Exchange, status: int) -> None:
        """Queue the usage record of ``exchange``, answered with ``status`` on ``path``,
        and update the metrics (no I/O). ``exchange`` must have its ``principal`` and
        ``model``; raises whatever the metrics or the queue raise (nothing expected)."""
        ended = time.perf_counter()
        principal, target, tokens = exchange.principal, exchange.target, exchange.tokens
        assert principal is not None and exchange.model is not None
        model = exchange.served_model or exchange.model
        endpoint = target.endpoint_name if target is not None else ""
        latency = ended - exchange.arrived
        ttfb = exchange.first_byte_at - exchange.arrived if exchange.first_byte_at else None
        prompt = completion = total = None
        seconds: float | None = None
        if tokens is not None:
            prompt, completion, total = tokens.prompt, tokens.completion, tokens.total
            seconds = tokens.seconds
        bound = self._metrics.for_model(model if exchange.routed else "", endpoint)
        bound.request(status).inc()
        if target is not None:
            bound.duration().observe(latency)
            if exchange.stream and ttfb is not None:
                bound.time_to_first_token().observe(ttfb)
            if prompt:
                bound.token_usage("input").observe(prompt)
                bound.tokens("input").inc(prompt)
            if completion:
                bound.token_usage("output").observe(completion)
                bound.tokens("output").inc(completion)
        cost = self._price(exchange)
        self._usage.put(
            UsageEntry(
                created_at=self._now(),
                request_id=exchange.request_id,
                user_id=principal.user_id,
                key_id=principal.key_id,
                endpoint_id=target.endpoint_id if target is not None else None,
                model=model[:500],
                upstream_model=target.upstream_id if target is not None else None,
                path=path[:200],
                upstream_path=exchange.upstream_path,
                status=status,
                stream=exchange.stream,
                latency_ms=latency * 1000,
                ttfb_ms=ttfb * 1000 if ttfb is not None else None,
                prompt_tokens=prompt,
                completion_tokens=completion,
                total_tokens=total,
                cost=cost,
                audio_seconds=seconds,
            )
        )

    @staticmethod
    def _price(exchange: Exchange) -> float | None:
        """Set and return ``exchange.cost``, the cost of its answer at its target's
        prices (None: no target, or no price or tokens to go by)."""
        target, tokens = exchange.target, exchange.tokens
        cost = None
        if target is not None:
            prompt = tokens.prompt if tokens is not None else None
            completion = tokens.completion if tokens is not None else None
            cost = cost_of(prompt, completion, target.input_price, target.output_price)
        exchange.cost = cost
        return cost

    def settling(self, send: Send, exchange: Exchange, *, done_marker: bool) -> Send:
        """``send``, settling ``exchange``'s budget reservation just before the client
        can hold its answer whole: before the response's last message (the one without
        ``more_body``) or, with ``done_marker`` (an OpenAI chat or text completion), before
        the chunk whose event is ``data: [DONE]`` (the ``openai`` SDK stops reading
        there). A next request sent at once then meets the spend, not the reservation.
        Only an answer that came whole is settled so (its ``exchange.finished`` set before
        its last message, or its end event sent); one still held when the request ends
        (an error, the client left, the answer broke off) is settled by :meth:`settle`
        as the request ends. The settlement runs shielded: a cancelled request (its
        client left meanwhile) still settles, rather than leave the amount held."""
        status = 0
        at_event = True  # whether the next body chunk starts at an event's start

        async def settling_send(message: Message) -> None:
            nonlocal status, at_event
            if message["type"] == "http.response.start":
                status = message["status"]
            elif exchange.reservation is not None:
                body: bytes = message.get("body", b"")
                if (exchange.finished and not message.get("more_body", False)) or (
                    done_marker and exchange.stream and _ends_stream(body, at_event)
                ):
                    await self._shielded_settle(exchange, status)
                elif done_marker and body:
                    at_event = body.endswith(_EVENT_ENDS)
            await send(message)

        return settling_send

    async def _shielded_settle(self, exchange: Exchange, status: int) -> None:
        """:meth:`settle` in a task of its own that a cancellation of the caller does not
        stop; the task is kept referenced until it ends (asyncio keeps only weak ones)."""
        task = asyncio.ensure_future(self.settle(exchange, status))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        await asyncio.shield(task)

    async def count_tokens(self, exchange: Exchange) -> None:
        """Count the prompt and completion tokens of ``exchange``'s answer against its
        caller's tokens per minute (after the answer went out; only for callers with
        limits). A failure of the limiter is logged, not raised."""
        principal, tokens = exchange.principal, exchange.tokens
        if principal is None or principal.limits is None or tokens is None:
            return
        used = (tokens.prompt or 0) + (tokens.completion or 0)
        if used:
            try:
                await self._limiter.add_tokens(principal, used)
            except Exception:
                log.exception("could not count tokens against the rate limits")

    async def settle(self, exchange: Exchange, status: int) -> None:
        """Settle ``exchange``'s budget reservation (if any) to its recorded cost. A
        request that failed or was cancelled before its answer began is released; one
        whose successful answer began but did not end whole (cancelled by the client,
        ``status`` 499, or broken off, 5xx) or ended without usage is charged at least
        its whole reservation: the provider bills what it generated, and no final count
        of it arrived. An upstream error passed through is released. Never raises."""
        reservation = exchange.reservation
        if reservation is None or self._budgets is None:
            return
        exchange.reservation = None
        began = 200 <= exchange.upstream_status < 300
        cut = status == 499 or status >= 500  # the client left, or the stream broke off
        whole = began and (cut or exchange.tokens_missing)
        cost = self._price(exchange)
        await self._budgets.settle(reservation, exchange.target, cost, whole=whole)
