"""Rate limits: requests and tokens per minute, per API key and per user.

A key and its user may each have a limit on requests per minute (``rpm``) and on tokens
per minute (``tpm``); a request counts against both, and must be within every limit set.

**Windows.** Each counted subject (a key, a user) has a fixed window of one minute
that starts with the first request (or tokens) counted after its previous window ended,
and is reset as a whole when it ends. This is the cheapest scheme that is exact in one
Redis round trip, and it needs no clock shared by the replicas (Redis expires the
counters). Its known cost: a client may spend a whole limit at the end of one window and
another at the start of the next, so up to twice the limit can pass in a short span.

**Requests** are counted at admission: a request is admitted (and counted for the key
and the user at once) only when neither has reached a limit; a refused request counts
for nothing. **Tokens** are counted after the response, by :meth:`RateLimiter.add_tokens`,
in the window current then; a request is refused once the tokens already counted reach
the limit, so the request that crosses it is served in full.

**Where counters live.** Without Redis, in this process, or with ``serve --workers N`` in
a table its workers share (:mod:`relaygate.ratelimit_counters`). With ``redis_url`` they are
shared by every replica: one Lua script (:data:`ADMIT_SCRIPT`) checks and counts the key
and the user in one atomic round trip. The two counters share a Redis hash tag, so this
works on a Redis Cluster too.

**Redis unreachable: fail open.** A Redis error never fails a request: the process logs
once per outage (and again when Redis is back), counts each failed call in the
``relaygate_rate_limit_store_errors`` metric, and counts in its own memory (or its
workers' shared table) meanwhile (each replica enforcing the limits alone), trying Redis
again every
:data:`RateLimiter.RETRY_STORE_SECONDS`.

Responses follow OpenAI's rate limits (https://platform.openai.com/docs/guides/rate-limits):
a 429 whose body has ``type`` ``requests`` or ``tokens`` and ``code``
``rate_limit_exceeded``, and the headers ``x-ratelimit-limit-{requests,tokens}``,
``x-ratelimit-remaining-{requests,tokens}`` and ``x-ratelimit-reset-{requests,tokens}``
(the time until the limit is back to its initial state, in Go's duration format as
OpenAI sends it: ``12ms``, ``59.3s``, ``1m0s``), plus ``Retry-After`` on a 429.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relaygate.errors import BadRequest, RateLimited
from relaygate.metrics import Metrics
from relaygate.ratelimit_counters import Count, Counters, LocalCounters, SharedCounters, Subject
from relaygate.snapshot import Principal, RateLimits

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0
MAX_LIMIT = 2**31 - 1
"""The largest limit that can be stored (a 32-bit integer column)."""
ADMISSION_SCOPE_KEY = "relaygate.rate_limit"
"""Where the proxy keeps a request's :class:`Admission` in its ASGI scope."""

ADMIT_SCRIPT = """
-- KEYS[i]: the counter hash of one subject (fields r: requests, t: tokens).
-- ARGV[1]: the window in ms; ARGV[2i], ARGV[2i+1]: that subject's rpm and tpm (0: none).
-- Counts one request in every hash when no limit is reached, else nothing.
-- Returns {admitted (1 or 0), then per subject: requests, tokens, ms left in its window}.
local window = tonumber(ARGV[1])
local admitted = 1
local seen = {}
for i, key in ipairs(KEYS) do
  local counts = redis.call('HMGET', key, 'r', 't')
  local r, t = tonumber(counts[1]) or 0, tonumber(counts[2]) or 0
  local ttl = redis.call('PTTL', key)
  if ttl == -1 then
    -- a counter that lost its expiry would block its subject for good
    redis.call('PEXPIRE', key, window)
    ttl = window
  end
  local rpm, tpm = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  if (rpm > 0 and r >= rpm) or (tpm > 0 and t >= tpm) then
    admitted = 0
  end
  seen[i] = {r, t, ttl}
end
local out = {admitted}
for i, key in ipairs(KEYS) do
  local r, t, ttl = seen[i][1], seen[i][2], seen[i][3]
  if admitted == 1 then
    r = redis.call('HINCRBY', key, 'r', 1)
    if ttl < 0 then
      redis.call('PEXPIRE', key, window)
      ttl = window
    end
  elseif ttl < 0 then
    ttl = 0
  end
  out[#out + 1] = r
  out[#out + 1] = t
  out[#out + 1] = ttl
end
return out
"""

