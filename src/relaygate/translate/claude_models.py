"""Which Claude models take which thinking and sampling fields, for
:func:`relaygate.translate.chat_to_messages.request`.

Two lines divide Claude's generations. Models before 4.6 take thinking only as
``{"type": "enabled", "budget_tokens"}``; later ones as ``{"type": "adaptive"}`` with
``output_config.effort``, and from Opus 4.7 on they refuse the budget form, and refuse
``temperature``, ``top_p`` and ``top_k`` too.
"""

from __future__ import annotations

import re
from typing import Any

from relaygate.errors import TranslationError
from relaygate.translate.base import Json

_EFFORT_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768}
_MIN_BUDGET = 1024
# The models before each line: before 4.6 (budget thinking), before Opus 4.7 (sampling
# fields). Both lists name only old models, whose ids (bare, dated,
# Vertex "@date" or Bedrock "-v1") never change: a model they miss is a newer one.
_BUDGET_THINKING_MODELS = re.compile(
    r"claude-3|claude-(?:sonnet|opus|haiku)-4(?:-[015])?(?!\d|-\d\b)"
)
_SAMPLING_MODELS = re.compile(r"claude-3|claude-(?:sonnet|opus|haiku)-4(?:-[0156])?(?!\d|-\d\b)")
# With thinking on, Anthropic takes top_p only in [0.95, 1] and no temperature or top_k.
_MIN_THINKING_TOP_P = 0.95


def apply_thinking(effort: Any, body: Json, cap: int | None) -> list[str]:
    """Sets ``thinking`` on ``body`` for a ``reasoning_effort``; returns the fields dropped.

    With no client ``cap``, the budget is added to ``body``'s ``max_tokens`` (the default
    cap) so the answer keeps its room."""
    if effort is None or effort == "none":
        return []
    if not isinstance(effort, str) or effort not in _EFFORT_BUDGETS:
        levels = ", ".join(["none", *_EFFORT_BUDGETS])
        raise TranslationError(f"reasoning_effort must be one of {levels}", "reasoning_effort")
    forced = body.get("tool_choice", {}).get("type") in ("any", "tool")
    if forced or _in_tool_loop(body["messages"]):
        return ["reasoning_effort"]
    budget = _EFFORT_BUDGETS[effort]
    if _BUDGET_THINKING_MODELS.search(body["model"]):
        if cap is not None:
            budget = min(budget, cap - 1)  # Anthropic wants budget_tokens < max_tokens
        if budget < _MIN_BUDGET:
            return ["reasoning_effort"]
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    else:
        body["thinking"] = {"type": "adaptive", "display": "summarized"}
        body["output_config"] = {"effort": "low" if effort == "minimal" else effort}
    if cap is None:
        body["max_tokens"] += budget
    return []


def drop_refused_sampling(body: Json) -> list[str]:
    """Leaves out the sampling fields the model, or thinking, refuses; returns their names."""
    refused: tuple[str, ...] = ()
    if not _SAMPLING_MODELS.search(body["model"]):
        refused = ("temperature", "top_p", "top_k")
    elif "thinking" in body:
        refused = ("temperature", "top_k")
        if body.get("top_p", 1) < _MIN_THINKING_TOP_P:
            refused += ("top_p",)
    return [key for key in refused if body.pop(key, None) is not None]


def _in_tool_loop(turns: list[Json]) -> bool:
    """Whether the last assistant turn called tools."""
    for turn in reversed(turns):
        if turn["role"] == "assistant":
            return any(block["type"] == "tool_use" for block in turn["content"])
    return False
