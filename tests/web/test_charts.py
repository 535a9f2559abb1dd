"""The geometry of the server-drawn stacked bar chart."""

from __future__ import annotations

import pytest

from relaygate.web.charts import OTHER, PALETTE, compact, nice_step, stacked_bars


def test_segments_stack_from_the_baseline_in_proportion() -> None:
    """Each column's segments stack upwards from the baseline, biggest series first, and
    a column's height is its share of the top gridline."""
    chart = stacked_bars(
        ["d1", "d2", "d3"], {"small": [100, 0, 50], "big": [300, 400, 0]}, title="T", unit="tokens"
    )
    assert [s.name for s in chart.series] == ["big", "small"]
    assert chart.ticks[-1].label == "400" and chart.ticks[0].y == chart.bottom
    plot = chart.bottom - chart.top
    first = chart.columns[0]
    assert [s.series for s in first.segments] == ["big", "small"]
    assert first.segments[0].y + first.segments[0].height == pytest.approx(chart.bottom)
    assert first.segments[1].y + first.segments[1].height == pytest.approx(first.segments[0].y)
    assert sum(s.height for s in first.segments) == pytest.approx(plot)
    assert [len(c.segments) for c in chart.columns] == [2, 1, 1]  # zeros draw nothing
    assert chart.columns[2].segments[0].height == pytest.approx(plot / 8)
    assert chart.columns[0].x < chart.columns[1].x < chart.columns[2].x
    assert chart.total == 850 and [c.total for c in chart.columns] == [400, 400, 50]


def test_many_series_fold_into_other_and_empty_ones_are_left_out() -> None:
    names = [f"m{i:02}" for i in range(12)]
    values = {name: [i + 1] for i, name in enumerate(names)}
    values["silent"] = [0]
    chart = stacked_bars(["day"], values, title="T", unit="tokens")
    assert len(chart.series) == len(PALETTE)
    assert chart.series[0].name == "m11" and chart.series[-1].name == OTHER
    assert chart.series[-1].values == (sum(range(1, 5)),)  # m00 to m03
    assert "silent" not in [s.name for s in chart.series]
    assert len({s.colour for s in chart.series}) == len(chart.series)


def test_labels_thin_out_but_the_last_column_keeps_its_own() -> None:
    chart = stacked_bars([str(i) for i in range(30)], {"m": [1] * 30}, title="T", unit="t")
    shown = [c.label for c in chart.columns if c.label]
    assert shown[-1] == "29" and 5 <= len(shown) <= 16
    week = stacked_bars([str(i) for i in range(7)], {"m": [1] * 7}, title="T", unit="t")
    assert all(c.label for c in week.columns)


def test_description_and_empty_chart() -> None:
    """The text alternative names the span, the total, each series and the busiest column;
    a chart without values still has its columns and a gridline."""
    chart = stacked_bars(
        ["2025-01-01", "2025-01-02"], {"a": [1000, 2500]}, title="Tokens", unit="tokens"
    )
    assert chart.description == (
        "Stacked bars, 2 columns, from 2025-01-01 to 2025-01-02, one segment per series. "
        "3,500 tokens in all (a 3,500); the most on 2025-01-02, 2,500 tokens."
    )
    empty = stacked_bars(["x", "y"], {"a": [0, 0]}, title="Tokens", unit="tokens")
    assert empty.series == () and len(empty.columns) == 2 and empty.ticks
    assert empty.description.endswith("no tokens.")
    with pytest.raises(ValueError):
        stacked_bars(["x"], {"a": [1, 2]}, title="T", unit="t")


@pytest.mark.parametrize(
    ("largest", "step"), [(0, 1), (7, 2), (37, 10), (400, 100), (1234, 500), (9_000_000, 5e6)]
)
def test_nice_steps(largest: float, step: float) -> None:
    assert nice_step(largest) == step


def test_compact_labels() -> None:
    assert [compact(v) for v in (0, 950, 1500, 12_000_000, 3e9)] == [
        "0",
        "950",
        "1.5k",
        "12M",
        "3G",
    ]
