"""What a reader asks its driver to do: the actions :meth:`Reader.handle` returns.

Small frozen classes in the h11 style. The reader never does I/O itself: it asks for an APDU,
an HTTP call, a screen, a timer, and hands over its result. Requests carry an id that the
answering event quotes back (:mod:`onshi.reader.events`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from onshi.reader.results import ReaderResult

__all__ = [
    "Action",
    "CallBackend",
    "CancelTimer",
    "EmitResult",
    "Screen",
    "SendApdu",
    "ShowScreen",
    "StartTimer",
]


class Screen(StrEnum):
    """What the reader's display shows; the patient or the staff react to it."""

    WELCOME = "welcome"
    """カードを置いてください."""
    READING = "reading"
    """Reading the card: do not remove it."""
    SCAN_CARD_FACE = "scan_card_face"
    """The card-face scanner reads 照合番号B (the world answers with ``CardFaceScanned``)."""
    CHOOSE_METHOD = "choose_method"
    """顔認証 / 暗証番号 (``options`` lists what is offered)."""
    LOOK_AT_CAMERA = "look_at_camera"
    """Face capture (the world answers with ``FaceCaptured``)."""
    ENTER_PIN = "enter_pin"
    """PIN entry (``tries_left`` shown; a warning at one left)."""
    PIN_LOCKED = "pin_locked"
    ASK_STAFF = "ask_staff"
    """受付にお声がけください: only staff can go on (目視確認モード)."""
    VISUAL_CHECK = "visual_check"
    """目視確認: staff compare the card photo with the patient."""
    CONSENT = "consent"
    """One consent item (``item``), or ``all`` for 包括同意."""
    NOTICE = "notice"
    """Information the patient should see (certificate expiry, grace)."""
    ERROR = "error"
    """The check cannot go on here (``code`` is the on-reader code when there is one)."""
    DONE = "done"
    """The check finished (eligible or not); remove the card."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """Base class of every reader action."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SendApdu(Action):
    """Send ``command`` to the card; answer with ``ApduAnswered(request_id=...)``."""

    request_id: int
    command: bytes
    purpose: str
    """What the reader wants from this APDU, for traces and people."""

    @property
    def is_verify_with_data(self) -> bool:
        """A VERIFY that presents a secret (and may cost a try)."""
        return len(self.command) > 5 and self.command[1] == 0x20

    @property
    def is_signature(self) -> bool:
        """A COMPUTE DIGITAL SIGNATURE (``80 2A``)."""
        return self.command[:2] == b"\x80\x2a"


@dataclass(frozen=True, slots=True, kw_only=True)
class CallBackend(Action):
    """An HTTP request to the backend contract (openapi.yaml); answer with
    ``BackendAnswered``/``BackendFailed``. ``timeout_s`` bounds it (the reader also runs a
    timer of its own, so a driver that never answers still ends in a failure)."""

    request_id: int
    method: str
    path: str
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)
    """Extra headers (``Idempotency-Key``); the facility credential is the driver's."""
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ShowScreen(Action):
    """Put a screen up. ``message`` is the text shown (Japanese, as a reader shows it)."""

    screen: Screen
    message: str
    code: str | None = None
    """On-reader code (001 unreadable, 002 not a My Number card, 006 certificate)."""
    options: tuple[str, ...] = ()
    item: str | None = None
    tries_left: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTimer(Action):
    """Fire ``TimerFired(timer_id=...)`` after ``seconds`` unless cancelled."""

    timer_id: int
    name: str
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelTimer(Action):
    timer_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EmitResult(Action):
    """The session's outcome (the reader's side of the ``face`` folder result file)."""

    result: ReaderResult
