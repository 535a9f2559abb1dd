"""Fixtures shared by the proxy tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.hostile import RecordingUpstream


@pytest.fixture
def recorder() -> Iterator[RecordingUpstream]:
    """An upstream that records every request it receives (see :mod:`tests.support.hostile`)."""
    server = RecordingUpstream()
    yield server
    server.stop()
