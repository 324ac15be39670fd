"""One certificate-state vocabulary: the PKI's check, the reader's card path and the backend
agree on the renewal window and the grace after expiry, to the second."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from onshi.backend.eligibility import CertificateVerifier
from onshi.card import Card
from onshi.dates import JST
from onshi.pki import CertState, TestPKI, grace_end
from onshi.profiles import CertSpec, load_profile
from onshi.profiles.facts import declared_state
from onshi.quickstart.cardpath import CARD_PATH, CardPathContext
from onshi.quickstart.steps import StepRunner, StepStatus
from onshi.transport import InProcessTransport

NOT_BEFORE = dt.date(2021, 1, 15)
NOT_AFTER = dt.date(2026, 1, 15)
"""Expires mid-month: the backend's grace runs to the end of April, 3 months after the day
would end on 04-15, so the two readings differ from 04-16 to 04-30."""


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return TestPKI()


@pytest.fixture(scope="module")
def profile():  # type: ignore[no-untyped-def]
    base = load_profile("valid", today=dt.date(2025, 6, 1))
    spec = CertSpec(present=True, not_before=NOT_BEFORE, not_after=NOT_AFTER)
    return replace(base, auth_cert=spec, seed="tests/cert-state/mid-month")


MOMENTS = [
    dt.datetime(2025, 10, 14, 12, tzinfo=JST),  # 3 months + a day left: valid
    dt.datetime(2025, 10, 16, 12, tzinfo=JST),  # within the renewal window: expiring
    dt.datetime(2026, 1, 15, 23, 59, 59, tzinfo=JST),  # last second: expiring
    dt.datetime(2026, 1, 16, 0, 0, 0, tzinfo=JST),  # first second expired: in grace
    dt.datetime(2026, 4, 20, 12, tzinfo=JST),  # past "expiry day + 3 months", still in grace
    dt.datetime(2026, 4, 30, 23, 59, 59, tzinfo=JST),  # the grace's last second
    dt.datetime(2026, 5, 1, 0, 0, 0, tzinfo=JST),  # grace over: expired
]
EXPECTED = [
    CertState.VALID,
    CertState.EXPIRING,
    CertState.EXPIRING,
    CertState.EXPIRED_IN_GRACE,
    CertState.EXPIRED_IN_GRACE,
    CertState.EXPIRED_IN_GRACE,
    CertState.EXPIRED,
]


def test_grace_ends_at_the_end_of_the_third_month_after_expiry() -> None:
    expiry = dt.datetime(2026, 1, 15, 23, 59, 59, tzinfo=JST)
    assert grace_end(expiry) == dt.datetime(2026, 5, 1, tzinfo=JST)


@pytest.mark.parametrize(("at", "expected"), list(zip(MOMENTS, EXPECTED, strict=True)))
def test_pki_check_and_backend_fast_path_agree(pki: TestPKI, profile, at, expected) -> None:  # type: ignore[no-untyped-def]
    creds = pki.card_credentials(
        seed=profile.seed, auth=profile.auth_cert, sign=profile.sign_cert, holder=profile.holder
    )
    assert pki.check_certificate(creds.auth_cert, "auth", at=at).state is expected
    verifier = CertificateVerifier(pki)
    chain = verifier.chain(base64.b64encode(creds.auth_cert.public_bytes(Encoding.DER)).decode())
    assert verifier.state(chain, at.timestamp()) is expected


@pytest.mark.parametrize(("at", "expected"), list(zip(MOMENTS, EXPECTED, strict=True)))
def test_the_card_path_judges_the_grace_as_the_backend_does(
    pki: TestPKI, profile, at, expected
) -> None:  # type: ignore[no-untyped-def]
    ctx = CardPathContext(
        transport=InProcessTransport(Card.from_profile(profile, pki=pki), sleep=lambda _s: None),
        profile=profile,
        pki=pki,
        challenge=b"cert-state",
        at=at,
    )
    results = {r.name: r for r in StepRunner(CARD_PATH, ctx).run(timeout=30)}
    assert ctx.cert_check is not None and ctx.cert_check.state is expected
    usable = expected in (CertState.VALID, CertState.EXPIRING)
    assert results["check"].status is (StepStatus.PASSED if usable else StepStatus.FAILED)


def test_the_profile_view_speaks_the_same_enum(profile) -> None:  # type: ignore[no-untyped-def]
    """``card list`` shows the certificate itself: expired, whatever the backend's grace."""
    assert declared_state(profile.auth_cert, dt.date(2026, 4, 20)) is CertState.EXPIRED
    assert declared_state(profile.auth_cert, dt.date(2025, 10, 16)) is CertState.EXPIRING
