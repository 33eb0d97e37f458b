"""The exact target moment of a jump, on the proleptic Gregorian calendar.

Years are historical: negative for BCE, no year 0 (1 BCE is followed by 1 CE). Arithmetic
runs on astronomical years (1 BCE = 0) and day numbers, so BCE dates, leap years and month
ends are all exact. A date is only as precise as its source: stepping by days needs a
source with a day, by months one with a month — the original silently filled in January 1.
Sub-day steps start from midday (a scene's time of day is words, not a clock) and move the
date when they cross midnight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tollhouse.temporal.errors import ImpreciseSource

Unit = Literal["second", "minute", "hour", "day", "week", "month", "year"]

_SECONDS: dict[str, int] = {"second": 1, "minute": 60, "hour": 3600}
_DAYS: dict[str, int] = {"day": 1, "week": 7}
_DAY_SECONDS = 86_400
_MIDDAY = _DAY_SECONDS // 2


@dataclass(frozen=True, slots=True)
class Moment:
    year: int
    month: int | None = None
    day: int | None = None
    time_of_day: str | None = None


def to_astronomical(year: int) -> int:
    return year if year > 0 else year + 1


def to_historical(year: int) -> int:
    return year if year > 0 else year - 1


def is_leap(astronomical_year: int) -> bool:
    y = astronomical_year
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def days_in_month(astronomical_year: int, month: int) -> int:
    if month == 2:
        return 29 if is_leap(astronomical_year) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def day_number(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of an astronomical-year date (H. Hinnant's days_from_civil)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil(days: int) -> tuple[int, int, int]:
    """The inverse of `day_number`: (astronomical year, month, day)."""
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


def _plural(units: int, unit: str) -> str:
    return f"{abs(units)} {unit}{'' if abs(units) == 1 else 's'}"


def step(source: Moment, units: int, unit: Unit) -> Moment:
    """`source` moved by `units` (signed) of `unit`. 400 when the source is too imprecise."""
    year = to_astronomical(source.year)
    if unit == "year":
        month, day = source.month, source.day
        year += units
        if month is not None and day is not None:
            day = min(day, days_in_month(year, month))  # 29 February → 28 in common years
        return Moment(to_historical(year), month, day, source.time_of_day)
    if source.month is None:
        raise ImpreciseSource(f"The source moment has no month; step it by years, not {unit}s.")
    if unit == "month":
        index = year * 12 + (source.month - 1) + units
        year, month = divmod(index, 12)
        month += 1
        day = source.day
        if day is not None:
            day = min(day, days_in_month(year, month))
        return Moment(to_historical(year), month, day, source.time_of_day)
    if source.day is None:
        raise ImpreciseSource(
            f"The source moment has no day; step it by months or years, not {unit}s."
        )
    start = day_number(year, source.month, source.day)
    time_of_day = source.time_of_day
    if unit in _DAYS:
        days = units * _DAYS[unit]
    else:
        days = (_MIDDAY + units * _SECONDS[unit]) // _DAY_SECONDS
        direction = "after" if units > 0 else "before"
        anchor = source.time_of_day or "the previous moment"
        time_of_day = f"{_plural(units, unit)} {direction} {anchor}"
    year, month, day = civil(start + days)
    return Moment(to_historical(year), month, day, time_of_day)
