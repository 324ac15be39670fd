"""The reference reader (顔認証付きカードリーダー) as a sans-I/O state machine.

``Reader(policy, clock=...).handle(event) -> list[Action]``: events in
(:mod:`onshi.reader.events`), actions out (:mod:`onshi.reader.actions`), states and the
transition table in :mod:`onshi.reader.states`, the result in :mod:`onshi.reader.results`.
Drivers move the bytes and the time (:mod:`onshi.reader.drivers`: one action executor, a
synchronous driver over any transport, an asyncio one; :mod:`onshi.reader.http` is the backend
client); :mod:`onshi.reader.world` plays the patient and staff and is the in-process driver the
tests use. The machine itself is split by role: ``core`` (rules, outputs, sessions),
``cardread``, ``identify``, ``backendflow``, the pure ``parse`` and the screen ``messages``,
composed in ``machine``.
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
