"""Profile dates: absolute ``2031-05-04`` or relative ``+45d``, ``-5y+45d``, ``birthdate+11y``.

Grammar: an optional anchor (``today``, ``birthdate`` or ``YYYY-MM-DD``; default ``today``) then
signed terms in days, weeks, months or years. Months and years are calendar arithmetic that
clamps to the month's last day (``2024-02-29+1y`` is ``2025-02-28``), so "expires in 45 days"
stays true whatever day the suite runs.
"""

from __future__ import annotations

import datetime as dt
import re

from onshi.dates import add_months

__all__ = ["resolve_date"]


_ANCHOR = re.compile(r"^(today|birthdate|\d{4}-\d{2}-\d{2})?((?:[+-]\d+[dwmy])*)$")
_TERM = re.compile(r"([+-])(\d+)([dwmy])")


def resolve_date(text: str, *, today: dt.date, birthdate: dt.date | None = None) -> dt.date:
    """Resolve a profile date expression (see the schema's description); ValueError if bad."""
    match = _ANCHOR.match(text.strip())
    if not match or not text.strip():
        raise ValueError(f"not a date expression: {text!r}")
    anchor, terms = match.groups()
    if anchor is None or anchor == "today":
        day = today
    elif anchor == "birthdate":
        if birthdate is None:
            raise ValueError("'birthdate' cannot be used here")
        day = birthdate
    else:
        day = dt.date.fromisoformat(anchor)
    for sign, amount, unit in _TERM.findall(terms):
        n = int(amount) * (1 if sign == "+" else -1)
        if unit == "d":
            day += dt.timedelta(days=n)
        elif unit == "w":
            day += dt.timedelta(weeks=n)
        else:
            day = add_months(day, n * (12 if unit == "y" else 1))
    return day
