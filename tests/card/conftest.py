"""Card fixtures: profiles from the factory, credentials from the real test PKI."""

from __future__ import annotations

import pytest

from onshi.card import Card
from onshi.pki import TestPKI

from .factories import make_profile


@pytest.fixture(scope="session")
def pki() -> TestPKI:
    return TestPKI()


@pytest.fixture(scope="session")
def adult_credentials(pki: TestPKI):
    p = make_profile()
    return pki.card_credentials(seed=p.seed, auth=p.auth_cert, sign=p.sign_cert, holder=p.holder)


@pytest.fixture
def card(adult_credentials) -> Card:
    """A fresh adult card (new counters every test; keys shared through the session)."""
    return Card(make_profile(), adult_credentials)
