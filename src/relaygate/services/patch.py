"""Partial updates: :data:`UNSET` marks a field a PATCH did not mention."""

from __future__ import annotations

from typing import Final


class Unset:
    """The type of :data:`UNSET`."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset()
