"""Charts drawn on the server as SVG (no script, no CDN): the geometry here, the markup in
`console/chart.html` (bars: usage, sales) and `console/line_chart.html` (live users)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

WIDTH = 600
HEIGHT = 160


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
    # What the values count ("units"); `cents` values are money, shown as 12.34.
    unit: str = "units"
    cents: bool = False
    width: int = WIDTH
    plot_height: int = HEIGHT

    @property
    def first(self) -> date:
        return self.bars[0].day

    @property
    def last(self) -> date:
        return self.bars[-1].day

    def shown(self, value: int) -> str:
        return f"{value / 100:,.2f}" if self.cents else str(value)


def _span(since: date, days: int) -> list[date]:
    return [since + timedelta(days=offset) for offset in range(days)]


def daily_bars(
    title: str,
    series: Iterable[tuple[date, int]],
    since: date,
    days: int,
    *,
    unit: str = "units",
    cents: bool = False,
) -> BarChart:
    """One bar per day from `since`, days without a value drawn as zero."""
    values = dict(series)
    span = _span(since, days)
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
    return BarChart(title, bars, peak, sum(bar.value for bar in bars), unit, cents)


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float
    day: date
    value: int


@dataclass(frozen=True, slots=True)
class LineChart:
    """A count per day (live users) as a line over a shaded area; `latest` is the last day's."""

    title: str
    points: list[Point]
    peak: int
    latest: int
    width: int = WIDTH
    plot_height: int = HEIGHT

    @property
    def line(self) -> str:
        """The SVG polyline's `points`."""
        return " ".join(f"{p.x},{p.y}" for p in self.points)

    @property
    def area(self) -> str:
        """The polygon under the line, closed along the axis."""
        first, last = self.points[0], self.points[-1]
        return f"{first.x},{HEIGHT} {self.line} {last.x},{HEIGHT}"

    @property
    def first(self) -> date:
        return self.points[0].day

    @property
    def last(self) -> date:
        return self.points[-1].day


def daily_line(title: str, series: Iterable[tuple[date, int]], since: date, days: int) -> LineChart:
    """One point per day from `since` (at the middle of its slot), missing days as zero; the
    peak sits a little below the top so the line is never clipped."""
    values = dict(series)
    span = _span(since, days)
    peak = max((values.get(day, 0) for day in span), default=0)
    slot = WIDTH / days
    usable = HEIGHT - 8
    points = [
        Point(
            x=round(index * slot + slot / 2, 2),
            y=round(HEIGHT - (usable * values.get(day, 0) / peak if peak else 0.0), 2),
            day=day,
            value=values.get(day, 0),
        )
        for index, day in enumerate(span)
    ]
    return LineChart(title, points, peak, points[-1].value)
