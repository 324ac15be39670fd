"""One PIN-mode eligibility check in process: the reader, the emulated card and the backend app.

Measured with ``pytest tests/bench/test_reader_bench.py --benchmark-enable -s``: the check's
cost is printed (and kept in ``extra_info``) as a ratio against the reference measured in the
same run, the card engine's own signature (SELECT, VERIFY and COMPUTE DIGITAL SIGNATURE over a
SHA-256 DigestInfo, in process), since absolute times on a shared machine mean little. Per
check it also reports the APDUs, VERIFYs, signatures and backend calls (issue 7 wants one
VERIFY and one signature, not two). Without ``--benchmark-enable`` each runs once and only
the run's validity is asserted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture
from starlette.testclient import TestClient

from onshi.apdu import CommandAPDU
from onshi.backend.app import create_app
from onshi.backend.population import card_certificate, populate
from onshi.backend.store import Store
from onshi.card import Card
from onshi.cardmap import JPKI_AID, JPKI_AUTH_KEY, JPKI_AUTH_PIN, SHA256_DIGEST_INFO_PREFIX
from onshi.clock import MockClock
from onshi.dates import JST
from onshi.pki import TestPKI
from onshi.profiles import load_profile
from onshi.quickstart.run import population_profile
from onshi.reader import Reader, ReaderResult
from onshi.reader.drivers import BackendCall, TransportDriver
from onshi.reader.events import Method
from onshi.reader.world import Patient, People, Staff, asgi_backend
from onshi.transport import InProcessTransport

pytestmark = pytest.mark.bench

AS_OF = dt.date(2026, 6, 1)
_MEANS: dict[str, float] = {}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Card, BackendCall, Any]]:
    """A small population, its first registered card, and the backend app in process."""
    path: Path = tmp_path_factory.mktemp("reader-bench") / "population.db"
    with Store.open(path) as store:
        populate(store, persons=300, facilities=1, seed="reader-bench", as_of=AS_OF)
        fixtures = store.fixtures()
    pki = TestPKI()
    clock = MockClock(dt.datetime(AS_OF.year, AS_OF.month, AS_OF.day, 12, tzinfo=JST))
    row, facility = fixtures["valid_card"][0], fixtures["facility"][0]
    profile = population_profile(load_profile("valid", today=AS_OF), row)
    card = Card(profile, card_certificate(row, pki=pki))
    built: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if not built:  # built in the client's loop thread (SQLite connections stay there)
            built.append(create_app(db_path=path, pki=pki, clock=clock, batch_worker=False))
        await built[0](scope, receive, send)

    auth = {"X-Facility-Code": facility["code"], "Authorization": f"Bearer {facility['secret']}"}
    with TestClient(app) as client:

        def post(url: str, body: dict[str, Any] | None, headers: dict[str, str]) -> Any:
            r = client.post(url, json=body, headers={**auth, **headers})
            return r.status_code, r.content

        yield card, asgi_backend(post), clock


def _record(benchmark: BenchmarkFixture, name: str) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        _MEANS[name] = stats.stats.mean


def test_bench_reference_card_signature(benchmark: BenchmarkFixture, world: Any) -> None:
    """The card engine alone: what one PIN-mode signature costs the card (the reference)."""
    card: Card = world[0]
    pin = card.profile.auth_pin.value.encode()
    digest_info = SHA256_DIGEST_INFO_PREFIX + hashlib.sha256(b"onshi reader bench").digest()
    commands = [
        CommandAPDU(cla=0, ins=0xA4, p1=4, p2=0x0C, data=JPKI_AID).to_bytes(),
        CommandAPDU(cla=0, ins=0xA4, p1=2, p2=0x0C, data=JPKI_AUTH_PIN.to_bytes(2)).to_bytes(),
        CommandAPDU(cla=0, ins=0x20, p1=0, p2=0x80, data=pin).to_bytes(),
        CommandAPDU(cla=0, ins=0xA4, p1=2, p2=0x0C, data=JPKI_AUTH_KEY.to_bytes(2)).to_bytes(),
        CommandAPDU(cla=0x80, ins=0x2A, p1=0, p2=0x80, data=digest_info, le=256).to_bytes(),
    ]

    def sign() -> list[bytes]:
        card.power_on()
        return [card.process(c) for c in commands]

    answers = benchmark(sign)
    assert [a[-2:] for a in answers] == [b"\x90\x00"] * 5 and len(answers[-1]) == 258
    _record(benchmark, "card_signature")


def test_bench_pin_eligibility_check(benchmark: BenchmarkFixture, world: Any) -> None:
    """Reader + card + backend app: one whole PIN-mode check (consents declined, so two
    backend calls: the challenge and the card lookup)."""
    card, backend, clock = world
    patient = Patient(method=Method.PIN, pins=["1234"], typing_s=0)

    def check() -> tuple[ReaderResult, int]:
        driver = TransportDriver(
            Reader(clock=clock),
            transport=InProcessTransport(card, sleep=clock.sleep),
            clock=clock,
            backend=backend,
            react=People(patient, Staff(), printed_b=card.profile.collation_b),
        )
        run = driver.present_card()
        return run.result, len(run.apdus())

    result, apdus = benchmark(check)
    counts = result.counts
    assert result.eligible and result.method is Method.PIN
    assert counts.apdus == apdus and (counts.pin_verifies, counts.signatures) == (1, 1)
    assert counts.backend_calls == 2 and card.counters["jpki.auth_pin"] == 3
    benchmark.extra_info.update(
        apdus_per_check=apdus,
        signatures_per_check=counts.signatures,
        pin_verifies_per_check=counts.pin_verifies,
        backend_calls_per_check=counts.backend_calls,
    )
    _record(benchmark, "pin_check")
    if {"card_signature", "pin_check"} <= _MEANS.keys():
        ratio = _MEANS["pin_check"] / _MEANS["card_signature"]
        benchmark.extra_info["ratio_vs_card_signature"] = round(ratio, 2)
        print(
            f"\nreader PIN check: {apdus} APDUs, {counts.signatures} signature, "
            f"{counts.pin_verifies} VERIFY, {counts.backend_calls} backend calls per check; "
            f"{ratio:.2f}x the card engine's own signature (same run)"
        )
