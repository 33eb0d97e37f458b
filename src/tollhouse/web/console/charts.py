"""Charts drawn on the server as SVG (no script, no CDN): the geometry here, the markup in
`console/chart.html`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

WIDTH = 600
HEIGHT = 160
LABEL_SPACE = 18


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: date
    value: int


@dataclass(frozen=True, slots=True)
class BarChart:
    title: str
    bars: list[Bar]
    peak: int
    total: int
    width: int = WIDTH
    height: int = HEIGHT + LABEL_SPACE
    plot_height: int = HEIGHT

    @property
    def first(self) -> date:
        return self.bars[0].day

    @property
    def last(self) -> date:
        return self.bars[-1].day


def daily_bars(title: str, series: Iterable[tuple[date, int]], since: date, days: int) -> BarChart:
    """One bar per day from `since`, days without a value drawn as zero."""
    values = dict(series)
    span = [since + timedelta(days=offset) for offset in range(days)]
    peak = max((values.get(day, 0) for day in span), default=0)
    slot = WIDTH / days
    bars = []
    for index, day in enumerate(span):
        value = values.get(day, 0)
        height = HEIGHT * value / peak if peak else 0.0
        bars.append(
            Bar(
                x=round(index * slot + 1, 2),
                y=round(HEIGHT - height, 2),
                width=round(max(slot - 2, 1), 2),
                height=round(height, 2),
                day=day,
                value=value,
            )
        )
    return BarChart(title, bars, peak, sum(bar.value for bar in bars))
