"""Shared fixtures for the backend tests: one seeded population, a virtual clock, clients.

The population is real (``population.populate`` into SQLite, WAL) and seeded once per session
for a fixed day (``AS_OF``), so every test sees the same rows; the clock starts at noon JST of
that day and only moves when a test moves it. Cards are minted from the fixtures manifest with
the test PKI (pooled keys, cached on disk).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from starlette.testclient import TestClient

from onshi.backend.app import create_app
from onshi.backend.asgi import built_on_first_call
from onshi.backend.population import EdgeRates, card_certificate, populate
from onshi.backend.store import Store
from onshi.pki import JST, CardCredentials, TestPKI

AS_OF = dt.date(2026, 6, 1)
"""The day the test population is generated for (and the clock's starting day)."""
PERSONS = 3000
ADMIN_TOKEN = "test-admin-token"


@dataclass
class FakeClock:
    """Virtual time in Unix seconds; tests move it explicitly."""

    now: float

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def set_date(self, day: dt.date, hour: int = 12) -> None:
        self.now = dt.datetime(day.year, day.month, day.day, hour, tzinfo=JST).timestamp()


@dataclass(frozen=True)
class Population:
    path: Path
    fixtures: dict[str, list[dict[str, Any]]]

    def rows(self, kind: str) -> list[dict[str, Any]]:
        """Fixture rows of ``kind`` (the population guarantees their cards exist on AS_OF)."""
        return list(self.fixtures.get(kind) or [])

    def first(self, kind: str) -> dict[str, Any]:
        rows = self.rows(kind)
        assert rows, f"the test population has no {kind!r} fixture"
        return rows[0]


@pytest.fixture(scope="session")
def population(tmp_path_factory: pytest.TempPathFactory) -> Population:
    path = tmp_path_factory.mktemp("backend") / "population.db"
    with Store.open(path) as store:
        populate(
            store,
            persons=PERSONS,
            facilities=5,
            seed="api-tests",
            as_of=AS_OF,
            # Rare edge cases raised so that a 3,000-person population holds several of each.
            rates=EdgeRates(mislinked=0.01),
        )
        fixtures = store.fixtures()
    return Population(path, fixtures)


@pytest.fixture(scope="session")
def pki() -> TestPKI:
    return TestPKI()


@pytest.fixture
def clock() -> FakeClock:
    c = FakeClock(0.0)
    c.set_date(AS_OF)
    return c


@pytest.fixture
def client(population: Population, pki: TestPKI, clock: FakeClock) -> Iterator[TestClient]:
    """The bare API in-process (no admin/fault layers), batch worker off (tests drive time)."""
    app = create_app(db_path=population.path, pki=pki, clock=clock, batch_worker=False)
    with TestClient(app, raise_server_exceptions=True) as c:
        yield c


@pytest.fixture
def stacked_client(population: Population, pki: TestPKI, clock: FakeClock) -> Iterator[TestClient]:
    """The API inside the served stack (admin endpoint, outage mode, faults)."""
    app = built_on_first_call(
        lambda: create_app(
            db_path=population.path,
            pki=pki,
            clock=clock,
            admin_token=ADMIN_TOKEN,
            batch_worker=False,
        )
    )

    with TestClient(app, raise_server_exceptions=True) as c:
        yield c


@pytest.fixture
def facility(population: Population) -> dict[str, Any]:
    return population.fixtures["facility"][0]


@pytest.fixture
def other_facility(population: Population) -> dict[str, Any]:
    return population.fixtures["facility"][1]


def auth_headers(facility: dict[str, Any]) -> dict[str, str]:
    return {"X-Facility-Code": facility["code"], "Authorization": f"Bearer {facility['secret']}"}


@pytest.fixture
def headers(facility: dict[str, Any]) -> dict[str, str]:
    return auth_headers(facility)


_MINTED: dict[str, CardCredentials] = {}


class Kit:
    """Client-side helpers, handed to tests as the ``kit`` fixture (tests/ is not a package)."""

    AS_OF = AS_OF
    ADMIN_TOKEN = ADMIN_TOKEN

    @staticmethod
    def clock() -> FakeClock:
        """A virtual clock at noon JST of AS_OF (for fixtures wider than one test)."""
        c = FakeClock(0.0)
        c.set_date(AS_OF)
        return c

    @staticmethod
    def auth_headers(facility: dict[str, Any]) -> dict[str, str]:
        return auth_headers(facility)

    @staticmethod
    def mint(row: dict[str, Any], pki: TestPKI | None = None) -> CardCredentials:
        return mint(row, pki)

    @staticmethod
    def cert_b64(creds: CardCredentials) -> str:
        return cert_b64(creds)

    @staticmethod
    def sign(creds: CardCredentials, challenge: bytes) -> str:
        return sign(creds, challenge)

    @staticmethod
    def card_lookup(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return card_lookup(*args, **kwargs)


@pytest.fixture(scope="session")
def kit() -> type[Kit]:
    return Kit


def mint(row: dict[str, Any], pki: TestPKI | None = None) -> CardCredentials:
    """The card of a fixtures row (cached per seed for the session)."""
    key = f"{row['seed']}|{pki.seed if pki else ''}"
    if key not in _MINTED:
        _MINTED[key] = card_certificate(row, pki=pki)
    return _MINTED[key]


def cert_b64(creds: CardCredentials) -> str:
    return base64.b64encode(creds.auth_cert.public_bytes(serialization.Encoding.DER)).decode()


def sign(creds: CardCredentials, challenge: bytes) -> str:
    """What the card's COMPUTE DIGITAL SIGNATURE produces over a SHA-256 DigestInfo."""
    return base64.b64encode(
        creds.auth_key.sign(challenge, padding.PKCS1v15(), hashes.SHA256())
    ).decode()


def card_lookup(
    client: TestClient,
    headers: dict[str, str],
    creds: CardCredentials,
    *,
    method: str = "pin",
    limit: bool = False,
    challenge_from: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A full card lookup (challenge + signature for pin); returns the JSON answer."""
    body: dict[str, Any] = {"Certificate": cert_b64(creds), "Method": method}
    if limit:
        body["LimitApplicationCertificateRelatedConsFlg"] = "1"
    if method == "pin":
        r = client.post("/v1/challenges", headers=challenge_from or headers)
        assert r.status_code == 201, r.text
        challenge = base64.b64decode(r.json()["Challenge"])
        body["Challenge"] = r.json()["Challenge"]
        body["Signature"] = sign(creds, challenge)
    elif method == "visual":
        body["VisualCheck"] = {"OperatorId": "staff-01"}
    r = client.post("/v1/eligibility/card", headers=headers, json=body)
    assert r.status_code == 200, r.text
    return r.json()
