"""The injected clocks: a mock that only moves when told to, and the system clock."""

from __future__ import annotations

import datetime as dt

import pytest

from onshi.clock import Clock, MockClock, SystemClock


def test_mock_clock_moves_only_when_told() -> None:
    clock = MockClock(dt.datetime(2026, 6, 1, 3, tzinfo=dt.UTC))
    start = clock.now()
    assert clock() == start
    clock.jump(30)
    clock.advance(1.5)
    clock.sleep(0.5)
    assert clock.now() - start == 32.0
    assert clock.datetime() == dt.datetime(2026, 6, 1, 3, 0, 32, tzinfo=dt.UTC)


def test_mock_clock_refuses_to_go_back_or_to_guess_a_zone() -> None:
    with pytest.raises(ValueError):
        MockClock(10.0).jump(-1)
    with pytest.raises(ValueError):
        MockClock(dt.datetime(2026, 6, 1))


def test_both_clocks_fit_the_protocol() -> None:
    assert isinstance(MockClock(), Clock) and isinstance(SystemClock(), Clock)
    SystemClock().sleep(0)  # returns at once: nothing to wait for
