"""Batches run by relaygate: their work in the database, claimed row by row so replicas
share it (:mod:`.steps`, :mod:`.prepare`, :mod:`.finalize`), the output files
(:mod:`.output`), and the loop that sends each request through the proxy
(:mod:`.runner`)."""

from __future__ import annotations

from typing import Any

OPEN = ("validating", "in_progress", "finalizing", "cancelling")
"""The statuses of a batch that has not ended."""
ENDED = ("completed", "failed", "expired", "cancelled")
"""The statuses a batch ends in."""


def wake_runner(state: Any) -> None:
    """Make this process's batch runner (``state.batch_runner`` of the app, once it
    runs) look for work at once: a batch was created or cancelled here."""
    runner = getattr(state, "batch_runner", None)
    if runner is not None:
        runner.wake()
