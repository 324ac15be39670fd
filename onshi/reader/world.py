"""The world around a reader, as data, and the synchronous in-process driver that plays it.

Why: the reader must learn everything from the card's and the backend's answers and from what
people do. The world is where those people live: a :class:`Patient` (what they type, how their
face matches, which consents they give, whether they brought the card, what the card-face
scanner reads) and the :class:`Staff` (whether they come, their operator id, what they see).
:class:`People` reacts to the reader's screens the way they would, for any driver
(:mod:`onshi.reader.drivers`). The :class:`WorldDriver` is the synchronous driver over an
in-process card (``onshi.card.Card.process``) and an in-process backend callable, on a
:class:`~onshi.clock.MockClock` that jumps to the next timer when nobody acts, so a 30-second
face flow runs in milliseconds. Bounded: at most ``max_events`` events per run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from onshi.clock import MockClock
from onshi.reader import actions as act
from onshi.reader import events as ev
from onshi.reader.actions import Screen
from onshi.reader.drivers import (
    BackendCall,
    BackendReply,
    Reaction,
    SyncDriver,
    json_body,
)
from onshi.reader.drivers import Run as WorldRun
from onshi.reader.events import Method, ReaderMode
from onshi.reader.machine import Reader

if TYPE_CHECKING:
    from onshi.card import Card

__all__ = [
    "BackendCall",
    "BackendReply",
    "Patient",
    "People",
    "Staff",
    "WorldDriver",
    "WorldRun",
    "asgi_backend",
]


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


class People:
    """The patient and the staff in front of a reader: each screen gets what they would do
    and how long it takes them (a :data:`~onshi.reader.drivers.React` for any driver)."""

    def __init__(self, patient: Patient, staff: Staff, *, printed_b: str | None = None) -> None:
        """``printed_b``: the 照合番号B printed on the card, which the scanner reads when the
        patient's ``ocr`` is not scripted."""
        self.patient = patient
        self.staff = staff
        self._pins: Iterator[str | None] = iter(patient.pins)
        self._faces: Iterator[float | None] = iter(patient.face_scores)
        ocr = patient.ocr
        self._ocr: Iterator[str | None] = iter(ocr) if ocr is not None else _forever(printed_b)

    def __call__(self, screen: act.ShowScreen) -> Reaction | None:
        event = self._react(screen)
        if event is None:
            return None
        if isinstance(event, ev.FaceCaptured):
            return self.patient.capture_s, event
        if isinstance(event, ev.PinEntered):
            return self.patient.typing_s, event
        return 0.0, event

    def _react(self, screen: act.ShowScreen) -> ev.Event | None:
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
            return None if score is _GAVE_UP else ev.FaceCaptured(score=score)
        if screen.screen is Screen.ENTER_PIN:
            digits = next(self._pins, _GAVE_UP)
            return None if digits is _GAVE_UP else ev.PinEntered(digits=digits)
        if screen.screen is Screen.CONSENT and screen.item is not None:
            return ev.ConsentAnswered(item=screen.item, agreed=p.consents.get(screen.item, False))
        if screen.screen is Screen.ASK_STAFF and self.staff.comes:
            return ev.StaffSwitchedMode(mode=ReaderMode.VISUAL, operator_id=self.staff.operator_id)
        if screen.screen is Screen.VISUAL_CHECK and self.staff.comes:
            return ev.VisualCheckDone(
                operator_id=self.staff.operator_id, same_person=self.staff.same_person
            )
        return None


class WorldDriver(SyncDriver):
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
        self.card = card
        self.patient = patient or Patient()
        self.staff = staff or Staff()
        printed = card.profile.collation_b if card is not None else None
        super().__init__(
            reader,
            clock=clock,
            backend=backend,
            transmit=card.process if card is not None else None,
            react=People(self.patient, self.staff, printed_b=printed),
            max_events=max_events,
        )

    def present_card(self) -> WorldRun:
        """The patient places the card (if they brought it); run until the session's result."""
        run = WorldRun()
        if self.card is None or not self.patient.brings_card:
            return run
        self.card.power_on()
        self.run([ev.CardInserted(atr=self.card.atr)], run)
        return run

    def remove_card(self, run: WorldRun | None = None) -> WorldRun:
        return self.feed(ev.CardRemoved(), run)

    def staff_event(self, event: ev.Event) -> WorldRun:
        """Staff act at the terminal (mode switch, number or demographics query)."""
        return self.feed(event)


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
        return status, json_body(raw)

    return call
