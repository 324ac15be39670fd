"""Properties of the engine under random input (h11's fuzz invariant, as hypothesis tests).

Invariant: ``process`` never raises, always answers a well-formed R-APDU (>= 2 bytes, SW1 in
61-6F or 90), never the ``6F 00`` of the engine's internal-error net while powered, and no
retry counter moves except through VERIFY (INS 20).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from onshi.card import Card

from .factories import (
    AUTH_PIN,
    JPKI_AID,
    KENHOJO_AID,
    KENMEN_AID,
    MY_NUMBER,
    SIGN_PASSWORD,
    TEXT_PIN,
    make_profile,
)

RESET = None
"""A step that resets the card instead of sending an APDU."""

interesting_data = st.sampled_from(
    [
        JPKI_AID,
        KENHOJO_AID,
        KENMEN_AID,
        bytes.fromhex("A0000001510000"),
        AUTH_PIN.encode(),
        SIGN_PASSWORD.encode(),
        TEXT_PIN.encode(),
        MY_NUMBER.encode(),
        make_profile().collation_b.encode(),
        bytes.fromhex("3031300D060960864801650304020105000420") + bytes(32),
    ]
    + [fid.to_bytes(2, "big") for fid in range(0x20)]
)


@st.composite
def structured(draw: st.DrawFn) -> bytes:
    """Commands near the card's command set: right CLA/INS, plausible P1/P2, PINs, AIDs."""
    cla = draw(st.sampled_from([0x00, 0x00, 0x00, 0x80, 0x08, 0x0C]) | st.integers(0, 255))
    ins = draw(st.sampled_from([0xA4, 0xB0, 0x20, 0x24, 0x2A, 0x84, 0xCA]) | st.integers(0, 255))
    p1 = draw(st.sampled_from([0x00, 0x01, 0x02, 0x04, 0x5F]) | st.integers(0, 255))
    p2 = draw(
        st.sampled_from([0x0C, 0x80, 0x97, 0x98, 0x9A, 0x9B, 0x91, 0x93]) | st.integers(0, 255)
    )
    data = draw(st.just(b"") | interesting_data | st.binary(max_size=260))
    le = draw(st.none() | st.sampled_from([0, 1, 4, 0x20, 0xFF]) | st.integers(1, 70000))
    raw = bytes((cla, ins, p1, p2))
    extended = len(data) > 255 or (le is not None and le > 256) or draw(st.booleans())
    if extended:
        if data:
            raw += b"\x00" + len(data).to_bytes(2, "big") + data
        if le is not None:
            raw += (b"" if data else b"\x00") + (le % 65536).to_bytes(2, "big")
    else:
        if data:
            raw += bytes((len(data),)) + data
        if le is not None:
            raw += bytes((le % 256,))
    return raw


@st.composite
def valid(draw: st.DrawFn) -> bytes:
    """Well-formed commands of the card's own command set, so random walks reach deep states
    (an AP selected, keys verified, EFs current) instead of bouncing off the first gate."""
    aid = draw(st.sampled_from([JPKI_AID, KENHOJO_AID, KENMEN_AID]))
    secret = draw(interesting_data.filter(lambda d: len(d) in (4, 6, 12, 14)))
    key = draw(st.sampled_from([0x11, 0x12, 0x13, 0x14, 0x15, 0x18, 0x1B]))
    sfi = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 8, 0xA, 0xB, 0x17, 0x1A]) | st.integers(1, 0x1F))
    le = draw(st.sampled_from([1, 4, 7, 0x20, 256]))
    return draw(
        st.sampled_from(
            [
                b"\x00\xa4\x04\x0c\x0a" + aid,
                b"\x00\xa4\x02\x0c\x02" + sfi.to_bytes(2, "big"),
                bytes((0, 0x20, 0, 0x80 | key, len(secret))) + secret,
                bytes((0, 0x20, 0, 0x80 | key)),
                bytes((0, 0x20, 0, 0x80, len(secret))) + secret,
                bytes((0, 0x24, 1, 0x80 | key, len(secret))) + secret,
                bytes((0, 0xB0, 0x80 | sfi, draw(st.integers(0, 255)), le % 256)),
                bytes((0, 0xB0, draw(st.integers(0, 0x7F)), draw(st.integers(0, 255)), le % 256)),
                bytes((0, 0xB0, 0, draw(st.integers(0, 255)), 0)) + (le * 17).to_bytes(2, "big"),
                bytes((0x80, 0x2A, 0, draw(st.sampled_from([0x80, 0x97, 0x9A])), len(secret)))
                + secret
                + b"\x00",
                bytes((0, 0x84, 0, 0, le % 256)),
                b"\x00\xca\x5f\x51\x00",
            ]
        )
    )


RIGHT_SECRETS = [
    (0x18, AUTH_PIN),
    (0x1B, SIGN_PASSWORD),
    (0x11, TEXT_PIN),
    (0x14, MY_NUMBER),
    (0x15, make_profile().collation_b),
    (0x13, MY_NUMBER),
    (0x12, make_profile().collation_b),
]
right_verify = st.sampled_from(
    [bytes((0, 0x20, 0, 0x80 | k, len(v))) + v.encode() for k, v in RIGHT_SECRETS]
)
select_ap = st.sampled_from(
    [b"\x00\xa4\x04\x0c\x0a" + aid for aid in (JPKI_AID, KENHOJO_AID, KENMEN_AID)]
)
step = st.one_of(
    st.none(),
    select_ap,
    right_verify,
    valid(),
    valid(),
    valid(),
    structured(),
    st.binary(max_size=24),
)
steps = st.lists(step, min_size=8, max_size=60)


