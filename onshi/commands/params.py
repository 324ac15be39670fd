"""Options and argument handling shared by several commands."""

from __future__ import annotations

import datetime as dt
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console

    from onshi.profiles.model import CardProfile
    from onshi.trace import ApduTrace

SYSTEM_PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")
"""Where libpcsclite looks when ``PCSCLITE_CSOCK_NAME`` is not set."""

PROFILE_HELP = "Card profile: a name from `onshi card list`, or the path of a profile YAML file."

TODAY = click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    callback=lambda _ctx, _param, value: None if value is None else value.date(),
    metavar="YYYY-MM-DD",
    help="Reference day for relative dates and certificate states (default: today).",
)
"""``--today``: profiles state dates relative to today, so tests and reports can pin the day."""


def load_profile_arg(name_or_path: str, today: dt.date | None) -> CardProfile:
    """Load a profile named on the command line (``ProfileError`` is an ``OnshiError``)."""
    from onshi.profiles import load_profile

    return load_profile(name_or_path, today=today)


def write_pcap(trace: ApduTrace, path: Path, console: Console | None = None) -> Path:
    """Write ``trace`` to ``path`` and say so on ``console``."""
    trace.write_pcap(path)
    if console is not None:
        console.print(f"pcap: {path} ({len(trace)} records)")
    return path


class Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C so everything started is stopped (exit 143)."""


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While active, SIGTERM raises :class:`Terminated` in the main thread instead of killing
    the process outright, so ``finally`` blocks stop pcscd and the card."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def wait_until_stopped(stop: threading.Event, duration: float | None) -> None:
    """Block until SIGTERM or the end of ``duration``; Ctrl-C raises KeyboardInterrupt."""
    deadline = None if duration is None else time.monotonic() + duration
    while not stop.is_set():
        remaining = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
        if remaining <= 0:
            return
        stop.wait(remaining)


@contextmanager
def stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    """Turn SIGTERM into a clean stop (``stop`` set) while a command serves: what it started
    (pcscd, a broker, a pcap) is then stopped in order."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: Any) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
