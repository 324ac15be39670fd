"""What happens to a reader: the events a driver feeds to :meth:`Reader.handle`.

Small frozen classes in the h11 style. Three sources: the physical world (card slot, camera,
card-face scanner, touch screen), the staff (mode switch, visual check, number queries) and
the reader's own requests coming back (APDU answers, backend answers, timers). Answers carry
the ``request_id`` of the action they answer, so a late answer to a cancelled request (after a
card swap or a timeout) is recognised and dropped rather than mistaken for a new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "ApduAnswered",
    "ApduFailed",
    "BackendAnswered",
    "BackendFailed",
    "CardFaceScanned",
    "CardInserted",
    "CardRemoved",
    "ConsentAnswered",
    "DemographicsQueryRequested",
    "Event",
    "FaceCaptured",
    "Method",
    "MethodChosen",
    "NumberQueryRequested",
    "PinEntered",
    "ReaderMode",
    "StaffSwitchedMode",
    "TimerFired",
    "VisualCheckDone",
]


class Method(StrEnum):
    """How the patient is identified (the backend's ``Method`` values)."""

    FACE = "face"
    """顔認証."""
    PIN = "pin"
    """暗証番号 (利用者証明用, 4 digits)."""
    VISUAL = "visual"
    """目視確認 by a staff member."""


class ReaderMode(StrEnum):
    """The reader's operating mode, switched by staff from the 資格確認端末 (R-4.1, R-4.2)."""

    AUTO = "auto"
    """無人運転 (自動運転): the patient chooses face or PIN."""
    VISUAL = "visual"
    """目視確認モード: staff compare the card photo with the patient."""
    OUTAGE = "outage"
    """システム障害時モード: look people up by 氏名・性別・生年月日・住所 (facts §3.2)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base class of every reader event."""


# -- the physical world --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CardInserted(Event):
    """A card was placed on the reader; ``atr`` as the slot reports it."""

    atr: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class CardRemoved(Event):
    """The card left the slot. Everything the reader learned from it is forgotten."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CardFaceScanned(Event):
    """The card-face scanner's OCR of 照合番号B.

    照合番号B is 生年月日 (和暦 YYMMDD) + 有効期限の西暦年 + セキュリティコード.
    ``collation_b`` is what the OCR read, right or wrong; ``None`` when nothing was legible.
    """

    collation_b: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class FaceCaptured(Event):
    """One camera capture compared with the chip photo; ``score`` in 0..1, ``None`` when no
    usable face was captured (failure to acquire)."""

    score: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PinEntered(Event):
    """The patient typed a PIN on the touch screen; ``None``: they pressed "PIN unknown"."""

    digits: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MethodChosen(Event):
    """The patient chose 顔認証 or 暗証番号 on the method screen (R-4.1)."""

    method: Method


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentAnswered(Event):
    """The patient's answer on a consent screen. ``item`` is the screen's item
    (``checkup``/``medication``/``diagnosis``/``surgery``, or ``all`` for 包括同意)."""

    item: str
    agreed: bool


# -- staff ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffSwitchedMode(Event):
    """Staff switched the reader's mode from the terminal (takes effect at once, R-4.2)."""

    mode: ReaderMode
    operator_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VisualCheckDone(Event):
    """Staff compared the card's photo with the patient (目視確認)."""

    operator_id: str
    same_person: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberQueryRequested(Event):
    """Staff query by 保険者番号・記号・番号・枝番・生年月日 (資格確認書, old 保険証)."""

    insurer_number: str
    symbol: str | None
    number: str
    branch: str | None
    birthdate: str
    """yyyyMMdd."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DemographicsQueryRequested(Event):
    """Staff lookup by 氏名・性別・生年月日・住所 in システム障害時モード."""

    name: str
    sex: str
    birthdate: str
    address: str


# -- answers to the reader's own requests ---------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ApduAnswered(Event):
    """The card's answer to :class:`~onshi.reader.actions.SendApdu` ``request_id``."""

    request_id: int
    response: bytes
    """Data + SW1 SW2, as the transport returns it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ApduFailed(Event):
    """No answer to an APDU (contact lost, transport error)."""

    request_id: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendAnswered(Event):
    """The backend's HTTP answer to :class:`~onshi.reader.actions.CallBackend`."""

    request_id: int
    status: int
    body: Any
    """The decoded JSON body (``None`` when it was not JSON)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendFailed(Event):
    """No HTTP answer: ``reason`` is ``timeout``, ``connection`` or the client's error."""

    request_id: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired(Event):
    """A timer from :class:`~onshi.reader.actions.StartTimer` ran out."""

    timer_id: int
