"""``card list`` (declared dates) and ``card show`` (the PKI's check) agree, also on edge days."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from onshi.pki import TestPKI
from onshi.profiles import load_profile
from onshi.profiles.facts import add_months, check_state, declared_state

TODAY = dt.date(2026, 11, 30)
AT = dt.datetime.combine(TODAY, dt.time(12), tzinfo=dt.UTC)  # what describe_profile uses
DAY = dt.timedelta(days=1)
IN_3_MONTHS = add_months(TODAY, 3)


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return TestPKI()


@pytest.mark.parametrize(
    ("not_before", "not_after"),
    [
        (TODAY - 400 * DAY, TODAY - DAY),
        (TODAY - 400 * DAY, TODAY),
        (TODAY - 400 * DAY, IN_3_MONTHS - DAY),
        (TODAY - 400 * DAY, IN_3_MONTHS),
        (TODAY - 400 * DAY, IN_3_MONTHS + DAY),
        (TODAY, TODAY + 400 * DAY),
        (TODAY + DAY, TODAY + 400 * DAY),
    ],
    ids=str,
)
def test_declared_state_matches_the_pki_check_on_edge_days(
    pki: TestPKI, not_before: dt.date, not_after: dt.date
) -> None:
    profile = load_profile("valid", today=TODAY)
    spec = replace(profile.auth_cert, not_before=not_before, not_after=not_after)
    profile = replace(profile, auth_cert=spec)
    creds = pki.card_credentials(
        seed=profile.seed, auth=spec, sign=profile.sign_cert, holder=profile.holder
    )
    assert check_state(pki, profile, "auth", creds.auth_cert, AT) is declared_state(spec, TODAY)


def test_add_months_clamps_to_the_month_end() -> None:
    assert add_months(dt.date(2026, 11, 30), 3) == dt.date(2027, 2, 28)
    assert add_months(dt.date(2027, 11, 30), 3) == dt.date(2028, 2, 29)
    assert add_months(dt.date(2026, 1, 31), 1) == dt.date(2026, 2, 28)
    assert add_months(dt.date(2026, 10, 15), 3) == dt.date(2027, 1, 15)
