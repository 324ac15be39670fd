"""How long the reader's card path takes: in process (the reference) and through pcscd + vpcd.

Measured with ``pytest tests/cli/test_cardpath_bench.py --benchmark-enable``; by default they
run once as plain tests. Compare the two means as a ratio: the machine is shared and noisy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from onshi.card import Card
from onshi.pki import TestPKI
from onshi.profiles import load_profile
from onshi.profiles.facts import profile_crl
from onshi.quickstart.cardpath import CARD_PATH, CardPathContext
from onshi.quickstart.run import challenge_from_seed
from onshi.transport import InProcessTransport, PcscTransport, PrivatePcscd, Transport

pytestmark = pytest.mark.bench

AT = dt.datetime(2026, 6, 1, 3, 0, tzinfo=dt.UTC)


def card_path(transport: Transport, card: Card, pki: TestPKI) -> CardPathContext:
    """All eight steps, run inline (no worker thread): exchanges, certificate parsing and
    checking, signature verification; the CRL is made once, outside the timing."""
    ctx = CardPathContext(
        transport=transport,
        profile=card.profile,
        pki=pki,
        challenge=challenge_from_seed("bench"),
        at=AT,
        crl=_crl(pki, card),  # type: ignore[arg-type]
    )
    for step in CARD_PATH:
        step.run(ctx)
    return ctx


_CRLS: dict[str, object] = {}


def _crl(pki: TestPKI, card: Card) -> object:
    if card.profile.name not in _CRLS:
        _CRLS[card.profile.name] = profile_crl(pki, card.profile, "auth", AT)
    return _CRLS[card.profile.name]


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return TestPKI()


@pytest.fixture(scope="module")
def card(pki: TestPKI) -> Card:
    return Card.from_profile(load_profile("valid", today=AT.date()), pki=pki)


@pytest.fixture(scope="module")
def pcsc(card: Card) -> Iterator[PcscTransport]:
    with PrivatePcscd() as pcscd:
        pcscd.connect_card(card, slot=0)
        transport = PcscTransport(
            pcscd.reader_names[0], socket_path=pcscd.socket_path, card_timeout=5.0
        )
        try:
            yield transport
        finally:
            transport.close()


def test_card_path_in_process(benchmark, card: Card, pki: TestPKI) -> None:  # type: ignore[no-untyped-def]
    transport = InProcessTransport(card, sleep=lambda _s: None)
    ctx = benchmark(card_path, transport, card, pki)
    assert ctx.signature is not None and len(ctx.exchanges) == 11


@pytest.mark.pcsc
def test_card_path_through_pcscd(benchmark, card: Card, pki: TestPKI, pcsc: PcscTransport) -> None:  # type: ignore[no-untyped-def]
    ctx = benchmark(card_path, pcsc, card, pki)
    assert ctx.signature is not None and len(ctx.exchanges) == 11
