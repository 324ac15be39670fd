"""InProcessTransport: the contract, the profile's physical behaviour in virtual time, and the
swappable fault hooks."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

import pytest

from onshi.card import Card
from onshi.profiles import load_profile
from onshi.profiles.model import Behaviour, DropPhase
from onshi.trace import ApduTrace, Direction
from onshi.transport import (
    CardRemovedError,
    InProcessTransport,
    TransportError,
    check_transport,
)
from onshi.transport.base import lost_contact
from onshi.transport.check import SELECT_JPKI

from .conftest import DoubleCard


class FakeClock:
    """Virtual time: sleep() only advances a counter."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_contract(make_double: Callable[..., DoubleCard]) -> None:
    steps = check_transport(lambda: InProcessTransport(make_double()))
    assert steps == [
        "connect",
        "select-and-token",
        "unknown-ins",
        "extended-read",
        "reset",
        "close",
    ]


def test_context_manager_connects_and_closes(double: DoubleCard) -> None:
    with InProcessTransport(double) as t:
        assert t.atr == double.atr and double.power_ons == 1
        assert t.transmit(SELECT_JPKI) == b"\x90\x00"
    assert t.closed and double.power_offs == 1
    with pytest.raises(TransportError, match="closed") as info:
        t.reset()
    assert info.value.fix


def test_transmit_before_connect_is_card_removed(double: DoubleCard) -> None:
    with pytest.raises(CardRemovedError, match="connect"):
        InProcessTransport(double).transmit(SELECT_JPKI)


def test_latency_uses_the_injected_clock(make_double: Callable[..., DoubleCard]) -> None:
    clock = FakeClock()
    card = make_double(behaviour=Behaviour(latency_ms=30))
    with InProcessTransport(card, sleep=clock.sleep) as t:
        for _ in range(5):
            t.transmit(SELECT_JPKI)
    assert clock.sleeps == [pytest.approx(0.030)] * 5


def test_jitter_is_bounded_and_seeded(make_double: Callable[..., DoubleCard]) -> None:
    def run(seed: int) -> list[float]:
        clock = FakeClock()
        card = make_double(behaviour=Behaviour(latency_ms=10, latency_jitter_ms=4))
        with InProcessTransport(card, sleep=clock.sleep, rng=random.Random(seed)) as t:
            for _ in range(200):
                t.transmit(SELECT_JPKI)
        return clock.sleeps

    first = run(1)
    assert first == run(1) and first != run(2)
    assert min(first) >= 0.006 and max(first) <= 0.014
    assert max(first) - min(first) > 0.006  # the jitter really spreads


def test_ideal_card_never_sleeps(double: DoubleCard) -> None:
    clock = FakeClock()
    with InProcessTransport(double, sleep=clock.sleep) as t:
        t.transmit(SELECT_JPKI)
    assert clock.sleeps == []


def test_drop_rate_loses_contact_then_connect_recovers(
    make_double: Callable[..., DoubleCard],
) -> None:
    card = make_double(behaviour=Behaviour(drop_rate=1.0))
    t = InProcessTransport(card)
    t.connect()
    with pytest.raises(CardRemovedError, match="lost contact"):
        t.transmit(SELECT_JPKI)
    assert t.drops == 1 and card.processed == 0 and card.power_offs == 1
    with pytest.raises(CardRemovedError):
        t.transmit(SELECT_JPKI)  # still no session until connect
    t.drop_rate = 0.0
    t.connect()
    assert card.power_ons == 2 and t.transmit(SELECT_JPKI) == b"\x90\x00"


def test_drop_rate_is_statistical_and_seeded(make_double: Callable[..., DoubleCard]) -> None:
    def drops(seed: int) -> int:
        card = make_double(behaviour=Behaviour(drop_rate=0.25))
        t = InProcessTransport(card, rng=random.Random(seed))
        lost = 0
        for _ in range(400):
            t.connect()
            try:
                t.transmit(SELECT_JPKI)
            except CardRemovedError:
                lost += 1
        return lost

    assert drops(7) == drops(7)
    assert 60 < drops(7) < 140


