"""The same reader flow (a PIN check of profile ``valid``) through every driver: the
synchronous one over the in-process transport and the in-process backend app, over a real
private pcscd + vpcd and the real backend server, and the asyncio driver. The world driver's
run of the same flow is the reference each of them must match step by step."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from onshi.backend.server import RunningServer, start_server
from onshi.card import Card
from onshi.clock import MockClock
from onshi.quickstart.run import BACKEND_APP
from onshi.reader import Outcome, Reader, ReaderPolicy, ReaderResult
from onshi.reader import actions as act
from onshi.reader.drivers import AsyncDriver, Run, TransportDriver, apdu_event
from onshi.reader.events import ApduFailed, Method
from onshi.reader.http import HttpBackend
from onshi.reader.results import Fallback
from onshi.reader.world import BackendCall, Patient, People, Staff, WorldDriver
from onshi.transport import InProcessTransport, PcscTransport, PrivatePcscd
from onshi.transport.base import CardRemovedError

from .conftest import Population

PIN_PATIENT = Patient(method=Method.PIN, pins=["1234"], consents={"all": True}, typing_s=0)


def people(card: Card, patient: Patient = PIN_PATIENT) -> People:
    return People(patient, Staff(), printed_b=card.profile.collation_b)


def purposes(run: Run) -> list[str]:
    return [a.purpose for a in run.actions if isinstance(a, act.SendApdu)]


def assert_pin_check(r: ReaderResult) -> None:
    assert r.eligible and r.method is Method.PIN
    assert (r.counts.pin_verifies, r.counts.signatures, r.counts.backend_calls) == (1, 1, 3)
    assert r.public["QualificationValidity"] == "1"
    assert r.public["PharmacistsInfoConsFlg"] == "1"


@pytest.fixture
def reference(world: Callable[..., WorldDriver]) -> list[str]:
    """The APDU steps of the PIN check as the in-process world driver runs it."""
    run = world(patient=PIN_PATIENT).present_card()
    assert_pin_check(run.result)
    return purposes(run)


@pytest.fixture(scope="module")
def server(population: Population) -> Iterator[RunningServer]:
    """The real backend server (a subprocess on loopback) over the reader tests' population."""
    running = start_server(BACKEND_APP, db_path=population.path)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def http_backend(server: RunningServer, population: Population) -> HttpBackend:
    facility = population.fixtures["facility"][0]
    return HttpBackend(
        server.url, facility_code=facility["code"], facility_secret=facility["secret"]
    )


# -- (a) synchronous, in process ----------------------------------------------------------------


def test_pin_check_over_the_in_process_transport(
    clock: MockClock, backend: BackendCall, make_card: Callable[..., Card], reference: list[str]
) -> None:
    card = make_card()
    driver = TransportDriver(
        Reader(clock=clock),
        transport=InProcessTransport(card, sleep=clock.sleep),
        clock=clock,
        backend=backend,
        react=people(card),
    )
    run = driver.present_card()
    assert_pin_check(run.result)
    assert purposes(run) == reference
    assert card.counters["jpki.auth_pin"] == 3


def test_a_card_lost_mid_check_is_unreadable_not_eligible(
    clock: MockClock, backend: BackendCall, make_card: Callable[..., Card]
) -> None:
    card = make_card()
    transport = InProcessTransport(card, sleep=clock.sleep)
    sent: list[bytes] = []

    def lose_at_the_certificate(apdu: bytes) -> None:
        sent.append(apdu)
        if apdu[1] == 0xB0 and len(sent) > 4:  # the certificate body read
            raise CardRemovedError()

    transport.transmit_hook = lose_at_the_certificate
    driver = TransportDriver(
        Reader(clock=clock), transport=transport, clock=clock, backend=backend, react=people(card)
    )
    run = driver.present_card()
    assert run.result.outcome is Outcome.CARD_UNREADABLE and not run.result.eligible
    failed = [e for e in run.events if isinstance(e, ApduFailed)]
    last_sent = [a for a in run.actions if isinstance(a, act.SendApdu)][-1]
    assert [e.request_id for e in failed] == [last_sent.request_id]


def test_apdu_event_keeps_other_errors_loud() -> None:
    """Only transport failures become ``ApduFailed``; a bug in a driver is not hidden."""
    action = act.SendApdu(request_id=1, command=b"\x00\xa4\x04\x00", purpose="test")

    def broken(_apdu: bytes) -> bytes:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        apdu_event(action, broken)


