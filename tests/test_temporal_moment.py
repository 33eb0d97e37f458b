"""The target moment of a jump: BCE, month carry, leap years, precision (no DB, no app)."""

from __future__ import annotations

from datetime import date

import pytest

from tollhouse.temporal.errors import ImpreciseSource
from tollhouse.temporal.moment import Moment, civil, day_number, step


@pytest.mark.parametrize(
    ("source", "units", "unit", "target"),
    [
        (Moment(1969, 7, 20), 1, "day", Moment(1969, 7, 21)),
        (Moment(1969, 7, 20), -3, "week", Moment(1969, 6, 29)),
        (Moment(1969, 12, 31), 1, "day", Moment(1970, 1, 1)),
        (Moment(1969, 11, 30), 3, "month", Moment(1970, 2, 28)),  # carry and clamp
        (Moment(1999, 12, 31), 2, "month", Moment(2000, 2, 29)),  # 2000 is a leap year
        (Moment(1900, 2, 28), 1, "day", Moment(1900, 3, 1)),  # 1900 is not
        (Moment(2024, 2, 29), 1, "year", Moment(2025, 2, 28)),
        (Moment(2024, 2, 29), 4, "year", Moment(2028, 2, 29)),
        (Moment(-1, 6, 1), 1, "year", Moment(1, 6, 1)),  # no year 0
        (Moment(1, 1, 1), -1, "day", Moment(-1, 12, 31)),
        (Moment(-44, 3, 15), 1, "day", Moment(-44, 3, 16)),
        (Moment(-44, 3, 15), -3, "month", Moment(-45, 12, 15)),
        (Moment(-5, 2, 28), 1, "day", Moment(-5, 2, 29)),  # 5 BCE = astronomical -4: leap
        (Moment(-44, 3, 15), -365, "day", Moment(-45, 3, 15)),  # 45 BCE is not leap
        (Moment(1969, 7), 6, "month", Moment(1970, 1)),  # no day stays no day
        (Moment(1969), -100, "year", Moment(1869)),
        (Moment(-300), 301, "year", Moment(2)),
    ],
)
def test_steps_land_on_the_exact_date(
    source: Moment, units: int, unit: str, target: Moment
) -> None:
    assert step(source, units, unit) == target  # type: ignore[arg-type]


def test_sub_day_steps_start_at_midday_and_describe_the_time() -> None:
    evening = Moment(1969, 7, 20, "afternoon")
    assert step(evening, 11, "hour") == Moment(1969, 7, 20, "11 hours after afternoon")
    assert step(evening, 13, "hour") == Moment(1969, 7, 21, "13 hours after afternoon")
    assert step(evening, -13, "hour") == Moment(1969, 7, 19, "13 hours before afternoon")
    assert step(evening, 1, "minute").time_of_day == "1 minute after afternoon"
    assert step(Moment(1969, 12, 31), 365, "hour") == Moment(
        1970, 1, 15, "365 hours after the previous moment"
    )
    assert step(Moment(1969, 7, 20), 90, "second").day == 20


@pytest.mark.parametrize(
    ("source", "unit"),
    [(Moment(1969, 7), "day"), (Moment(1969, 7), "hour"), (Moment(1969), "month")],
)
def test_an_imprecise_source_is_refused_not_filled_with_january_first(
    source: Moment, unit: str
) -> None:
    with pytest.raises(ImpreciseSource):
        step(source, 1, unit)  # type: ignore[arg-type]


def test_day_numbers_round_trip_across_four_thousand_years() -> None:
    start = day_number(-2000, 1, 1)  # 1 January 2001 BCE
    # Six 400-year cycles (146,097 days each) before Python's 1 January 400.
    assert start == date(400, 1, 1).toordinal() - 6 * 146_097 - date(1970, 1, 1).toordinal()
    for days in range(start, start + 4000 * 366, 997):
        assert day_number(*civil(days)) == days
    assert civil(0) == (1970, 1, 1)