def test_hooks_are_swappable_attributes(double: DoubleCard) -> None:
    trace = ApduTrace()
    t = InProcessTransport(double, trace=trace)
    t.connect()
    seen: list[bytes] = []
    t.transmit_hook = seen.append
    t.response_hook = lambda _c, r: r[:-2] + b"\x6f\x00"
    assert t.transmit(SELECT_JPKI) == b"\x6f\x00"
    assert seen == [SELECT_JPKI]

    def pull_card(_apdu: bytes) -> None:
        raise CardRemovedError("pulled by the test")

    t.transmit_hook, t.response_hook = pull_card, None
    with pytest.raises(CardRemovedError, match="pulled"):
        t.transmit(SELECT_JPKI)
    t.transmit_hook = None
    assert t.transmit(SELECT_JPKI) == b"\x90\x00"
    closes: list[int] = []
    t.close_hook = lambda: closes.append(1)
    t.close()
    t.close()
    assert closes == [1]
    # The trace saw the ATR and every exchange that got an answer.
    kinds = [e.direction for e in trace]
    assert kinds == [
        Direction.ATR,
        Direction.COMMAND,
        Direction.RESPONSE,
        Direction.COMMAND,
        Direction.COMMAND,
        Direction.RESPONSE,
    ]


def test_reset_without_session_powers_on(double: DoubleCard) -> None:
    t = InProcessTransport(double)
    assert t.reset() == double.atr and double.power_ons == 1 and double.resets == 0
    assert t.reset() == double.atr and double.resets == 1


def _real_card(drop_phase: DropPhase) -> Card:
    profile = load_profile("valid")
    return Card.from_profile(
        dataclasses.replace(profile, behaviour=Behaviour(drop_rate=1.0, drop_phase=drop_phase))
    )


SELECT_AUTH_PIN = bytes.fromhex("00A4020C020018")
WRONG_PIN = bytes.fromhex("002000800439393939")
PIN_QUERY = bytes.fromhex("00200080")


@pytest.mark.parametrize(
    ("phase", "tries_after"),
    [(DropPhase.COMMAND, b"\x63\xc3"), (DropPhase.ANSWER, b"\x63\xc2")],
)
def test_drop_phase_decides_whether_the_card_executed_the_lost_command(
    phase: DropPhase, tries_after: bytes
) -> None:
    """A VERIFY whose answer is lost has still cost a try; one lost before the card did not."""
    card = _real_card(phase)
    t = InProcessTransport(card)
    t.connect()
    t.drop_rate = 0.0
    assert t.transmit(SELECT_JPKI) == b"\x90\x00"
    assert t.transmit(SELECT_AUTH_PIN) == b"\x90\x00"
    t.drop_rate = 1.0
    with pytest.raises(CardRemovedError, match=f"{phase} lost"):
        t.transmit(WRONG_PIN)
    t.drop_rate = 0.0
    t.connect()
    t.transmit(SELECT_JPKI)
    t.transmit(SELECT_AUTH_PIN)
    assert t.transmit(PIN_QUERY) == tries_after


def test_drop_phase_either_loses_both_kinds_reproducibly() -> None:
    def phases(seed: int) -> list[DropPhase]:
        rng = random.Random(seed)
        return [lost_contact(rng, 1.0, DropPhase.EITHER) for _ in range(200)]  # type: ignore[misc]

    seen = phases(3)
    assert seen == phases(3)
    assert 60 < seen.count(DropPhase.ANSWER) < 140
    assert seen.count(DropPhase.ANSWER) + seen.count(DropPhase.COMMAND) == 200
    assert lost_contact(random.Random(1), 0.0, DropPhase.ANSWER) is None


def test_flaky_profile_loses_commands_and_answers() -> None:
    assert load_profile("flaky").behaviour.drop_phase is DropPhase.EITHER
