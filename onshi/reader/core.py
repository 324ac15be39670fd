"""The reader's core: the rules every flow obeys, its outputs and its sessions.

Why a base class: the flows (:mod:`~onshi.reader.cardread`, :mod:`~onshi.reader.identify`,
:mod:`~onshi.reader.backendflow`) are mixins over this core, so each role sits in its own
module while :class:`~onshi.reader.machine.Reader` stays one state machine with one state,
one request counter and one set of timers. The core checks events against the transition
table, numbers requests, starts and cancels timers, and emits the result exactly once.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from onshi.apdu import CommandAPDU
from onshi.clock import Clock
from onshi.dates import JST
from onshi.reader import actions as act
from onshi.reader import events as ev
from onshi.reader.actions import Screen
from onshi.reader.events import Method, ReaderMode
from onshi.reader.messages import MSG_UNREADABLE
from onshi.reader.parse import build_command
from onshi.reader.policy import ReaderPolicy
from onshi.reader.results import (
    Fallback,
    Outcome,
    ReaderResult,
    SessionCounts,
)
from onshi.reader.states import (
    EVENTS,
    GLOBAL_EVENTS,
    NEXT,
    ReaderProtocolError,
    State,
)

S = State


@dataclass(slots=True)
class Session:
    """Everything learned from one card (dropped on removal or swap)."""

    number: int
    key: str
    """Idempotency-Key / ArbitraryFileIdentifier stem: unique per reader and session."""
    card: bool = True
    finished: bool = False
    token: str | None = None
    cert_head: bytes = b""
    cert_der: bytes | None = None
    in_grace: bool = False
    notices: list[str] = field(default_factory=list)
    pin_tries: int | None = None
    """Tries left on the auth PIN (``None``: the card did not say)."""
    ocr_scans: int = 0
    ocr_digits: str | None = None
    """The OCR digits being tried; cleared once sent."""
    rejected_b: set[str] = field(default_factory=set)
    collation_b: str | None = None
    """照合番号B the card accepted (safe to present to the other AP)."""
    kenhojo_present: bool = False
    basic4_head: bytes = b""
    basic4: dict[str, str] | None = None
    face_head: bytes = b""
    face_failed: bool = False
    face_failures: int = 0
    pending_pin: str | None = None
    """Digits the patient typed, used for exactly one VERIFY, then forgotten."""
    challenge: bytes | None = None
    signature: bytes | None = None
    method: Method | None = None
    operator_id: str | None = None
    face_score: float | None = None
    face_at: float | None = None
    patient_reference: str | None = None
    public: dict[str, Any] = field(default_factory=dict)
    consent_queue: list[str] = field(default_factory=list)
    agreed: list[str] = field(default_factory=list)
    consent_attempts: int = 0
    counts: SessionCounts = field(default_factory=SessionCounts)


class ReaderCore:
    """State, rules and outputs shared by every flow (see the module docstring)."""

    def __init__(
        self,
        policy: ReaderPolicy | None = None,
        *,
        clock: Clock,
        new_key: Callable[[], str] | None = None,
    ) -> None:
        """``new_key`` gives each session its Idempotency-Key stem (default: 128 random bits;
        derived from the clock it repeated across runs that start at the same virtual time,
        so a second run's consent was taken for the first one's)."""
        self.policy = policy or ReaderPolicy()
        self.clock = clock
        self._new_key = new_key or (lambda: secrets.token_hex(16))
        self.mode: ReaderMode = self.policy.mode
        self.state: State = S.IDLE
        self._ids = 0
        self._outstanding: int | None = None
        self._timers: dict[str, int] = {}
        self._sessions = 0
        self._session: Session | None = None
        self._out: list[act.Action] = []
        self._event: ev.Event | None = None

    # -- the public surface ----------------------------------------------------------------

    def handle(self, event: ev.Event) -> list[act.Action]:
        """Feed one event; get what the reader does about it, in order."""
        self._check_allowed(event)
        self._out = []
        self._event = event
        answers = ev.ApduAnswered | ev.ApduFailed | ev.BackendAnswered | ev.BackendFailed
        if isinstance(event, answers) and not self._is_outstanding(event):
            return []  # a late answer to a request the reader gave up on
        handler = getattr(self, f"_on_{type(event).__name__}")
        handler(event)
        return self._out

    @property
    def session_active(self) -> bool:
        """A card check (or a staff query) is running and has not produced its result."""
        return self._session is not None and not self._session.finished

    # -- rules -------------------------------------------------------------------------------

    def _check_allowed(self, event: ev.Event) -> None:
        kind = type(event)
        if kind in GLOBAL_EVENTS or kind in EVENTS[self.state]:
            return
        answers = ev.ApduAnswered | ev.ApduFailed | ev.BackendAnswered | ev.BackendFailed
        if isinstance(event, answers) and self._known_stale(event.request_id):
            return
        raise ReaderProtocolError(
            f"event {kind.__name__} not allowed in state {self.state.name}",
            rule="EVENTS: each state accepts only its own events",
            state=self.state,
            event=event,
        )

    def _known_stale(self, request_id: int) -> bool:
        return 0 < request_id <= self._ids and request_id != self._outstanding

    def _is_outstanding(self, event: Any) -> bool:
        if event.request_id == self._outstanding:
            return True
        if self._known_stale(event.request_id):
            return False
        raise ReaderProtocolError(
            f"answer to request {event.request_id}, which the reader never sent",
            rule="answers quote the request_id of an action the reader returned",
            state=self.state,
            event=event,
        )

    def _goto(self, state: State) -> None:
        if state not in NEXT[self.state]:
            raise AssertionError(f"transition {self.state.name} -> {state.name} not in NEXT")
        self.state = state

    # -- output helpers ----------------------------------------------------------------------

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _count(self, **more: int) -> None:
        s = self._s
        values = {k: getattr(s.counts, k) + v for k, v in more.items()}
        s.counts = replace(s.counts, **values)

    def _screen(self, screen: Screen, message: str, **kw: Any) -> None:
        self._out.append(act.ShowScreen(screen=screen, message=message, **kw))

    def _apdu(self, state: State, command: CommandAPDU, purpose: str) -> None:
        self._goto(state)
        self._outstanding = self._next_id()
        raw = command.to_bytes()
        out = act.SendApdu(request_id=self._outstanding, command=raw, purpose=purpose)
        self._count(
            apdus=1,
            pin_verifies=int(state is S.VERIFY_PIN),
            collation_verifies=int(state in (S.VERIFY_KENHOJO_B, S.VERIFY_KENMEN_B)),
            signatures=int(out.is_signature),
        )
        self._out.append(out)

    def _call(
        self,
        state: State,
        path: str,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        self._goto(state)
        self._outstanding = self._next_id()
        self._count(backend_calls=1)
        self._out.append(
            act.CallBackend(
                request_id=self._outstanding,
                method="POST",
                path=path,
                body=body,
                headers=headers or {},
                timeout_s=self.policy.backend_timeout_s,
            )
        )
        self._start_timer("backend", self.policy.backend_timeout_s)

    def _start_timer(self, name: str, seconds: float) -> None:
        self._cancel_timer(name)
        timer_id = self._next_id()
        self._timers[name] = timer_id
        self._out.append(act.StartTimer(timer_id=timer_id, name=name, seconds=seconds))

    def _cancel_timer(self, name: str) -> None:
        timer_id = self._timers.pop(name, None)
        if timer_id is not None:
            self._out.append(act.CancelTimer(timer_id=timer_id))

    def _cancel_all_timers(self) -> None:
        for name in list(self._timers):
            self._cancel_timer(name)

    @property
    def _s(self) -> Session:
        assert self._session is not None, f"no session in state {self.state.name}"
        return self._session

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.now(), JST)

    # -- sessions ----------------------------------------------------------------------------

    def _new_session(self, *, card: bool) -> Session:
        self._sessions += 1
        self._session = Session(number=self._sessions, key=self._new_key(), card=card)
        return self._session

    def _finish(
        self,
        outcome: Outcome,
        message: str,
        *,
        code: str | None = None,
        fallback: Fallback = Fallback.NONE,
        mismatch: tuple[str, ...] = (),
    ) -> None:
        """Emit the session's result once and rest in DONE (card on) or IDLE (no card)."""
        s = self._s
        self._cancel_all_timers()
        self._outstanding = None
        s.pending_pin = None
        s.finished = True
        screen = Screen.DONE if outcome is Outcome.ELIGIBLE else Screen.ERROR
        self._screen(screen, message, code=code)
        result = ReaderResult(
            outcome=outcome,
            message=message,
            method=s.method,
            code=code,
            fallback=fallback,
            notices=tuple(dict.fromkeys(s.notices)),
            public=MappingProxyType(dict(s.public)),
            mismatch=mismatch,
            counts=s.counts,
        )
        self._out.append(act.EmitResult(result=result))
        self._goto(S.DONE if s.card else S.IDLE)

    def _abort(self, message: str) -> None:
        if self.session_active:
            self._finish(Outcome.ABORTED, message, fallback=Fallback.RETRY)

    def _unreadable(self, why: str) -> None:
        self._finish(Outcome.CARD_UNREADABLE, MSG_UNREADABLE, code="001", fallback=Fallback.RETRY)

    def _select(self, state: State, aid: bytes, purpose: str) -> None:
        self._apdu(state, build_command(0x00, 0xA4, 0x04, 0x0C, aid), purpose)

    def _select_ef(self, state: State, fid: int, purpose: str) -> None:
        self._apdu(state, build_command(0x00, 0xA4, 0x02, 0x0C, fid.to_bytes(2, "big")), purpose)

    def _read(self, state: State, offset: int, length: int, purpose: str) -> None:
        extended = length > 256
        read = build_command(0x00, 0xB0, offset >> 8, offset & 0xFF, le=length, extended=extended)
        self._apdu(state, read, purpose)

    def _query_tries(self, state: State, purpose: str) -> None:
        self._apdu(state, build_command(0x00, 0x20, 0x00, 0x80), purpose)

    def _verify(self, state: State, secret: str, purpose: str) -> None:
        self._apdu(state, build_command(0x00, 0x20, 0x00, 0x80, secret.encode("ascii")), purpose)

    # -- steps the flows provide (the reader composes them) ---------------------------------
    # Declared here so each mixin can name the steps another one owns; the Reader's MRO puts
    # the real ones (cardread, identify, backendflow, machine) before these.

    def _after_card_reads(self) -> None:
        raise NotImplementedError

    def _cert_invalid(self) -> None:
        raise NotImplementedError

    def _scan_card_face(self, message: str = "") -> None:
        raise NotImplementedError

    def _visual_check(self) -> None:
        raise NotImplementedError

    def _ask_staff(self, why: str) -> None:
        raise NotImplementedError

    def _face_fallback(self, why: str) -> None:
        raise NotImplementedError

    def _enter_pin(self, message: str) -> None:
        raise NotImplementedError

    def _query_card(self) -> None:
        raise NotImplementedError

    def _backend_failed(self, reason: str) -> None:
        raise NotImplementedError

    def _consent_answer(self, item: str, *, agreed: bool) -> None:
        raise NotImplementedError
