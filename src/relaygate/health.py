"""Passive health: endpoints that keep failing are cooled down and skipped by routing.

Nothing probes an endpoint; the proxy reports each forwarded request's outcome. An
endpoint that fails ``threshold`` times in a row (connection error, timeout, 5xx, 429,
refused key, a stream that broke off) is skipped for a cool-down that starts at
``base`` seconds and doubles on each further failure in a row, up to ``maximum``. A
``Retry-After`` from the endpoint (429 or 503) cools it down at once for at least that
long (RFC 9110 §10.2.3), capped at ``maximum``. When the cool-down is over the next
request tries it again: a success clears the state, a failure cools it down for longer.

The state is per process (each replica learns from its own traffic) and keyed by
endpoint id, or by (endpoint id, user id) for requests sent with a user's own
provider key: what one user's key is answered never cools the endpoint down for
anyone else. Times are ``time.monotonic()`` seconds, shown as wall-clock datetimes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Literal, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(slots=True)
class _State:
    failures: int = 0
    """Failures in a row."""
    cooldowns: int = 0
    """Cool-downs in a row: the next one lasts ``base * 2**cooldowns``."""
    until: float = 0.0
    last_error: str | None = None
    last_failure_at: datetime | None = None
    users: set[int] | None = None
    """The users whose requests failed in this streak (failures that depend on what a
    request carried, see :meth:`Health.failed_for`)."""


@dataclass(frozen=True, slots=True)
class HealthState:
    """One endpoint's health as operators see it. ``state`` is ``healthy`` (no failure
    since its last success), ``failing`` (failed, still used) or ``cooling_down``
    (skipped until ``cooldown_until``). The admin API serves it as it is."""

    state: Literal["healthy", "failing", "cooling_down"]
    consecutive_failures: int
    cooldown_until: datetime | None
    last_error: str | None
    last_failure_at: datetime | None


HEALTHY = HealthState("healthy", 0, None, None, None)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date
    (RFC 9110 §10.2.3). None when absent or unreadable; never negative."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class Health:
    """The per-process health of every endpoint the proxy has forwarded to."""

    def __init__(
        self,
        threshold: int = 3,
        base: float = 5.0,
        maximum: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._threshold = threshold
        self._base = base
        self._maximum = maximum
        self._clock = clock
        self._states: dict[Hashable, _State] = {}

    def usable(self, endpoint_id: Hashable) -> bool:
        """Whether routing may send to the endpoint now (it is not cooling down)."""
        state = self._states.get(endpoint_id)
        return state is None or state.until <= self._clock()

    def partition(
        self, items: tuple[T, ...], endpoint_of: Callable[[T], Hashable], user: int | None = None
    ) -> list[T]:
        """``items`` (targets) whose endpoint is not cooling down, for everyone nor (with
        ``user``) for that user alone, in their order."""
        if not self._states:
            return list(items)
        now = self._clock()
        states = self._states
        out = []
        for item in items:
            key = endpoint_of(item)
            state = states.get(key)
            if state is not None and state.until > now:
                continue
            mine = states.get((key, user)) if user is not None else None
            if mine is None or mine.until <= now:
                out.append(item)
        return out

    def retry_in(self, endpoint_ids: list[Hashable], user: int | None = None) -> float:
        """Seconds until the first of ``endpoint_ids`` is usable again (for ``user``, when
        given), 0 if one is."""
        now = self._clock()

        def wait(key: Hashable) -> float:
            state = self._states.get(key)
            return max(0.0, state.until - now) if state is not None else 0.0

        return min(
            (max(wait(i), wait((i, user)) if user is not None else 0.0) for i in endpoint_ids),
            default=0.0,
        )

    def succeeded(self, endpoint_id: Hashable, user: int | None = None) -> None:
        """A request to the endpoint (by ``user``) was answered: forget its failures."""
        if self._states:
            self._states.pop(endpoint_id, None)
            if user is not None:
                self._states.pop((endpoint_id, user), None)

    def failed_for(
        self, endpoint_id: Hashable, user: int, reason: str, retry_after: float | None = None
    ) -> None:
        """A request by ``user`` failed in a way its content may have caused (an HTTP 5xx
        on many self-hosted servers means bad input): it counts against that user's use
        of the endpoint at once, and against everyone's only once requests of two users
        or more have failed in a row, so one caller alone cannot cool an endpoint down
        for others."""
        self.failed((endpoint_id, user), reason, retry_after)
        state = self._states.setdefault(endpoint_id, _State())
        state.users = (state.users or set()) | {user}
        if len(state.users) >= 2:
            self.failed(endpoint_id, reason, retry_after)
        else:
            state.failures += 1
            state.last_error = reason
            state.last_failure_at = datetime.now(UTC)

    def failed(self, endpoint_id: Hashable, reason: str, retry_after: float | None = None) -> None:
        """A request to the endpoint failed for ``reason``; ``retry_after`` (seconds) is
        the endpoint's own ``Retry-After``. Starts a cool-down when due."""
        state = self._states.setdefault(endpoint_id, _State())
        state.failures += 1
        state.last_error = reason
        state.last_failure_at = datetime.now(UTC)
        now = self._clock()
        backoff_due = state.failures >= self._threshold
        if (retry_after is None and not backoff_due) or state.until > now:
            return  # not yet due, or already cooling down (requests already in flight)
        seconds = self._base * 2 ** min(state.cooldowns, 32) if backoff_due else 0.0
        if retry_after is not None:
            seconds = max(seconds, retry_after)
        seconds = min(self._maximum, seconds)
        if seconds <= 0:
            return
        state.cooldowns += 1
        state.until = now + seconds
        log.warning(
            "endpoint %s cooled down for %.1f s after %d failure(s) in a row: %s",
            endpoint_id,
            seconds,
            state.failures,
            reason,
        )

    def state(self, endpoint_id: int) -> HealthState:
        """The endpoint's health for the admin API and the registry status."""
        state = self._states.get(endpoint_id)
        if state is None:
            return HEALTHY
        remaining = state.until - self._clock()
        cooling = remaining > 0
        return HealthState(
            state="cooling_down" if cooling else "failing",
            consecutive_failures=state.failures,
            cooldown_until=datetime.now(UTC) + timedelta(seconds=remaining) if cooling else None,
            last_error=state.last_error,
            last_failure_at=state.last_failure_at,
        )
