"""Time as an injected dependency: a `Clock` protocol, the system clock and a mock that jumps.

Why: the reader's 30-second face flow, the backend's 5-minute challenge and the 3-month
certificate notice all depend on time. Code that reads the wall clock itself cannot be tested
without waiting or racing the machine, so everything that needs "now" takes a `Clock`, and
tests pass a :class:`MockClock` whose time moves only when told to (trio's ``MockClock``
style: ``jump()``), so a 30-second timeout is tested in microseconds.

One time scale: Unix seconds (float), the scale certificates, face attestations and the
reference backend (``create_app(clock=...)`` takes any ``() -> float``) already speak. A clock
is also callable, so it can be handed to the backend as its clock directly.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "MockClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Where "now" comes from. ``now()`` is Unix seconds; ``sleep()`` lets that time pass."""

    def now(self) -> float:
        """The current moment, Unix seconds."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass (a mock clock jumps instead of blocking)."""
        ...

    def __call__(self) -> float:
        """Same as :meth:`now`, so a clock fits ``Callable[[], float]`` parameters."""
        ...


class SystemClock:
    """The real clock: ``time.time()`` and ``time.sleep()``. Only drivers on hardware use it."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def __call__(self) -> float:
        return time.time()

    def __repr__(self) -> str:
        return "SystemClock()"


class MockClock:
    """Virtual time that moves only when told to (``jump``/``advance``) or when slept on.

    ``MockClock(start)`` takes Unix seconds or an aware datetime. Time never goes backwards:
    a negative jump is a bug in the test and raises ``ValueError``.
    """

    def __init__(self, start: float | dt.datetime = 0.0) -> None:
        if isinstance(start, dt.datetime):
            if start.tzinfo is None:
                raise ValueError("MockClock needs an aware datetime (give it a tzinfo)")
            start = start.timestamp()
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def __call__(self) -> float:
        return self._now

    def jump(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (trio's name)."""
        if seconds < 0:
            raise ValueError(f"time cannot go backwards (jump by {seconds} s)")
        self._now += seconds

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (the backend tests' ``FakeClock`` name)."""
        self.jump(seconds)

    def sleep(self, seconds: float) -> None:
        """A sleep in virtual time: returns at once, ``seconds`` later."""
        self.jump(max(0.0, seconds))

    def datetime(self) -> dt.datetime:
        """Now as an aware UTC datetime (for logs and assertions)."""
        return dt.datetime.fromtimestamp(self._now, dt.UTC)

    def __repr__(self) -> str:
        return f"MockClock({self.datetime().isoformat()})"
