"""The reference reader (顔認証付きカードリーダー) as a sans-I/O state machine.

``Reader(policy, clock=...).handle(event) -> list[Action]``: events in
(:mod:`onshi.reader.events`), actions out (:mod:`onshi.reader.actions`), states and the
transition table in :mod:`onshi.reader.states`, the result in :mod:`onshi.reader.results`.
Drivers move the bytes and the time; :mod:`onshi.reader.world` is the in-process one the tests
use.
"""

from onshi.reader.machine import Reader
from onshi.reader.policy import ReaderPolicy
from onshi.reader.results import Fallback, Outcome, ReaderResult
from onshi.reader.states import ReaderProtocolError, State

__all__ = [
    "Fallback",
    "Outcome",
    "Reader",
    "ReaderPolicy",
    "ReaderProtocolError",
    "ReaderResult",
    "State",
]
