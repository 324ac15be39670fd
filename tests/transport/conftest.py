"""Shared fixtures: a small card double with the CardLike surface, and a private pcscd.

The double answers what ``check_transport`` sends (JPKI AP SELECT, SELECT EF, READ BINARY short
and extended, unknown INS -> 6D 00, reset clears the selection), so transport tests do not
depend on the card engine; the integration tests use the real ``onshi.card.Card``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from onshi.profiles.model import Behaviour
from onshi.transport.pcscd import PrivatePcscd

JPKI_AID = bytes.fromhex("D392F000260100000001")
ATR = bytes.fromhex("3BE000FF8131FE4514")
# A DER-shaped blob longer than one short read and than 256-byte chunks.
CERT = b"\x30\x82\x05\xdc" + bytes((i * 7) & 0xFF for i in range(0x5DC))


@dataclass
class _Profile:
    behaviour: Behaviour = field(default_factory=Behaviour)
    seed: str = "double"


class DoubleCard:
    """Answers the handful of commands check_transport sends; counts power events."""

    def __init__(self, cert: bytes = CERT, behaviour: Behaviour | None = None) -> None:
        token = b"JPKIAPICCTOKEN2".ljust(32, b" ")
        self.files = {b"\x00\x06": token, b"\x00\x0a": cert}
        self.profile = _Profile(behaviour or Behaviour())
        self.atr = ATR
        self.selected_ap = False
        self.current: bytes | None = None
        self.power_ons = self.resets = self.power_offs = 0
        self.processed = 0

    def power_on(self) -> bytes:
        self.power_ons += 1
        self.selected_ap, self.current = False, None
        return self.atr

    def reset(self) -> bytes:
        self.resets += 1
        self.selected_ap, self.current = False, None
        return self.atr

    def power_off(self) -> None:
        self.power_offs += 1
        self.selected_ap, self.current = False, None

    def process(self, apdu: bytes) -> bytes:
        self.processed += 1
        if len(apdu) < 4:
            return b"\x67\x00"
        ins, p1 = apdu[1], apdu[2]
        if ins == 0xA4 and p1 == 0x04:
            self.selected_ap = apdu[5 : 5 + apdu[4]] == JPKI_AID
            return b"\x90\x00" if self.selected_ap else b"\x6a\x82"
        if ins == 0xA4 and p1 == 0x02:
            fid = apdu[5:7]
            if not self.selected_ap or fid not in self.files:
                return b"\x6a\x82"
            self.current = fid
            return b"\x90\x00"
        if ins == 0xB0:
            if self.current is None:
                return b"\x69\x86"
            offset = (p1 << 8) | apdu[3]
            if len(apdu) == 5:
                le = apdu[4] or 256
            elif len(apdu) == 7 and apdu[4] == 0:
                le = int.from_bytes(apdu[5:7], "big") or 65536
            else:
                return b"\x67\x00"
            return self.files[self.current][offset : offset + le] + b"\x90\x00"
        return b"\x6d\x00"


@pytest.fixture
def double() -> DoubleCard:
    return DoubleCard()


@pytest.fixture
def make_double() -> Callable[..., DoubleCard]:
    return DoubleCard


@pytest.fixture(scope="module")
def pcscd() -> Iterator[PrivatePcscd]:
    """One private pcscd per test module; fails loudly (no skip) when it cannot start."""
    with PrivatePcscd() as p:
        yield p
