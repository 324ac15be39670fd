"""The world around a reader, as data, and the synchronous in-process driver that plays it.

Why: the reader must learn everything from the card's and the backend's answers and from what
people do. The world is where those people live: a :class:`Patient` (what they type, how their
face matches, which consents they give, whether they brought the card, what the card-face
scanner reads) and the :class:`Staff` (whether they come, their operator id, what they see).
The :class:`WorldDriver` answers the reader's actions from an in-process card
(``onshi.card.Card.process``) and an in-process backend callable, reacts to screens the way
the patient and staff would, and moves a :class:`~onshi.clock.MockClock` to the next timer
when nobody acts, so a 30-second face flow runs in milliseconds. Bounded: at most
``max_events`` events per run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from onshi.clock import MockClock
from onshi.reader import actions as act
from onshi.reader import events as ev
from onshi.reader.actions import Screen
from onshi.reader.events import Method, ReaderMode
from onshi.reader.machine import Reader
from onshi.reader.results import ReaderResult

if TYPE_CHECKING:
    from onshi.card import Card

__all__ = [
    "BackendCall",
    "BackendReply",
    "Patient",
    "Staff",
    "WorldDriver",
    "WorldRun",
    "asgi_backend",
]

BackendReply = tuple[int, Any] | str | None
"""``(status, json_body)``; a string is a failure reason (``"timeout"``, ``"connection"``);
``None`` means the backend never answers (the reader's own timer must end the wait)."""
BackendCall = Callable[[act.CallBackend], BackendReply]


@dataclass(frozen=True, slots=True, kw_only=True)
class Patient:
    """What one patient does at the reader. Sequences are consumed one item per prompt; when
    one runs out the patient gives up (no more input)."""

    brings_card: bool = True
    method: Method = Method.FACE
    """What they pick on the method screen (if it is offered)."""
    pins: Sequence[str | None] = ()
    """What they type at each PIN prompt (``None``: "PIN unknown")."""
    face_scores: Sequence[float | None] = ()
    """Match score of each capture (``None``: no usable face)."""
    ocr: Sequence[str | None] | None = None
    """Card-face OCR per scan; ``None``: the printed 照合番号B, read correctly every time."""
    consents: dict[str, bool] = field(default_factory=dict)
    """Answer per consent item (``all`` for 包括同意); items not listed are declined."""
    capture_s: float = 3.0
    """Virtual time one face capture takes."""
    typing_s: float = 4.0
    """Virtual time typing a PIN takes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Staff:
    """The facility's staff: whether they come when the reader asks, and what they decide."""

    comes: bool = True
    operator_id: str = "staff-01"
    same_person: bool = True
    """What the visual check concludes (目視確認)."""


@dataclass(slots=True)
class WorldRun:
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


class WorldDriver:
    """Runs a :class:`Reader` against an in-process card and backend (see the module docstring)."""

    def __init__(
        self,
        reader: Reader,
        *,
        clock: MockClock,
        backend: BackendCall,
        card: Card | None = None,
        patient: Patient | None = None,
        staff: Staff | None = None,
        max_events: int = 2000,
    ) -> None:
        self.reader = reader
        self.clock = clock
        self.backend = backend
        self.card = card
        self.patient = patient or Patient()
        self.staff = staff or Staff()
        self.max_events = max_events
        self._timers: dict[int, float] = {}
        self._pins: Iterator[str | None] = iter(self.patient.pins)
        self._faces: Iterator[float | None] = iter(self.patient.face_scores)
        ocr = self.patient.ocr
        printed = card.profile.collation_b if card is not None else None
        self._ocr: Iterator[str | None] = iter(ocr) if ocr is not None else _forever(printed)

    # -- running -----------------------------------------------------------------------------

    def present_card(self) -> WorldRun:
        """The patient places the card (if they brought it); run until the session's result."""
        run = WorldRun()
        if self.card is None or not self.patient.brings_card:
            return run
        self.card.power_on()
        self.run([ev.CardInserted(atr=self.card.atr)], run)
        return run

    def remove_card(self, run: WorldRun | None = None) -> WorldRun:
        run = run or WorldRun()
        self.run([ev.CardRemoved()], run)
        return run

    def staff_event(self, event: ev.Event) -> WorldRun:
        """Staff act at the terminal (mode switch, number or demographics query)."""
        run = WorldRun()
        self.run([event], run)
        return run

    def run(self, events: list[ev.Event], run: WorldRun, *, until_result: bool = True) -> None:
        """Feed ``events`` and every reaction until the reader rests (result emitted and
        nobody left to act) or ``max_events`` is reached."""
        queue = list(events)
        results_before = len(run.results)
        while True:
            while queue:
                if len(run.events) >= self.max_events:
                    raise RuntimeError(f"no result after {self.max_events} events")
                event = queue.pop(0)
                run.events.append(event)
                actions = self.reader.handle(event)
                run.actions.extend(actions)
                queue.extend(self._react(actions, run))
            if len(run.results) > results_before and not self.reader.session_active:
                return
            if not until_result or not self._timers:
                return
            # Nobody acts: let virtual time pass to the earliest timer.
            timer_id, deadline = min(self._timers.items(), key=lambda kv: kv[1])
            del self._timers[timer_id]
            self.clock.jump(max(0.0, deadline - self.clock.now()))
            queue.append(ev.TimerFired(timer_id=timer_id))

    # -- reactions -----------------------------------------------------------------------------

    def _react(self, actions: list[act.Action], run: WorldRun) -> list[ev.Event]:
        out: list[ev.Event] = []
        for action in actions:
            if isinstance(action, act.StartTimer):
                self._timers[action.timer_id] = self.clock.now() + action.seconds
            elif isinstance(action, act.CancelTimer):
                self._timers.pop(action.timer_id, None)
            elif isinstance(action, act.SendApdu):
                out.append(self._apdu(action))
            elif isinstance(action, act.CallBackend):
                reply = self.backend(action)
                if isinstance(reply, tuple):
                    status, body = reply
                    out.append(
                        ev.BackendAnswered(request_id=action.request_id, status=status, body=body)
                    )
                elif isinstance(reply, str):
                    out.append(ev.BackendFailed(request_id=action.request_id, reason=reply))
            elif isinstance(action, act.EmitResult):
                run.results.append(action.result)
            elif isinstance(action, act.ShowScreen):
                reaction = self._on_screen(action)
                if reaction is not None:
                    out.append(reaction)
        return out

    def _apdu(self, action: act.SendApdu) -> ev.Event:
        if self.card is None:
            return ev.ApduFailed(request_id=action.request_id, reason="no card")
        return ev.ApduAnswered(
            request_id=action.request_id, response=self.card.process(action.command)
        )

    def _on_screen(self, screen: act.ShowScreen) -> ev.Event | None:
        p = self.patient
        if screen.screen is Screen.SCAN_CARD_FACE:
            return ev.CardFaceScanned(collation_b=next(self._ocr, None))
        if screen.screen is Screen.CHOOSE_METHOD:
            if p.method.value in screen.options:
                return ev.MethodChosen(method=p.method)
            if screen.options:
                return ev.MethodChosen(method=Method(screen.options[0]))
            return None
        if screen.screen is Screen.LOOK_AT_CAMERA:
            score = next(self._faces, _GAVE_UP)
            if score is _GAVE_UP:
                return None
            return self._later(p.capture_s, ev.FaceCaptured(score=score))
        if screen.screen is Screen.ENTER_PIN:
            digits = next(self._pins, _GAVE_UP)
            if digits is _GAVE_UP:
                return None
            return self._later(p.typing_s, ev.PinEntered(digits=digits))
        if screen.screen is Screen.CONSENT and screen.item is not None:
            return ev.ConsentAnswered(item=screen.item, agreed=p.consents.get(screen.item, False))
        if screen.screen is Screen.ASK_STAFF and self.staff.comes:
            return ev.StaffSwitchedMode(mode=ReaderMode.VISUAL, operator_id=self.staff.operator_id)
        if screen.screen is Screen.VISUAL_CHECK and self.staff.comes:
            return ev.VisualCheckDone(
                operator_id=self.staff.operator_id, same_person=self.staff.same_person
            )
        return None

    def _later(self, seconds: float, event: ev.Event) -> ev.Event | None:
        """The patient acts ``seconds`` from now, unless a timer runs out first (then the
        reader has moved on and the late action is lost, as at a real reader)."""
        deadline = self.clock.now() + seconds
        if self._timers and min(self._timers.values()) <= deadline:
            return None
        self.clock.jump(seconds)
        return event


_GAVE_UP: Any = object()


def _forever(value: str | None) -> Iterator[str | None]:
    while True:
        yield value


def asgi_backend(
    post: Callable[[str, dict[str, Any] | None, dict[str, str]], tuple[int, bytes]],
) -> BackendCall:
    """A :data:`BackendCall` over any ``post(path, json_body, headers) -> (status, raw)``
    (e.g. a ``starlette.testclient.TestClient`` wrapped by the caller, which adds the
    facility credential)."""

    def call(action: act.CallBackend) -> BackendReply:
        status, raw = post(action.path, action.body, dict(action.headers))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        return status, body

    return call
