"""The Redis server the rate-limit tests share (RELAYGATE_TEST_REDIS_URL)."""

from __future__ import annotations

import os

import pytest
import redis

REDIS_URL = os.environ.get("RELAYGATE_TEST_REDIS_URL")
UNREACHABLE_URL = "redis://127.0.0.1:1"
"""Nothing listens on port 1: connecting is refused at once."""
needs_redis = pytest.mark.skipif(REDIS_URL is None, reason="RELAYGATE_TEST_REDIS_URL is not set")


def keys_under(prefix: str) -> dict[str, dict[str, str]]:
    """Every hash relaygate wrote under ``prefix``, by Redis key."""
    assert REDIS_URL
    with redis.Redis.from_url(REDIS_URL, decode_responses=True) as client:
        return {key: client.hgetall(key) for key in client.scan_iter(match=f"{prefix}:*")}


def delete_under(prefix: str) -> None:
    """Delete every key under ``prefix`` (a test's own), and no other."""
    if REDIS_URL is None:
        return
    with redis.Redis.from_url(REDIS_URL) as client:
        found = list(client.scan_iter(match=f"{prefix}:*"))
        if found:
            client.delete(*found)
