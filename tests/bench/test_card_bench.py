"""In-process throughput of the sans-I/O card (run with ``--benchmark-enable``).

The reference in the same run is ``test_bench_reference_parse``: parsing one APDU, the least
any exchange costs, so figures can be compared as ratios on a noisy shared machine.
"""

from __future__ import annotations

import hashlib

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from onshi.apdu import CommandAPDU
from onshi.card import Card
from onshi.profiles import load_profile

pytestmark = pytest.mark.bench

SELECT_JPKI = bytes.fromhex("00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01")
SELECT_TOKEN = bytes.fromhex("00 A4 02 0C 02 00 06")
READ_TOKEN = bytes.fromhex("00 B0 00 00 20")
SELECT_AUTH_CERT = bytes.fromhex("00 A4 02 0C 02 00 0A")
SHA256_INFO = bytes.fromhex("3031300D060960864801650304020105000420")


@pytest.fixture(scope="module")
def card() -> Card:
    return Card.from_profile(load_profile("valid"))


def test_bench_reference_parse(benchmark: BenchmarkFixture) -> None:
    cmd = benchmark(CommandAPDU.parse, SELECT_JPKI)
    assert cmd.data[:2] == b"\xd3\x92"


def test_bench_card_construction(benchmark: BenchmarkFixture) -> None:
    """A new card per simulated user: profile + cached credentials -> Card (no I/O)."""
    from onshi.pki import TestPKI

    profile = load_profile("valid")
    pki = TestPKI()
    card = benchmark(Card.from_profile, profile, pki)
    assert card.process(SELECT_JPKI) == b"\x90\x00"


def test_bench_select_and_read_token(benchmark: BenchmarkFixture, card: Card) -> None:
    def exchange() -> bytes:
        card.process(SELECT_JPKI)
        card.process(SELECT_TOKEN)
        return card.process(READ_TOKEN)

    assert benchmark(exchange)[:15] == b"JPKIAPICCTOKEN2"


def test_bench_full_auth_certificate_read(benchmark: BenchmarkFixture, card: Card) -> None:
    """OpenSC style: SELECT AP and EF, 4-byte header, then 256-byte chunks to the end."""

    def read() -> bytes:
        card.process(SELECT_JPKI)
        card.process(SELECT_AUTH_CERT)
        head = card.process(b"\x00\xb0\x00\x00\x04")[:-2]
        size = int.from_bytes(head[2:4], "big") + 4
        out, offset = bytearray(), 0
        while offset < size:
            le = min(256, size - offset)
            out += card.process(bytes((0, 0xB0, offset >> 8, offset & 0xFF, le % 256)))[:-2]
            offset += le
        return bytes(out)

    der = benchmark(read)
    assert der[:2] == b"\x30\x82" and len(der) == int.from_bytes(der[2:4], "big") + 4


def test_bench_signature(benchmark: BenchmarkFixture, card: Card) -> None:
    """VERIFY the auth PIN then sign a SHA-256 DigestInfo by SFI (trace D, SFI form)."""
    pin = b"\x00\x20\x00\x98\x04" + card.profile.auth_pin.value.encode()
    digest = hashlib.sha256(b"onshi bench").digest()
    sign = b"\x80\x2a\x00\x97\x33" + SHA256_INFO + digest + b"\x00"

    def exchange() -> bytes:
        card.process(SELECT_JPKI)
        assert card.process(pin) == b"\x90\x00"
        return card.process(sign)

    answer = benchmark(exchange)
    assert len(answer) == 258 and answer.endswith(b"\x90\x00")


def test_bench_signature_raw_input(benchmark: BenchmarkFixture, card: Card) -> None:
    """Input that is no DigestInfo: type-1 padding and CRT in Python (the slow path)."""
    pin = b"\x00\x20\x00\x98\x04" + card.profile.auth_pin.value.encode()
    sign = b"\x80\x2a\x00\x97\x24" + bytes(range(36)) + b"\x00"

    def exchange() -> bytes:
        card.process(SELECT_JPKI)
        card.process(pin)
        return card.process(sign)

    assert len(benchmark(exchange)) == 258