TOKENS_SCRIPT = """
-- KEYS: counter hashes; ARGV[1]: the window in ms; ARGV[2]: tokens to add to each.
for _, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, 't', ARGV[2])
  if redis.call('PTTL', key) < 0 then
    redis.call('PEXPIRE', key, ARGV[1])
  end
end
return 0
"""


@dataclass(frozen=True, slots=True)
class LimitStanding:
    """Where one limit stands: ``limit`` per minute, ``remaining`` of it, and ``reset``
    seconds until it is back to its initial state (0 when nothing is counted)."""

    limit: int
    remaining: int
    reset: float


@dataclass(frozen=True, slots=True)
class Admission:
    """An admitted request's standing: for requests and for tokens, the most restrictive
    of the key's and the user's limits, or None when neither has that limit."""

    requests: LimitStanding | None
    tokens: LimitStanding | None

    @property
    def headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """OpenAI's ``x-ratelimit-*`` response headers for this standing."""
        return _headers(self.requests, self.tokens)


UNLIMITED = Admission(None, None)


def format_reset(seconds: float) -> str:
    """``seconds`` (rounded to the millisecond) as OpenAI's ``x-ratelimit-reset-*``
    values are written, Go's duration format: ``0s``, ``12ms``, ``59.3s``, ``6m0s``,
    ``1h0m0s`` (https://platform.openai.com/docs/guides/rate-limits)."""
    ms = max(0, round(seconds * 1000))
    if 1000 <= ms < 60_000:  # the usual case: within a one-minute window
        return f"{ms / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, fraction = divmod(rest, 1000)
    text = f"{whole}.{fraction:03d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def check_limit(value: int | None, param: str) -> int | None:
    """A per-minute limit as stored: None (no limit) or 1 to :data:`MAX_LIMIT`.
    Raises :class:`BadRequest` naming ``param`` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_LIMIT:
        raise BadRequest(
            f"{param} must be a whole number from 1 to {MAX_LIMIT}, or null for no limit",
            param=param,
        )
    return value


def add_rate_limit_headers(
    scope: MutableMapping[str, Any], headers: list[tuple[bytes, bytes]]
) -> None:
    """Put the ``x-ratelimit-*`` headers of the request in ``scope`` (its admission, kept
    under :data:`ADMISSION_SCOPE_KEY`) into the response ``headers``, replacing any the
    upstream sent; does nothing for a request that no limit applies to."""
    admission: Admission | None = scope.get(ADMISSION_SCOPE_KEY)
    ours = admission.headers if admission is not None else ()
    if ours:
        headers[:] = [pair for pair in headers if not pair[0].startswith(b"x-ratelimit-")]
        headers.extend(ours)


class RateLimiter:
    """Admits requests against their principal's limits and counts their tokens.

    ``redis`` shares the counters among replicas (keys under ``prefix``); without it
    they live in this process, or in the table at ``shared_table`` that the workers of
    one ``serve --workers N`` share (:mod:`relaygate.ratelimit_counters`), which is also
    where a worker counts while Redis fails. ``window`` is in seconds (one minute but in
    tests); ``clock`` gives monotonic seconds, the same clock in every process.
    """

    RETRY_STORE_SECONDS = 2.0
    """After a Redis error, how long to count in the process before trying Redis again."""

    def __init__(
        self,
        redis: Redis | None = None,
        *,
        prefix: str = "relaygate",
        window: float = WINDOW_SECONDS,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        shared_table: Path | None = None,
    ):
        self._redis = redis
        self._prefix = prefix
        self._window = window
        self._window_ms = max(1, round(window * 1000))
        self._metrics = metrics
        self._clock = clock
        self._shared = SharedCounters(shared_table, window) if shared_table else None
        self._local: Counters = LocalCounters(window) if self._shared is None else self._shared
        self._store_down = False
        self._store_retry_at = 0.0
        self._subject_cache: dict[tuple[int, int], tuple[RateLimits, list[Subject]]] = {}
        self._store_errors: tuple[type[Exception], ...] = (OSError,)
        if redis is not None:
            # Only with a Redis client is the redis package loaded (see make_redis_client).
            from redis.exceptions import RedisError

            self._store_errors = (RedisError, OSError)
            self._admit_script = redis.register_script(ADMIT_SCRIPT)
            self._tokens_script = redis.register_script(TOKENS_SCRIPT)

    def close(self) -> None:
        """Let go of the shared table, if any."""
        if self._shared is not None:
            self._shared.close()

    async def admit(self, principal: Principal) -> Admission:
        """Count one request of ``principal`` against its key's and its user's limits,
        when it is within all of them, and return where the limits stand after it.

        Raises :class:`RateLimited` (429, type ``requests`` or ``tokens``) when the
        requests in the current window have reached a request limit, or the tokens
        counted in it have reached a token limit; the request is then not counted.
        Never raises for Redis errors (see the module's docstring: fail open).
        """
        limits = principal.limits
        if limits is None:
            return UNLIMITED
        subjects = self._subjects(principal, limits)
        if self._redis is None:  # counted here: no coroutine to await
            admitted, counts = self._local.take(subjects, self._clock())
        else:
            admitted, counts = await self._take(subjects)
        if admitted:
            return Admission(_requests_usage(subjects, counts), _tokens_usage(subjects, counts))
        raise self._refusal(subjects, counts)

    async def add_tokens(self, principal: Principal, tokens: int) -> None:
        """Count ``tokens`` (prompt plus completion) of a finished response of
        ``principal`` against its key's and its user's token limits, in their current
        windows. Does nothing without a token limit or for ``tokens <= 0``; never raises
        for Redis errors."""
        limits = principal.limits
        if limits is None or tokens <= 0 or (limits.key_tpm is None and limits.user_tpm is None):
            return
        names = [s.name for s in self._subjects(principal, limits) if s.tpm is not None]
        if self._store_usable():
            try:
                await self._tokens_script(keys=names, args=[self._window_ms, tokens])
            except self._store_errors as exc:
                self._store_failed(exc)
            else:
                self._store_ok()
                return
        self._local.add_tokens(names, tokens, self._clock())

    _SUBJECT_CACHE_SIZE = 100_000

    def _subjects(self, principal: Principal, limits: RateLimits) -> list[Subject]:
        """The principal's counted subjects, made once per key while its limits stay
        the same (a changed limit makes them anew)."""
        cache_key = (principal.key_id, principal.user_id)  # a key id can be reused
        cached = self._subject_cache.get(cache_key)
        if cached is not None and cached[0] == limits:
            return cached[1]
        if len(self._subject_cache) >= self._SUBJECT_CACHE_SIZE:
            self._subject_cache.clear()
        subjects = self._make_subjects(principal, limits)
        self._subject_cache[cache_key] = (limits, subjects)
        return subjects

    def _make_subjects(self, principal: Principal, limits: RateLimits) -> list[Subject]:
        # The {user:N} hash tag keeps a user's counters on one Redis Cluster slot, so the
        # script may touch the key's and the user's together.
        user = f"{self._prefix}:ratelimit:{{user:{principal.user_id}}}"
        subjects = []
        if limits.key_rpm is not None or limits.key_tpm is not None:
            subjects.append(
                Subject(
                    f"{user}:key:{principal.key_id}", "this API key", limits.key_rpm, limits.key_tpm
                )
            )
        if limits.user_rpm is not None or limits.user_tpm is not None:
            subjects.append(Subject(user, "your user", limits.user_rpm, limits.user_tpm))
        return subjects

    async def _take(self, subjects: Sequence[Subject]) -> tuple[bool, list[Count]]:
        """Check and count one request in the subjects' counters: (admitted, counts)."""
        if self._store_usable():
            args: list[int] = [self._window_ms]
            for subject in subjects:
                args += [subject.rpm or 0, subject.tpm or 0]
            try:
                raw = await self._admit_script(keys=[s.name for s in subjects], args=args)
            except self._store_errors as exc:
                self._store_failed(exc)
            else:
                self._store_ok()
                values = [int(v) for v in raw]
                counts = [
                    Count(values[i], values[i + 1], values[i + 2] / 1000)
                    for i in range(1, len(values), 3)
                ]
                return values[0] == 1, counts
        return self._local.take(subjects, self._clock())

    def _store_usable(self) -> bool:
        if self._redis is None:
            return False
        return not self._store_down or self._clock() >= self._store_retry_at

    def _store_failed(self, exc: Exception) -> None:
        if self._metrics is not None:
            self._metrics.rate_limit_store_errors.inc()
        self._store_retry_at = self._clock() + self.RETRY_STORE_SECONDS
        if not self._store_down:
            self._store_down = True
            log.warning(
                "rate limits: Redis failed (%s: %s); counting in this process until it is back",
                type(exc).__name__,
                exc,
            )

    def _store_ok(self) -> None:
        if self._store_down:
            self._store_down = False
            log.info("rate limits: Redis is back; counters are shared again")

    def _refusal(self, subjects: Sequence[Subject], counts: Sequence[Count]) -> RateLimited:
        """The 429 for a refused request: the request limit when one is reached, else the
        token limit; ``Retry-After`` is when every limit reached has reset."""
        on_requests = [
            (s, c) for s, c in zip(subjects, counts, strict=True) if s.rpm and c.requests >= s.rpm
        ]
        on_tokens = [
            (s, c) for s, c in zip(subjects, counts, strict=True) if s.tpm and c.tokens >= s.tpm
        ]
        wait = max(c.left for _, c in on_requests + on_tokens)
        if on_requests:
            kind, (subject, count) = "requests", on_requests[0]
            what = f"requests per min (RPM): Limit {subject.rpm}, Used {count.requests}"
        else:
            kind, (subject, count) = "tokens", on_tokens[0]
            what = f"tokens per min (TPM): Limit {subject.tpm}, Used {count.tokens}"
        if self._metrics is not None:
            self._metrics.rate_limited.labels(kind).inc()
        retry_after = max(1, math.ceil(wait))
        headers = (
            (b"retry-after", str(retry_after).encode()),
            *_headers(_requests_usage(subjects, counts), _tokens_usage(subjects, counts)),
        )
        return RateLimited(
            f"rate limit reached for {subject.label} on {what}. Please try again in "
            f"{format_reset(wait)}.",
            limit=kind,
            headers=headers,
        )


def _tightest(usages: list[LimitStanding]) -> LimitStanding | None:
    """The most restrictive standing: least remaining, then the latest reset."""
    if len(usages) < 2:
        return usages[0] if usages else None
    return min(usages, key=lambda u: (u.remaining, -u.reset))


def _requests_usage(subjects: Sequence[Subject], counts: Sequence[Count]) -> LimitStanding | None:
    return _tightest(
        [
            LimitStanding(s.rpm, max(0, s.rpm - c.requests), c.left if c.requests else 0.0)
            for s, c in zip(subjects, counts, strict=True)
            if s.rpm is not None
        ]
    )


def _tokens_usage(subjects: Sequence[Subject], counts: Sequence[Count]) -> LimitStanding | None:
    return _tightest(
        [
            LimitStanding(s.tpm, max(0, s.tpm - c.tokens), c.left if c.tokens else 0.0)
            for s, c in zip(subjects, counts, strict=True)
            if s.tpm is not None
        ]
    )


def _headers(
    requests: LimitStanding | None, tokens: LimitStanding | None
) -> tuple[tuple[bytes, bytes], ...]:
    out: list[tuple[bytes, bytes]] = []
    for kind, usage in ((b"requests", requests), (b"tokens", tokens)):
        if usage is not None:
            out += [
                (b"x-ratelimit-limit-" + kind, str(usage.limit).encode()),
                (b"x-ratelimit-remaining-" + kind, str(usage.remaining).encode()),
                (b"x-ratelimit-reset-" + kind, format_reset(usage.reset).encode()),
            ]
    return tuple(out)
