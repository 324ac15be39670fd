"""APDU round trips through pyscard -> private pcscd -> vpcd -> card, with the in-process
transport measured in the same run as the reference (run with ``--benchmark-enable``).

Targets (pcsc_vpcd_mqtt_pcap.md §2): median SELECT round trip <= 0.2 ms through pcscd (~0.1 ms
is the measured floor; without TCP_QUICKACK Debian's vpcd costs 44 ms).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from onshi.card import Card
from onshi.profiles import load_profile
from onshi.transport import InProcessTransport, PcscTransport, PrivatePcscd, Transport
from onshi.transport.check import (
    SELECT_AUTH_CERT,
    SELECT_JPKI,
    read_whole_ef,
    read_whole_ef_extended,
)

pytestmark = [pytest.mark.bench, pytest.mark.pcsc]


@pytest.fixture(scope="module")
def card() -> Card:
    return Card.from_profile(load_profile("valid"))


@pytest.fixture(scope="module")
def pcsc(card: Card) -> Iterator[PcscTransport]:
    with PrivatePcscd() as p:
        p.connect_card(card)
        with PcscTransport("Virtual PCD 00 00", socket_path=p.socket_path, card_timeout=5) as t:
            yield t


@pytest.fixture(scope="module")
def inproc() -> Iterator[InProcessTransport]:
    with InProcessTransport(Card.from_profile(load_profile("valid"))) as t:
        yield t


def test_select_round_trip_inproc(benchmark: BenchmarkFixture, inproc: InProcessTransport) -> None:
    assert benchmark(inproc.transmit, SELECT_JPKI) == b"\x90\x00"


def test_select_round_trip_pcscd(benchmark: BenchmarkFixture, pcsc: PcscTransport) -> None:
    assert benchmark(pcsc.transmit, SELECT_JPKI) == b"\x90\x00"


def _cert_reader(t: Transport, *, extended: bool) -> Callable[[], bytes]:
    def read() -> bytes:
        assert t.transmit(SELECT_JPKI) == b"\x90\x00"
        assert t.transmit(SELECT_AUTH_CERT) == b"\x90\x00"
        return read_whole_ef_extended(t) if extended else read_whole_ef(t)

    return read


def test_cert_read_256_byte_chunks_pcscd(benchmark: BenchmarkFixture, pcsc: PcscTransport) -> None:
    cert = benchmark(_cert_reader(pcsc, extended=False))
    assert cert[:2] == b"\x30\x82" and len(cert) == 4 + int.from_bytes(cert[2:4], "big")


def test_cert_read_extended_pcscd(benchmark: BenchmarkFixture, pcsc: PcscTransport) -> None:
    cert = benchmark(_cert_reader(pcsc, extended=True))
    assert len(cert) == 4 + int.from_bytes(cert[2:4], "big")


def test_cert_read_extended_inproc(benchmark: BenchmarkFixture, inproc: InProcessTransport) -> None:
    cert = benchmark(_cert_reader(inproc, extended=True))
    assert len(cert) == 4 + int.from_bytes(cert[2:4], "big")