# -- (b) synchronous, real pcscd + vpcd and the real server --------------------------------------


@pytest.mark.pcsc
def test_pin_check_through_pcscd_and_the_real_server(
    clock: MockClock,
    make_card: Callable[..., Card],
    http_backend: HttpBackend,
    reference: list[str],
) -> None:
    card = make_card()
    with PrivatePcscd() as pcscd:
        pcscd.connect_card(card, slot=0)
        transport = PcscTransport(
            pcscd.reader_names[0], socket_path=pcscd.socket_path, card_timeout=5.0
        )
        with transport:
            driver = TransportDriver(
                Reader(clock=clock),
                transport=transport,
                clock=clock,
                backend=http_backend,
                react=people(card),
            )
            run = driver.present_card()
    assert_pin_check(run.result)
    assert purposes(run) == reference
    assert card.counters["jpki.auth_pin"] == 3


# -- (c) asyncio ----------------------------------------------------------------------------

# Real event-loop timers: every timeout here is a hang guard, never a bound the flow must beat
# (the people react at once; only the backend's answers are awaited).
ASYNC_POLICY = ReaderPolicy(backend_timeout_s=60, choice_timeout_s=600, pin_timeout_s=600)


def test_pin_check_with_the_asyncio_driver(
    clock: MockClock,
    make_card: Callable[..., Card],
    http_backend: HttpBackend,
    reference: list[str],
) -> None:
    card = make_card()

    async def main() -> Run:
        driver = AsyncDriver(
            Reader(ASYNC_POLICY, clock=clock),
            transport=InProcessTransport(card, sleep=lambda _s: None),
            backend=http_backend,
            react=people(card),
        )
        try:
            return await driver.present_card()
        finally:
            await driver.aclose()

    run = asyncio.run(main())
    assert_pin_check(run.result)
    assert purposes(run) == reference


def test_asyncio_driver_fails_closed_on_the_readers_timer_when_the_backend_hangs(
    clock: MockClock, make_card: Callable[..., Card]
) -> None:
    """The backend blocks on an event that is only set after the check ended, so the reader's
    own backend timer must end it; the late answer is then dropped as stale."""
    card = make_card()
    release = threading.Event()
    calls: list[str] = []

    def hanging(call: act.CallBackend) -> Any:
        calls.append(call.path)
        release.wait(timeout=60)
        return 201, {"Challenge": "x"}

    async def main() -> tuple[Run, AsyncDriver]:
        driver = AsyncDriver(
            Reader(ReaderPolicy(backend_timeout_s=0.05, choice_timeout_s=600), clock=clock),
            transport=InProcessTransport(card, sleep=lambda _s: None),
            backend=hanging,
            react=people(card),
        )
        try:
            return await driver.present_card(), driver
        finally:
            release.set()
            await driver.aclose()

    run, _ = asyncio.run(main())
    r = run.result
    assert (r.outcome, r.fallback) == (Outcome.BACKEND_UNAVAILABLE, Fallback.NUMBER_PATH)
    assert calls == ["/v1/challenges"]
    assert card.counters["jpki.auth_pin"] == 3 and r.counts.pin_verifies == 0


def test_asyncio_driver_plays_delayed_people_on_loop_time(
    clock: MockClock, make_card: Callable[..., Card], backend: BackendCall
) -> None:
    """People who take time act through the loop's timers; a face capture that would land
    after the reader's face timeout is lost (the face phase has no time at all, the capture
    takes an hour: no ordering of the two depends on this machine's speed), so the reader
    falls back to the PIN, and closing the driver cancels the capture still scheduled."""
    card = make_card()
    patient = Patient(
        method=Method.FACE, face_scores=[0.99], capture_s=3600, pins=["1234"], typing_s=0
    )
    policy = ReaderPolicy(face_timeout_s=0, backend_timeout_s=60, choice_timeout_s=600)

    async def main() -> Run:
        driver = AsyncDriver(
            Reader(policy, clock=clock),
            transport=InProcessTransport(card, sleep=lambda _s: None),
            backend=backend,
            react=people(card, patient),
        )
        try:
            return await driver.present_card()
        finally:
            await driver.aclose()

    r = asyncio.run(main()).result
    assert r.eligible and r.method is Method.PIN and r.counts.pin_verifies == 1
