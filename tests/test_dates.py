"""Month arithmetic has one home (onshi.dates): dates and datetimes clamp alike."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onshi.dates import JST, add_months, as_datetime, day_end, day_start

CASES = [
    ((2026, 11, 30), 3, (2027, 2, 28)),
    ((2027, 11, 30), 3, (2028, 2, 29)),
    ((2026, 1, 31), 1, (2026, 2, 28)),
    ((2026, 12, 15), 1, (2027, 1, 15)),
    ((2026, 3, 31), -1, (2026, 2, 28)),
    ((2024, 2, 29), 12, (2025, 2, 28)),
    ((2026, 1, 15), -13, (2024, 12, 15)),
]


@pytest.mark.parametrize(("start", "months", "expected"), CASES)
def test_add_months_clamps_dates_and_datetimes_alike(
    start: tuple[int, int, int], months: int, expected: tuple[int, int, int]
) -> None:
    assert add_months(dt.date(*start), months) == dt.date(*expected)
    moment = dt.datetime(*start, 9, 30, 15, tzinfo=JST)
    assert add_months(moment, months) == dt.datetime(*expected, 9, 30, 15, tzinfo=JST)


@given(
    st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2200, 12, 31)), st.integers(-240, 240)
)
def test_add_months_lands_in_the_right_month_and_never_overshoots(
    day: dt.date, months: int
) -> None:
    moved = add_months(day, months)
    assert moved.year * 12 + moved.month == day.year * 12 + day.month + months
    assert moved.day == day.day or (moved.day < day.day and (moved + dt.timedelta(1)).day == 1)


def test_jst_day_edges() -> None:
    day = dt.date(2031, 5, 4)
    assert day_start(day) == dt.datetime(2031, 5, 3, 15, tzinfo=dt.UTC)
    assert day_end(day) - day_start(day) == dt.timedelta(hours=23, minutes=59, seconds=59)
    assert as_datetime(day) == day_start(day)
    assert as_datetime(dt.datetime(2031, 5, 4, 12)) == dt.datetime(2031, 5, 4, 12, tzinfo=dt.UTC)
