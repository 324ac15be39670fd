"""Random event sequences against the reader (hypothesis ``RuleBasedStateMachine``).

Invariants: the reader raises nothing but :class:`ReaderProtocolError` (the documented rule
errors), its moves stay inside the transition table (``NEXT``, checked by the machine itself),
and a VERIFY with data only ever carries a PIN the patient typed in this session, once, or a
照合番号B the scanner read in this session.
"""

from __future__ import annotations

import functools
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from onshi.card import Card
from onshi.profiles import load_profile
from onshi.reader import Reader, ReaderPolicy, ReaderProtocolError, State
from onshi.reader import actions as act
from onshi.reader import events as ev
from onshi.reader.events import Method, ReaderMode

from .helpers import AS_OF, card_answer, start_clock

PROFILES = ("valid", "pin-nearly-locked", "face-auth-card", "juki-card", "cert-expiring")
PIN_EF = bytes.fromhex("00A4020C020018")
COLLATION_EFS = (bytes.fromhex("00A4020C020015"), bytes.fromhex("00A4020C020012"))


@functools.cache
def _profile(name: str) -> Any:
    return load_profile(name, today=AS_OF)


def fresh_card(name: str) -> Card:
    """A new card (fresh counters) each time; keys and certificates come from the PKI cache."""
    return Card.from_profile(_profile(name))


BODIES = st.sampled_from(
    [
        None,
        {},
        card_answer(),
        card_answer("別人", "19000101", "1"),
        {"Challenge": "A" * 43 + "=", "ExpiresAt": "x"},
        {"MessageHeader": {"SegmentOfResult": "9", "ErrorCode": "ONSE204"}},
        {"ConsentId": 1, "Kinds": ["checkup"], "PharmacistsInfoConsFlg": "1"},
    ]
)


