"""What every driver shares: the run record, answers as events, and the one executor.

Why one home: the world, the synchronous and the asyncio drivers must execute a reader's
actions the same way (see :mod:`onshi.reader.drivers`); they differ only in how a timer
waits and whether a blocking call runs inline or in a thread.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from onshi.reader import actions as act
from onshi.reader import events as ev
from onshi.reader.results import ReaderResult
from onshi.transport.base import TransportError

BackendReply = tuple[int, Any] | str | None
"""``(status, json_body)``; a string is a failure reason (``"timeout"``, ``"connection"``);
``None`` means the backend never answers (the reader's own timer must end the wait)."""
BackendCall = Callable[[act.CallBackend], BackendReply]
Reaction = tuple[float, ev.Event]
"""A person's answer to a screen: the seconds it takes them, and what they do."""
React = Callable[[act.ShowScreen], Reaction | None]
"""The people in front of the reader (:class:`~onshi.reader.world.People`): ``None`` when
nobody reacts to that screen."""


@dataclass(slots=True)
class Run:
    """What happened in one run: every action, every event, and the results."""

    actions: list[act.Action] = field(default_factory=list)
    events: list[ev.Event] = field(default_factory=list)
    results: list[ReaderResult] = field(default_factory=list)

    @property
    def result(self) -> ReaderResult:
        assert self.results, "the run produced no result"
        return self.results[-1]

    def apdus(self) -> list[bytes]:
        return [a.command for a in self.actions if isinstance(a, act.SendApdu)]

    def screens(self) -> list[act.ShowScreen]:
        return [a for a in self.actions if isinstance(a, act.ShowScreen)]

    def calls(self) -> list[act.CallBackend]:
        return [a for a in self.actions if isinstance(a, act.CallBackend)]


# -- answers as events (shared by every driver) ------------------------------------------------


def json_body(raw: bytes) -> Any:
    """The decoded JSON of an HTTP body; ``None`` when empty or not JSON (the reader judges a
    body it cannot read as a failed answer, never as a success)."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def apdu_event(action: act.SendApdu, transmit: Callable[[bytes], bytes]) -> ev.Event:
    """Send one APDU; a transport failure (card gone, reader lost) becomes ``ApduFailed``."""
    try:
        response = transmit(action.command)
    except TransportError as exc:
        return ev.ApduFailed(request_id=action.request_id, reason=exc.message)
    return ev.ApduAnswered(request_id=action.request_id, response=response)


def backend_event(action: act.CallBackend, reply: BackendReply) -> ev.Event | None:
    """A backend reply as the event the reader expects (``None``: no answer ever came)."""
    if isinstance(reply, tuple):
        status, body = reply
        return ev.BackendAnswered(request_id=action.request_id, status=status, body=body)
    if isinstance(reply, str):
        return ev.BackendFailed(request_id=action.request_id, reason=reply)
    return None


# -- the one executor --------------------------------------------------------------------------


class ActionExecutor:
    """Executes a reader's actions; subclasses say how timers wait and how I/O runs."""

    react: React | None = None

    def execute(self, actions: Iterable[act.Action], run: Run) -> list[ev.Event]:
        """Carry out ``actions`` in order; return the events that answer them at once."""
        out: list[ev.Event] = []
        for action in actions:
            if isinstance(action, act.StartTimer):
                self.start_timer(action)
            elif isinstance(action, act.CancelTimer):
                self.cancel_timer(action.timer_id)
            elif isinstance(action, act.SendApdu):
                out.extend(self.send_apdu(action))
            elif isinstance(action, act.CallBackend):
                out.extend(self.call_backend(action))
            elif isinstance(action, act.EmitResult):
                run.results.append(action.result)
            elif isinstance(action, act.ShowScreen) and self.react is not None:
                reaction = self.react(action)
                if reaction is not None:
                    out.extend(self.person_acts(*reaction))
        return out

    def start_timer(self, action: act.StartTimer) -> None:
        raise NotImplementedError

    def cancel_timer(self, timer_id: int) -> None:
        raise NotImplementedError

    def send_apdu(self, action: act.SendApdu) -> list[ev.Event]:
        raise NotImplementedError

    def call_backend(self, action: act.CallBackend) -> list[ev.Event]:
        raise NotImplementedError

    def person_acts(self, seconds: float, event: ev.Event) -> list[ev.Event]:
        raise NotImplementedError
