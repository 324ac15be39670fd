"""The reader's states and its transition table (h11's ``_state.py`` in spirit).

Rule 1: :data:`EVENTS` says which events each state accepts; anything else raises
:class:`ReaderProtocolError` naming the state, the event and the rule. :data:`GLOBAL_EVENTS`
are accepted everywhere (each handler still checks what makes sense, e.g. removing a card when
none is present).
Rule 2: :data:`NEXT` lists every state a state may lead to; the machine checks each move
against it, so the table cannot drift from the code (the hypothesis test drives random event
sequences through both).

One state per step, named for what the reader is waiting for: an APDU answer (the
``SELECT_*``/``READ_*``/``QUERY_*``/``VERIFY_*``/``SIGN`` states), a backend answer
(``GET_CHALLENGE``, ``QUERY_*`` on the backend), the patient (``SCAN_CARD_FACE``,
``CHOOSE_METHOD``, ``AWAIT_FACE``, ``ENTER_PIN``, ``CONSENT``) or the staff (``AWAIT_STAFF``,
``VISUAL_CHECK``).
"""

from __future__ import annotations

from enum import Enum

from onshi.reader import events as ev

__all__ = [
    "APDU_STATES",
    "BACKEND_STATES",
    "EVENTS",
    "GLOBAL_EVENTS",
    "NEXT",
    "ReaderProtocolError",
    "State",
]


class ReaderProtocolError(Exception):
    """An event the reader's rules do not allow now. ``rule`` says which rule was broken."""

    def __init__(self, message: str, *, rule: str, state: State, event: ev.Event) -> None:
        super().__init__(message)
        self.rule = rule
        self.state = state
        self.event = event


class State(Enum):
    IDLE = "idle"
    """No card, nothing in progress."""
    # card identification (card_apdu.md §8 A-C)
    SELECT_JPKI = "select_jpki"
    SELECT_TOKEN = "select_token"
    READ_TOKEN = "read_token"
    SELECT_AUTH_CERT = "select_auth_cert"
    READ_CERT_HEAD = "read_cert_head"
    READ_CERT_BODY = "read_cert_body"
    SELECT_AUTH_PIN = "select_auth_pin"
    QUERY_PIN_TRIES = "query_pin_tries"
    # card face and 基本4情報 (券面事項入力補助AP, 照合番号B)
    SCAN_CARD_FACE = "scan_card_face"
    SELECT_KENHOJO = "select_kenhojo"
    SELECT_KENHOJO_B = "select_kenhojo_b"
    QUERY_KENHOJO_B = "query_kenhojo_b"
    VERIFY_KENHOJO_B = "verify_kenhojo_b"
    SELECT_BASIC4 = "select_basic4"
    READ_BASIC4_HEAD = "read_basic4_head"
    READ_BASIC4_BODY = "read_basic4_body"
    CHOOSE_METHOD = "choose_method"
    # face (券面AP, card_apdu.md §8 H)
    SELECT_KENMEN = "select_kenmen"
    SELECT_KENMEN_B = "select_kenmen_b"
    QUERY_KENMEN_B = "query_kenmen_b"
    VERIFY_KENMEN_B = "verify_kenmen_b"
    SELECT_FACE = "select_face"
    READ_FACE_HEAD = "read_face_head"
    READ_FACE_BODY = "read_face_body"
    AWAIT_FACE = "await_face"
    # PIN (card_apdu.md §8 D): one VERIFY and one signature per check
    ENTER_PIN = "enter_pin"
    GET_CHALLENGE = "get_challenge"
    SELECT_JPKI_SIGN = "select_jpki_sign"
    SELECT_PIN_SIGN = "select_pin_sign"
    VERIFY_PIN = "verify_pin"
    SELECT_AUTH_KEY = "select_auth_key"
    SIGN = "sign"
    # staff
    AWAIT_STAFF = "await_staff"
    VISUAL_CHECK = "visual_check"
    # backend
    QUERY_CARD = "query_card"
    CONSENT = "consent"
    WRITE_CONSENT = "write_consent"
    QUERY_NUMBERS = "query_numbers"
    QUERY_DEMOGRAPHICS = "query_demographics"
    DONE = "done"
    """The session's result was emitted; the card may still be on the reader."""


S = State