def check_answer(card: Card, raw: bytes) -> None:
    before = dict(card.counters)
    answer = card.process(raw)
    assert isinstance(answer, bytes) and len(answer) >= 2
    assert 0x61 <= answer[-2] <= 0x6F or answer[-2] == 0x90, answer.hex()
    assert answer[-2:] != b"\x6f\x00", f"internal error on {raw.hex(' ')}"
    if answer[-2] != 0x90:
        assert len(answer) == 2
    if len(raw) < 2 or raw[1] != 0x20:
        assert dict(card.counters) == before, raw.hex(" ")


@pytest.fixture(scope="module")
def fuzz_card(adult_credentials) -> Card:
    return Card(make_profile(), adult_credentials)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps)
def test_random_apdus_never_break_the_card(adult_credentials, steps: list[bytes | None]) -> None:
    card = Card(make_profile(), adult_credentials)
    for step in steps:
        if step is RESET:
            assert card.reset() == card.atr
        else:
            check_answer(card, step)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=300))
def test_random_bytes_after_select(fuzz_card: Card, raw: bytes) -> None:
    fuzz_card.reset()
    assert fuzz_card.process(bytes.fromhex("00A4040C0A") + JPKI_AID) == b"\x90\x00"
    check_answer(fuzz_card, raw)


class PinModel(RuleBasedStateMachine):
    """The JPKI AP's two secrets against a model: counters, blocking, verified state."""

    @initialize()
    def start(self) -> None:
        from onshi.pki import TestPKI

        profile = make_profile()
        self.card = Card(profile, _creds(TestPKI(), profile))
        self.max = {0x18: 3, 0x1B: 5}
        self.tries = dict(self.max)
        self.secret = {0x18: AUTH_PIN, 0x1B: SIGN_PASSWORD}
        self.verified: set[int] = set()
        self.selected = False

    def send(self, hexed: str | bytes) -> str:
        raw = bytes.fromhex(hexed) if isinstance(hexed, str) else hexed
        return self.card.process(raw)[-2:].hex().upper()

    @rule()
    def select_jpki(self) -> None:
        assert self.send(b"\x00\xa4\x04\x0c\x0a" + JPKI_AID) == "9000"
        self.selected, self.verified = True, set()

    @rule()
    def select_text_ap(self) -> None:
        assert self.send(b"\x00\xa4\x04\x0c\x0a" + KENHOJO_AID) == "9000"
        self.selected, self.verified = False, set()

    @rule()
    def reset(self) -> None:
        self.card.reset()
        self.selected, self.verified = False, set()

    @precondition(lambda self: self.selected)
    @rule(key=st.sampled_from([0x18, 0x1B]), right=st.booleans())
    def verify(self, key: int, right: bool) -> None:
        value = self.secret[key] if right else "WRONG0"
        answer = self.send(bytes((0, 0x20, 0, 0x80 | key, len(value))) + value.encode())
        if self.tries[key] == 0:
            assert answer == "6984"
        elif right:
            assert answer == "9000"
            self.tries[key] = self.max[key]
            self.verified.add(key)
        else:
            self.tries[key] -= 1
            self.verified.discard(key)
            assert answer == f"63C{self.tries[key]}"

    @precondition(lambda self: self.selected)
    @rule(key=st.sampled_from([0x18, 0x1B]))
    def query(self, key: int) -> None:
        assert self.send(bytes((0, 0x20, 0, 0x80 | key))) == f"63C{self.tries[key]}"

    @precondition(lambda self: self.selected)
    @rule(key=st.sampled_from([0x17, 0x1A]))
    def sign(self, key: int) -> None:
        answer = self.send(bytes((0x80, 0x2A, 0, 0x80 | key, 1, 0x42, 0)))
        assert answer == ("9000" if key + 1 in self.verified else "6982")

    @precondition(lambda self: self.selected)
    @rule(new=st.sampled_from(["4321", "0000", "12A4", "12345", "ABC123"]))
    def change_auth_pin(self, new: str) -> None:
        data = new.encode()
        answer = self.send(bytes((0, 0x24, 1, 0x98, len(data))) + data)
        if self.tries[0x18] == 0:
            assert answer == "6984"
        elif 0x18 not in self.verified:
            assert answer == "6982"
        elif not (len(new) == 4 and new.isdigit()):
            assert answer == "6A80"  # a badly formed new PIN costs no try (invariant below)
        else:
            assert answer == "9000"
            self.secret[0x18] = new

    @invariant()
    def counters_match(self) -> None:
        if hasattr(self, "card"):
            counters = self.card.counters
            assert (counters["jpki.auth_pin"], counters["jpki.sign_password"]) == (
                self.tries[0x18],
                self.tries[0x1B],
            )


def _creds(pki, profile):
    return pki.card_credentials(
        seed=profile.seed, auth=profile.auth_cert, sign=profile.sign_cert, holder=profile.holder
    )


TestPinModel = PinModel.TestCase
TestPinModel.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
