"""Charts drawn on the server as inline SVG. The geometry is computed here, in Python, and
the template (``chart.html``) only places the shapes: pages need no script, no chart
library and nothing from elsewhere, and the same numbers go to a data table beside it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Tableau 10, whose neighbours stay apart for the common kinds of colour blindness.
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
)
OTHER = "other"
OTHER_COLOUR = "#bab0ac"

WIDTH = 760
HEIGHT = 280
LEFT = 56  # room for the value labels
RIGHT = 12
TOP = 14
BOTTOM = 30  # room for the column labels
LABEL_ROOM = 44  # px a column label needs; labels are thinned out to fit


@dataclass(frozen=True, slots=True)
class Segment:
    """One series' part of a column: a rectangle from ``y`` down ``height`` pixels."""

    series: str
    value: int
    y: float
    height: float
    colour: str


@dataclass(frozen=True, slots=True)
class Column:
    """One bar: its full ``name``, the ``label`` drawn under it (empty where labels are
    thinned out), its left edge ``x`` and ``width``, its total and its segments (bottom
    first)."""

    name: str
    label: str
    x: float
    width: float
    total: int
    segments: tuple[Segment, ...]

    @property
    def centre(self) -> float:
        return round(self.x + self.width / 2, 2)


@dataclass(frozen=True, slots=True)
class Series:
    """A legend entry: a series' name, colour, total and value in each column."""

    name: str
    colour: str
    total: int
    values: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Tick:
    """A value-axis gridline at ``y`` with its label."""

    y: float
    label: str


@dataclass(frozen=True, slots=True)
class StackedBars:
    """A stacked bar chart ready to draw in a ``0 0 width height`` viewBox: the plot area
    runs from ``left`` to ``right`` and from ``top`` down to the baseline ``bottom``."""

    title: str
    description: str
    unit: str
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    columns: tuple[Column, ...]
    series: tuple[Series, ...]
    ticks: tuple[Tick, ...]
    total: int


def compact(value: float) -> str:
    """A short axis label: ``950``, ``1.5k``, ``12M``, ``3G``."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def nice_step(largest: float, steps: int = 4) -> float:
    """A round gridline spacing (1, 2 or 5 times a power of ten) that covers ``largest``
    in about ``steps`` steps; 1 for nothing to show."""
    if largest <= 0:
        return 1.0
    raw = largest / steps
    power = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5):
        if multiple * power >= raw:
            return float(multiple * power)
    return float(10 * power)


def _fold(values: Mapping[str, Sequence[int]], limit: int) -> list[tuple[str, list[int]]]:
    """The series biggest first; past ``limit`` the smallest are summed into ``other``."""
    ranked = sorted(values.items(), key=lambda item: (-sum(item[1]), item[0]))
    kept = [(name, list(numbers)) for name, numbers in ranked if sum(numbers) > 0]
    if len(kept) <= limit:
        return kept
    rest = kept[limit - 1 :]
    folded = [sum(column) for column in zip(*(numbers for _, numbers in rest), strict=True)]
    return [*kept[: limit - 1], (OTHER, folded)]


def stacked_bars(
    names: Sequence[str],
    values: Mapping[str, Sequence[int]],
    *,
    title: str,
    unit: str,
    labels: Sequence[str] | None = None,
) -> StackedBars:
    """The geometry of a stacked bar chart with one column per entry of ``names`` (drawn
    with ``labels`` when given) and one series per key of ``values``, each holding a
    value per column. Series are ordered biggest first, stacked from the bottom in that
    order, and past :data:`PALETTE`'s length the smallest are folded into ``other``; series
    that sum to 0 are left out. ``title`` and ``unit`` (``tokens``) make the title and the
    text description that stand for the chart in assistive technology.

    Raises :class:`ValueError` when a series has not one value per column.
    """
    count = len(names)
    if any(len(numbers) != count for numbers in values.values()):
        raise ValueError("every series needs one value per column")
    labels = list(labels) if labels is not None else list(names)
    folded = _fold(values, len(PALETTE))
    series = tuple(
        Series(
            name,
            OTHER_COLOUR if name == OTHER else PALETTE[index],
            sum(numbers),
            tuple(numbers),
        )
        for index, (name, numbers) in enumerate(folded)
    )
    totals = [sum(s.values[i] for s in series) for i in range(count)]
    step = nice_step(max(totals, default=0))
    ceiling = step * max(1, math.ceil(max(totals, default=0) / step))
    right, bottom = WIDTH - RIGHT, HEIGHT - BOTTOM
    plot_height = bottom - TOP
    slot = (right - LEFT) / max(count, 1)
    bar = min(slot * 0.7, 48.0)
    every = max(1, math.ceil(LABEL_ROOM / slot))

    columns = []
    for i, name in enumerate(names):
        base = float(bottom)
        segments = []
        for s in series:
            if s.values[i] <= 0:
                continue
            height = s.values[i] / ceiling * plot_height
            base -= height
            segments.append(
                Segment(s.name, s.values[i], round(base, 2), round(height, 2), s.colour)
            )
        # Count labels from the last column, so today's is always shown.
        shown = (count - 1 - i) % every == 0
        columns.append(
            Column(
                name=name,
                label=labels[i] if shown else "",
                x=round(LEFT + i * slot + (slot - bar) / 2, 2),
                width=round(bar, 2),
                total=totals[i],
                segments=tuple(segments),
            )
        )
    ticks = tuple(
        Tick(round(bottom - k * step / ceiling * plot_height, 2), compact(k * step))
        for k in range(round(ceiling / step) + 1)
    )
    return StackedBars(
        title=title,
        description=_describe(names, series, totals, unit),
        unit=unit,
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=right,
        top=TOP,
        bottom=bottom,
        columns=tuple(columns),
        series=series,
        ticks=ticks,
        total=sum(totals),
    )


def _describe(
    names: Sequence[str], series: Sequence[Series], totals: Sequence[int], unit: str
) -> str:
    if not names:
        return "No columns."
    span = f"{len(names)} columns, from {names[0]} to {names[-1]}"
    if not series:
        return f"Stacked bars, {span}: no {unit}."
    peak = max(range(len(names)), key=lambda i: totals[i])
    parts = ", ".join(f"{s.name} {s.total:,}" for s in series)
    return (
        f"Stacked bars, {span}, one segment per series. {sum(totals):,} {unit} in all "
        f"({parts}); the most on {names[peak]}, {totals[peak]:,} {unit}."
    )