APDU_STATES = frozenset(
    {
        S.SELECT_JPKI, S.SELECT_TOKEN, S.READ_TOKEN, S.SELECT_AUTH_CERT, S.READ_CERT_HEAD,
        S.READ_CERT_BODY, S.SELECT_AUTH_PIN, S.QUERY_PIN_TRIES, S.SELECT_KENHOJO,
        S.SELECT_KENHOJO_B, S.QUERY_KENHOJO_B, S.VERIFY_KENHOJO_B, S.SELECT_BASIC4,
        S.READ_BASIC4_HEAD, S.READ_BASIC4_BODY, S.SELECT_KENMEN, S.SELECT_KENMEN_B,
        S.QUERY_KENMEN_B, S.VERIFY_KENMEN_B, S.SELECT_FACE, S.READ_FACE_HEAD, S.READ_FACE_BODY,
        S.SELECT_JPKI_SIGN, S.SELECT_PIN_SIGN, S.VERIFY_PIN, S.SELECT_AUTH_KEY, S.SIGN,
    }
)  # fmt: skip
"""States waiting for the card's answer (``ApduAnswered`` / ``ApduFailed``)."""

BACKEND_STATES = frozenset(
    {S.GET_CHALLENGE, S.QUERY_CARD, S.WRITE_CONSENT, S.QUERY_NUMBERS, S.QUERY_DEMOGRAPHICS}
)
"""States waiting for the backend (``BackendAnswered`` / ``BackendFailed``)."""

GLOBAL_EVENTS: frozenset[type[ev.Event]] = frozenset(
    {ev.CardInserted, ev.CardRemoved, ev.StaffSwitchedMode, ev.TimerFired}
)
"""Accepted in every state: the card slot, the staff's mode switch and timers."""

_STAFF_QUERIES = frozenset({ev.NumberQueryRequested, ev.DemographicsQueryRequested})

EVENTS: dict[State, frozenset[type[ev.Event]]] = {
    **{s: frozenset({ev.ApduAnswered, ev.ApduFailed}) for s in APDU_STATES},
    **{s: frozenset({ev.BackendAnswered, ev.BackendFailed}) for s in BACKEND_STATES},
    S.IDLE: _STAFF_QUERIES,
    S.DONE: _STAFF_QUERIES,
    S.SCAN_CARD_FACE: frozenset({ev.CardFaceScanned}),
    S.CHOOSE_METHOD: frozenset({ev.MethodChosen}),
    S.AWAIT_FACE: frozenset({ev.FaceCaptured}),
    S.ENTER_PIN: frozenset({ev.PinEntered}),
    S.VISUAL_CHECK: frozenset({ev.VisualCheckDone}),
    S.CONSENT: frozenset({ev.ConsentAnswered}),
}
"""Rule 1: the events each state accepts besides :data:`GLOBAL_EVENTS`."""

_END = frozenset({S.DONE, S.IDLE})
"""A session can end from anywhere (result emitted, or the card removed)."""
_AFTER_READS = frozenset({S.CHOOSE_METHOD, S.AWAIT_STAFF, S.VISUAL_CHECK, S.QUERY_DEMOGRAPHICS})
"""Where the reader goes once it has read the card (by mode and by what the card allows)."""
_FACE_FALLBACK = frozenset({S.ENTER_PIN, S.AWAIT_STAFF, S.VISUAL_CHECK})
_START = frozenset({S.SELECT_JPKI})
"""A card inserted (or swapped) starts over from the JPKI AP."""
_STAFF = frozenset({S.QUERY_NUMBERS, S.QUERY_DEMOGRAPHICS})

