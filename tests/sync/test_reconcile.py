"""The reconcile rule, as a pure function."""

from relaygate.sync.reconcile import matches_filter, plan


def test_plan_adds_reactivates_and_deactivates() -> None:
    """New ids are added, returning offline ones reactivated, vanished online ones deactivated."""
    stored = {"kept": "online", "back": "offline", "gone": "online", "still-gone": "offline"}
    result = plan(stored, ["kept", "back", "new", "new"])
    assert result.add == ("new",)
    assert result.reactivate == ("back",)
    assert result.deactivate == ("gone",)


def test_filter_takes_exact_ids_and_globs() -> None:
    """An empty filter passes all; otherwise exact ids and glob patterns select models."""
    assert matches_filter("anything", [])
    assert matches_filter("gpt-4o", ["gpt-4*"])
    assert matches_filter("llama3", ["llama3", "qwen*"])
    assert not matches_filter("gpt-3.5", ["gpt-4*", "llama3"])
