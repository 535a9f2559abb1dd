"""How relaygate words counts for people (the console, the CLI and the log)."""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``1 model``, ``3 models``, ``1,200 models`` (``many`` for irregular plurals)."""
    return f"{count:,} {noun if count == 1 else many or noun + 's'}"