class ReaderFuzz(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = start_clock()
        self.reader = Reader(ReaderPolicy(face_tries=2, ocr_attempts=2), clock=self.clock)
        self.card: Card | None = None
        self.apdu: act.SendApdu | None = None
        self.call: act.CallBackend | None = None
        self.timers: list[int] = []
        self.typed: list[str] = []
        self.scanned: set[str] = set()
        self.selected: bytes | None = None
        self.auto = True
        """Whether the card answers every APDU at once (else the rules answer them)."""

    # -- feeding ---------------------------------------------------------------------------

    def feed(self, event: ev.Event) -> None:
        try:
            actions = self.reader.handle(event)
        except ReaderProtocolError as error:
            assert error.rule and error.state is self.reader.state
            return
        if isinstance(event, ev.PinEntered) and event.digits is not None:
            self.typed.append(event.digits)
        if isinstance(event, ev.CardFaceScanned) and event.collation_b is not None:
            self.scanned.add(event.collation_b)
        answers = []
        for action in actions:
            self.check(action)
            if isinstance(action, act.SendApdu) and self.auto and self.card is not None:
                self.apdu = None
                answer = self.card.process(action.command)
                answers.append(ev.ApduAnswered(request_id=action.request_id, response=answer))
        for answer in answers:
            self.feed(answer)

    def check(self, action: act.Action) -> None:
        if isinstance(action, act.SendApdu):
            self.apdu = action
            command = action.command
            if command[:4] == bytes.fromhex("00A4040C"):
                self.selected = None
            elif command[:4] == bytes.fromhex("00A4020C"):
                self.selected = command
            elif action.is_verify_with_data:
                data = command[5:].decode("ascii")
                if self.selected == PIN_EF:
                    assert data in self.typed, f"VERIFY with a PIN nobody typed: {data}"
                    self.typed.remove(data)  # used once
                elif self.selected in COLLATION_EFS:
                    assert data in self.scanned, f"VERIFY with an unscanned 照合番号B: {data}"
        elif isinstance(action, act.CallBackend):
            self.call = action
        elif isinstance(action, act.StartTimer):
            self.timers.append(action.timer_id)
        elif isinstance(action, act.CancelTimer) and action.timer_id in self.timers:
            self.timers.remove(action.timer_id)

    def new_session(self) -> None:
        self.typed.clear()
        self.scanned.clear()

    # -- the card slot -----------------------------------------------------------------------

    @rule(name=st.sampled_from(PROFILES), auto=st.sampled_from([True, True, True, False]))
    def insert(self, name: str, auto: bool) -> None:
        self.auto = auto
        self.card = fresh_card(name)
        self.new_session()
        self.feed(ev.CardInserted(atr=self.card.atr))

    @precondition(lambda self: self.reader._session is not None and self.reader._session.card)
    @rule()
    def remove(self) -> None:
        self.new_session()
        self.feed(ev.CardRemoved())

    @precondition(lambda self: self.apdu is not None)
    @rule()
    def card_answers(self) -> None:
        if self.apdu is not None and self.card is not None:
            apdu, self.apdu = self.apdu, None
            self.feed(
                ev.ApduAnswered(
                    request_id=apdu.request_id, response=self.card.process(apdu.command)
                )
            )

    @precondition(lambda self: self.apdu is not None)
    @rule(raw=st.binary(max_size=6))
    def garbage_answer(self, raw: bytes) -> None:
        if self.apdu is not None:
            apdu, self.apdu = self.apdu, None
            self.feed(ev.ApduAnswered(request_id=apdu.request_id, response=raw))

    @precondition(lambda self: self.apdu is not None)
    @rule()
    def contact_lost(self) -> None:
        if self.apdu is not None:
            apdu, self.apdu = self.apdu, None
            self.feed(ev.ApduFailed(request_id=apdu.request_id, reason="lost"))

    # -- the backend and time ----------------------------------------------------------------

    @precondition(lambda self: self.call is not None)
    @rule(status=st.sampled_from([200, 201, 409, 500, 503]), body=BODIES)
    def backend_answers(self, status: int, body: Any) -> None:
        if self.call is not None:
            call, self.call = self.call, None
            self.feed(ev.BackendAnswered(request_id=call.request_id, status=status, body=body))

    @precondition(lambda self: self.call is not None)
    @rule()
    def backend_ok(self) -> None:
        """A well-behaved backend, so that random runs get deep into the flows."""
        if self.call is None:
            return
        call, self.call = self.call, None
        if call.path == "/v1/challenges":
            status, body = 201, {"Challenge": "A" * 43 + "=", "ExpiresAt": "x"}
        elif call.path == "/v1/consents":
            status, body = 201, {"ConsentId": 1, "Kinds": call.body["Kinds"]}
        else:
            status, body = 200, card_answer()
        self.feed(ev.BackendAnswered(request_id=call.request_id, status=status, body=body))

    @precondition(lambda self: self.call is not None)
    @rule(reason=st.sampled_from(["timeout", "connection"]))
    def backend_fails(self, reason: str) -> None:
        if self.call is not None:
            call, self.call = self.call, None
            self.feed(ev.BackendFailed(request_id=call.request_id, reason=reason))

    @precondition(lambda self: bool(self.timers))
    @rule(data=st.data())
    def timer_fires(self, data: st.DataObject) -> None:
        if self.timers:
            timer_id = data.draw(st.sampled_from(self.timers))
            self.clock.jump(data.draw(st.floats(0, 400)))
            self.timers.remove(timer_id)
            self.feed(ev.TimerFired(timer_id=timer_id))

    @rule(request_id=st.integers(-2, 400))
    def stray_answer(self, request_id: int) -> None:
        self.feed(ev.ApduAnswered(request_id=request_id, response=b"\x90\x00"))

    # -- people ------------------------------------------------------------------------------

    @precondition(lambda self: self.reader.state in (State.SCAN_CARD_FACE,))
    @rule(
        scan=st.one_of(st.just("right"), st.none(), st.text("0123456789", min_size=14, max_size=14))
    )
    def scan(self, scan: str | None) -> None:
        if scan == "right" and self.card is not None:
            scan = self.card.profile.collation_b
        self.feed(ev.CardFaceScanned(collation_b=scan))

    @precondition(lambda self: self.reader.state in (State.CHOOSE_METHOD,))
    @rule(method=st.sampled_from([Method.PIN, Method.PIN, Method.FACE, Method.VISUAL]))
    def choose(self, method: Method) -> None:
        self.feed(ev.MethodChosen(method=method))

    @precondition(lambda self: self.reader.state in (State.ENTER_PIN,))
    @rule(
        digits=st.one_of(
            st.none(), st.sampled_from(["1234", "0000", "12", "１２３４"]), st.text(max_size=5)
        )
    )
    def type_pin(self, digits: str | None) -> None:
        self.feed(ev.PinEntered(digits=digits))

    @precondition(lambda self: self.reader.state in (State.AWAIT_FACE,))
    @rule(score=st.one_of(st.none(), st.floats(0, 1)))
    def face(self, score: float | None) -> None:
        self.feed(ev.FaceCaptured(score=score))

    @precondition(lambda self: self.reader.state in (State.CONSENT,))
    @rule(item=st.sampled_from(["all", "checkup", "medication", "surgery"]), agreed=st.booleans())
    def consent(self, item: str, agreed: bool) -> None:
        self.feed(ev.ConsentAnswered(item=item, agreed=agreed))

    @rule(mode=st.sampled_from([ReaderMode.AUTO] * 4 + [ReaderMode.VISUAL, ReaderMode.OUTAGE]))
    def staff_mode(self, mode: ReaderMode) -> None:
        self.feed(ev.StaffSwitchedMode(mode=mode, operator_id="staff"))

    @precondition(lambda self: self.reader.state in (State.VISUAL_CHECK,))
    @rule(same=st.booleans(), operator=st.sampled_from(["staff-1", "", " "]))
    def visual(self, same: bool, operator: str) -> None:
        self.feed(ev.VisualCheckDone(operator_id=operator, same_person=same))

    @precondition(
        lambda self: (
            self.reader.state
            in (
                State.IDLE,
                State.DONE,
            )
        )
    )
    @rule(birthdate=st.sampled_from(["19850412", "1985041", "20261399"]))
    def numbers(self, birthdate: str) -> None:
        self.feed(
            ev.NumberQueryRequested(
                insurer_number="01130012", symbol=None, number="1", branch=None, birthdate=birthdate
            )
        )

    @rule(
        event=st.sampled_from(
            [
                ev.PinEntered(digits="1234"),
                ev.FaceCaptured(score=0.99),
                ev.MethodChosen(method=Method.PIN),
                ev.ConsentAnswered(item="all", agreed=True),
                ev.VisualCheckDone(operator_id="s", same_person=True),
                ev.DemographicsQueryRequested(name="a", sex="1", birthdate="19800101", address="x"),
            ]
        )
    )
    def anything_anywhere(self, event: ev.Event) -> None:
        """Events out of place: a rule error, or (where allowed) an ordinary step."""
        if isinstance(event, ev.PinEntered) and self.reader.state is State.ENTER_PIN:
            return  # typed for real by type_pin
        self.feed(event)

    @precondition(
        lambda self: (
            self.reader.state
            in (State.SCAN_CARD_FACE, State.CHOOSE_METHOD, State.ENTER_PIN, State.GET_CHALLENGE)
        )
    )
    @rule(digits=st.sampled_from(["1234", "0000", "9999"]))
    def patient_goes_for_pin(self, digits: str) -> None:
        """The patient's natural next step towards a PIN check (gets random runs deep)."""
        state = self.reader.state
        if state is State.SCAN_CARD_FACE and self.card is not None:
            self.feed(ev.CardFaceScanned(collation_b=self.card.profile.collation_b))
        elif state is State.CHOOSE_METHOD:
            self.feed(ev.MethodChosen(method=Method.PIN))
        elif state is State.ENTER_PIN:
            self.feed(ev.PinEntered(digits=digits))
        elif self.call is not None:
            self.backend_ok()

    @invariant()
    def no_pin_waits_outside_the_pin_path(self) -> None:
        session = self.reader._session
        if session is not None and session.pending_pin is not None:
            assert self.reader.state.name in (
                "GET_CHALLENGE",
                "SELECT_JPKI_SIGN",
                "SELECT_PIN_SIGN",
            )


ReaderFuzz.TestCase.settings = settings(
    max_examples=200,
    derandomize=True,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestReaderFuzz = ReaderFuzz.TestCase
