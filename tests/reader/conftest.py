"""Fixtures for the reader tests: a mock clock, a small real population, the real backend app
in process, and emulated cards re-issued as the population's cards.

The population is seeded once per session for a fixed day (AS_OF); every test's MockClock
starts at noon JST of that day and is shared with the backend app, so certificate dates,
challenges and face attestations are judged on the same virtual time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from onshi.backend.app import create_app
from onshi.backend.asgi import built_on_first_call
from onshi.backend.population import EdgeRates, card_certificate, populate
from onshi.backend.store import Store
from onshi.card import Card
from onshi.clock import MockClock
from onshi.dates import JST
from onshi.pki import TestPKI
from onshi.profiles import load_profile
from onshi.quickstart.run import population_profile
from onshi.reader import Reader, ReaderPolicy
from onshi.reader.world import BackendCall, Patient, Staff, WorldDriver, asgi_backend

AS_OF = dt.date(2026, 6, 1)
ADMIN_TOKEN = "reader-admin-token"


@dataclasses.dataclass(frozen=True)
class Population:
    path: Path
    fixtures: dict[str, list[dict[str, Any]]]

    def first(self, kind: str) -> dict[str, Any]:
        rows = self.fixtures.get(kind) or []
        assert rows, f"the test population has no {kind!r} fixture"
        return rows[0]


@pytest.fixture(scope="session")
def population(tmp_path_factory: pytest.TempPathFactory) -> Population:
    path = tmp_path_factory.mktemp("reader") / "population.db"
    with Store.open(path) as store:
        populate(
            store,
            persons=1200,
            facilities=2,
            seed="reader-tests",
            as_of=AS_OF,
            rates=EdgeRates(
                mislinked=0.02, revoked=0.02, expired_in_grace=0.03, expired_beyond_grace=0.03
            ),
        )
        fixtures = store.fixtures()
    return Population(path, fixtures)


@pytest.fixture(scope="session")
def pki() -> TestPKI:
    return TestPKI()


@pytest.fixture
def clock() -> MockClock:
    return MockClock(dt.datetime(AS_OF.year, AS_OF.month, AS_OF.day, 12, tzinfo=JST))


@pytest.fixture
def client(population: Population, pki: TestPKI, clock: MockClock) -> Iterator[TestClient]:
    """The served stack (admin endpoint, faults, outage mode) in process, on the mock clock."""
    app = built_on_first_call(
        lambda: create_app(
            db_path=population.path,
            pki=pki,
            clock=clock,
            admin_token=ADMIN_TOKEN,
            batch_worker=False,
        )
    )

    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with TestClient(app, raise_server_exceptions=True) as c:
        try:
            yield c
        finally:
            # The control row lives in the shared database: leave no fault behind.
            c.delete("/admin/faults", headers=admin)
            c.put("/admin/outage-mode", json={"enabled": False}, headers=admin)


@pytest.fixture
def backend(client: TestClient, population: Population) -> BackendCall:
    facility = population.fixtures["facility"][0]
    auth = {"X-Facility-Code": facility["code"], "Authorization": f"Bearer {facility['secret']}"}

    def post(path: str, body: dict[str, Any] | None, headers: dict[str, str]) -> tuple[int, bytes]:
        r = client.post(path, json=body, headers={**auth, **headers})
        return r.status_code, r.content

    return asgi_backend(post)


_CREDENTIALS: dict[str, Any] = {}


@pytest.fixture
def make_card(population: Population, pki: TestPKI) -> Callable[..., Card]:
    """``make_card(profile, kind)``: the named profile re-issued as the population's card of
    ``kind`` (so the backend knows its serial), fresh counters every time."""

    def make(profile: str = "valid", kind: str = "valid_card", **changes: Any) -> Card:
        row = population.first(kind)
        card_profile = population_profile(load_profile(profile, today=AS_OF), row)
        if changes:
            card_profile = dataclasses.replace(card_profile, **changes)
        if row["seed"] not in _CREDENTIALS:
            _CREDENTIALS[row["seed"]] = card_certificate(row, pki=pki)
        return Card(card_profile, _CREDENTIALS[row["seed"]])

    return make


@pytest.fixture
def world(
    clock: MockClock, backend: BackendCall, make_card: Callable[..., Card]
) -> Callable[..., WorldDriver]:
    """``world(profile=, kind=, patient=, staff=, policy=, backend=)``: a ready driver."""

    def build(
        profile: str = "valid",
        kind: str = "valid_card",
        *,
        patient: Patient | None = None,
        staff: Staff | None = None,
        policy: ReaderPolicy | None = None,
        backend_call: BackendCall | None = None,
        card: Card | None = None,
    ) -> WorldDriver:
        return WorldDriver(
            Reader(policy, clock=clock),
            clock=clock,
            backend=backend_call or backend,
            card=card or make_card(profile, kind),
            patient=patient,
            staff=staff,
        )

    return build
