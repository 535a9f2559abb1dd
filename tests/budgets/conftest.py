"""Fixtures of the budget tests: a Redis key prefix of each test's own."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.support.redis_store import delete_under


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A ``redis_prefix`` setting no other test uses; its keys are deleted afterwards."""
    prefix = "rg-test-" + secrets.token_hex(6)
    yield prefix
    delete_under(prefix)
