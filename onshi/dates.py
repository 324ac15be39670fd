"""Calendar arithmetic in Japan's time: the one home of month arithmetic and JST day edges.

Certificate validity, the 3-month renewal window, the post-expiry grace and profile dates such
as ``-5y+45d`` all count calendar months that clamp to the month's last day; they must agree to
the second, so they share these functions instead of each writing its own.
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import TypeVar

__all__ = ["JST", "add_months", "age_on", "as_datetime", "day_end", "day_start"]

JST = dt.timezone(dt.timedelta(hours=9), "JST")
"""Japan Standard Time (no daylight saving): the clock of every date the system speaks of."""

_D = TypeVar("_D", bound=dt.date)


def add_months(day: _D, months: int) -> _D:
    """``day`` plus ``months`` calendar months, clamped to the month's last day.

    Works for dates and datetimes alike (the time and zone are kept): 11-30 + 3 months is
    02-28 (02-29 in a leap year), 03-31 - 1 month is 02-28.
    """
    year, month0 = divmod(day.year * 12 + day.month - 1 + months, 12)
    last = calendar.monthrange(year, month0 + 1)[1]
    return day.replace(year=year, month=month0 + 1, day=min(day.day, last))


def age_on(birthdate: dt.date, today: dt.date) -> int:
    """Age in whole years on ``today`` (a 02-29 birthday counts from 03-01 in common years)."""
    before_birthday = (today.month, today.day) < (birthdate.month, birthdate.day)
    return today.year - birthdate.year - before_birthday


def day_start(day: dt.date) -> dt.datetime:
    """00:00:00 JST of ``day``: when a certificate dated ``day`` starts to be valid."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=JST)


def day_end(day: dt.date) -> dt.datetime:
    """23:59:59 JST of ``day``: a certificate dated ``day`` is valid the whole day in Japan."""
    return dt.datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=JST)


def as_datetime(value: dt.date | dt.datetime) -> dt.datetime:
    """An aware moment: dates mean 00:00 JST, naive datetimes mean UTC."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return day_start(value)