NEXT: dict[State, frozenset[State]] = {
    S.IDLE: _START | _STAFF,
    S.SELECT_JPKI: frozenset({S.SELECT_TOKEN}),
    S.SELECT_TOKEN: frozenset({S.READ_TOKEN}),
    S.READ_TOKEN: frozenset({S.SELECT_AUTH_CERT}),
    S.SELECT_AUTH_CERT: frozenset({S.READ_CERT_HEAD}),
    S.READ_CERT_HEAD: frozenset({S.READ_CERT_BODY}),
    S.READ_CERT_BODY: frozenset({S.SELECT_AUTH_PIN}),
    S.SELECT_AUTH_PIN: frozenset({S.QUERY_PIN_TRIES, S.SCAN_CARD_FACE}),
    S.QUERY_PIN_TRIES: frozenset({S.SCAN_CARD_FACE}),
    S.SCAN_CARD_FACE: frozenset({S.SCAN_CARD_FACE, S.SELECT_KENHOJO}) | _AFTER_READS,
    S.SELECT_KENHOJO: frozenset({S.SELECT_KENHOJO_B}) | _AFTER_READS,
    S.SELECT_KENHOJO_B: frozenset({S.QUERY_KENHOJO_B}) | _AFTER_READS,
    S.QUERY_KENHOJO_B: frozenset({S.VERIFY_KENHOJO_B}) | _AFTER_READS,
    S.VERIFY_KENHOJO_B: frozenset({S.SELECT_BASIC4, S.SCAN_CARD_FACE}) | _AFTER_READS,
    S.SELECT_BASIC4: frozenset({S.READ_BASIC4_HEAD}) | _AFTER_READS,
    S.READ_BASIC4_HEAD: frozenset({S.READ_BASIC4_BODY}) | _AFTER_READS,
    S.READ_BASIC4_BODY: _AFTER_READS,
    S.CHOOSE_METHOD: frozenset({S.CHOOSE_METHOD, S.SELECT_KENMEN, S.ENTER_PIN, S.VISUAL_CHECK}),
    S.SELECT_KENMEN: frozenset({S.SELECT_KENMEN_B}) | _FACE_FALLBACK,
    S.SELECT_KENMEN_B: frozenset({S.QUERY_KENMEN_B}) | _FACE_FALLBACK,
    S.QUERY_KENMEN_B: frozenset({S.VERIFY_KENMEN_B}) | _FACE_FALLBACK,
    S.VERIFY_KENMEN_B: frozenset({S.SELECT_FACE}) | _FACE_FALLBACK,
    S.SELECT_FACE: frozenset({S.READ_FACE_HEAD}) | _FACE_FALLBACK,
    S.READ_FACE_HEAD: frozenset({S.READ_FACE_BODY}) | _FACE_FALLBACK,
    S.READ_FACE_BODY: frozenset({S.AWAIT_FACE}) | _FACE_FALLBACK,
    S.AWAIT_FACE: frozenset({S.AWAIT_FACE, S.QUERY_CARD}) | _FACE_FALLBACK,
    S.ENTER_PIN: frozenset(
        {
            S.ENTER_PIN,
            S.GET_CHALLENGE,
            S.SELECT_JPKI_SIGN,
            S.SELECT_KENMEN,
            S.AWAIT_STAFF,
            S.VISUAL_CHECK,
        }
    ),
    S.GET_CHALLENGE: frozenset({S.SELECT_JPKI_SIGN}),
    S.SELECT_JPKI_SIGN: frozenset({S.SELECT_PIN_SIGN}),
    S.SELECT_PIN_SIGN: frozenset({S.VERIFY_PIN}),
    S.VERIFY_PIN: frozenset(
        {S.SELECT_AUTH_KEY, S.ENTER_PIN, S.SELECT_KENMEN, S.AWAIT_STAFF, S.VISUAL_CHECK}
    ),
    S.SELECT_AUTH_KEY: frozenset({S.SIGN}),
    S.SIGN: frozenset({S.QUERY_CARD}),
    S.AWAIT_STAFF: frozenset({S.VISUAL_CHECK}),
    S.VISUAL_CHECK: frozenset({S.VISUAL_CHECK, S.QUERY_CARD}) | _AFTER_READS,
    S.QUERY_CARD: frozenset({S.CONSENT}),
    S.CONSENT: frozenset({S.CONSENT, S.WRITE_CONSENT}),
    S.WRITE_CONSENT: frozenset({S.WRITE_CONSENT}),
    S.QUERY_NUMBERS: frozenset(),
    S.QUERY_DEMOGRAPHICS: frozenset(),
    S.DONE: _START | _STAFF,
}
"""Rule 2: where each state may lead, besides ending (:data:`_END`) and starting over when a
card is inserted or swapped (:data:`_START`)."""

for _state in State:
    NEXT[_state] = NEXT[_state] | _END | _START
    EVENTS.setdefault(_state, frozenset())
del _state
