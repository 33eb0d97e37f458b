"""Quota periods: half-open `[start, end)` windows of timezone-aware UTC datetimes.

`rolling_30d` starts at the UTC midnight of first use and lasts 30 days; once it has ended,
the next one starts on the day of the next use (an idle month does not count as a period).
`calendar_month` is the UTC calendar month.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

ROLLING_LENGTH = timedelta(days=30)


class Period(NamedTuple):
    start: datetime
    end: datetime

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def current_period(kind: str, now: datetime, anchor: datetime | None = None) -> Period:
    """The period `now` falls in. `anchor` is the start of the rolling period in force, if any:
    it is kept while `now` is inside it, else a new window starts today."""
    if now.tzinfo is None:
        raise ValueError("current_period needs a timezone-aware datetime")
    now = now.astimezone(UTC)
    if kind == "calendar_month":
        return _calendar_month(now)
    if kind == "rolling_30d":
        return _rolling(now, anchor)
    raise ValueError(f"unknown period kind {kind!r}")


def _midnight(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _calendar_month(now: datetime) -> Period:
    start = _midnight(now.replace(day=1))
    if start.month == 12:
        return Period(start, start.replace(year=start.year + 1, month=1))
    return Period(start, start.replace(month=start.month + 1))


def _rolling(now: datetime, anchor: datetime | None) -> Period:
    if anchor is not None:
        kept = Period(anchor, anchor + ROLLING_LENGTH)
        if kept.contains(now):
            return kept
    start = _midnight(now)
    return Period(start, start + ROLLING_LENGTH)
