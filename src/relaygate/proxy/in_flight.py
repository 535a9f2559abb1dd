"""Proxied requests in flight per API key and per user, in this process."""

from __future__ import annotations

from relaygate.errors import ConcurrencyLimited
from relaygate.snapshot import Principal


class InFlight:
    """Proxied requests in flight per API key and per user (in this process), so one
    caller's slow or stuck requests cannot take every slot: at most ``per_key`` for a key
    and ``per_user`` for a user's keys together."""

    __slots__ = ("_keys", "_per_key", "_per_user", "_users")

    def __init__(self, per_key: int, per_user: int) -> None:
        self._per_key = per_key
        self._per_user = per_user
        self._keys: dict[int, int] = {}
        self._users: dict[int, int] = {}

    def take(self, principal: Principal) -> None:
        """Count a request of ``principal``; raises :class:`ConcurrencyLimited` when its
        key or user already has its most in flight."""
        keys, users = self._keys, self._users
        key, user = principal.key_id, principal.user_id
        on_key, on_user = keys.get(key, 0), users.get(user, 0)
        if on_key >= self._per_key or on_user >= self._per_user:
            which, limit = (
                ("key", self._per_key)
                if on_key >= self._per_key
                else (
                    "user",
                    self._per_user,
                )
            )
            raise ConcurrencyLimited(
                f"your {which} already has {limit} requests in flight, its most at once; "
                "retry when one has finished"
            )
        keys[key] = on_key + 1
        users[user] = on_user + 1

    def release(self, principal: Principal) -> None:
        """A request counted by :meth:`take` is over."""
        for counts, ident in ((self._keys, principal.key_id), (self._users, principal.user_id)):
            left = counts[ident] - 1
            if left:
                counts[ident] = left
            else:
                del counts[ident]
