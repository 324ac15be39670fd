"""The reader's card path over the in-process transport: every verdict comes from the card."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from onshi.card import Card
from onshi.pki import TestPKI
from onshi.profiles import load_profile
from onshi.profiles.facts import profile_crl
from onshi.quickstart.cardpath import CARD_PATH, CardPathContext
from onshi.quickstart.run import challenge_from_seed
from onshi.quickstart.steps import StepRunner, StepStatus
from onshi.transport import InProcessTransport

TODAY = dt.date(2026, 6, 1)
AT = dt.datetime(2026, 6, 1, 3, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return TestPKI()


def run_path(name: str, pki: TestPKI, *, pin: str | None = None) -> tuple[Any, CardPathContext]:
    profile = load_profile(name, today=TODAY)
    card = Card.from_profile(profile, pki=pki)
    ctx = CardPathContext(
        transport=InProcessTransport(card, sleep=lambda _s: None),
        profile=profile,
        pki=pki,
        challenge=challenge_from_seed("test"),
        at=AT,
        crl=profile_crl(pki, profile, "auth", AT),
        pin=pin,
    )
    results = StepRunner(CARD_PATH, ctx).run(timeout=30)
    return {r.name: r for r in results}, ctx


def statuses(results: dict[str, Any]) -> dict[str, StepStatus]:
    return {name: r.status for name, r in results.items()}


def test_valid_card_passes_every_step(pki: TestPKI) -> None:
    results, ctx = run_path("valid", pki)
    assert set(statuses(results).values()) == {StepStatus.PASSED}
    assert ctx.token == "JPKIAPICCTOKEN2"
    assert ctx.pin_tries == 3
    assert results["pin_counter"].sw == 0x63C3
    assert results["verify_pin"].sw == 0x9000
    assert ctx.signature is not None and len(ctx.signature) == 256
    assert ctx.certificate is not None
    assert ctx.certificate.serial_number == ctx.cert_check.serial  # type: ignore[union-attr]
    # the exchanges are what a reader sends: the card path of card_apdu.md §8 A-D
    sent = [e.command.to_bytes().hex().upper() for e in ctx.exchanges]
    assert sent[:3] == ["00A4040C0AD392F000260100000001", "00A4020C020006", "00B0000020"]
    assert "00A4020C02000A" in sent and "00B0000004" in sent
    assert sent[-1].startswith("802A0080333031300D0609608648016503040201050004")


def test_the_signature_is_deterministic(pki: TestPKI) -> None:
    _, first = run_path("valid", pki)
    _, second = run_path("valid", pki)
    assert first.signature == second.signature


def test_wrong_pin_fails_at_verify_with_the_tries_left(pki: TestPKI) -> None:
    results, _ = run_path("valid", pki, pin="9999")
    assert results["verify_pin"].status is StepStatus.FAILED
    assert results["verify_pin"].sw == 0x63C2
    assert "2 tries left" in results["verify_pin"].detail
    assert results["sign"].status is StepStatus.SKIPPED


def test_locked_pin_fails_at_the_counter_query(pki: TestPKI) -> None:
    results, _ = run_path("pin-locked", pki)
    assert results["pin_counter"].status is StepStatus.FAILED
    assert results["pin_counter"].sw == 0x63C0
    assert "no PIN tries left" in results["pin_counter"].detail
    assert results["verify_pin"].status is StepStatus.SKIPPED


def test_nearly_locked_pin_still_passes(pki: TestPKI) -> None:
    results, ctx = run_path("pin-nearly-locked", pki)
    assert ctx.pin_tries == 1
    assert set(statuses(results).values()) == {StepStatus.PASSED}


@pytest.mark.parametrize(
    ("profile", "words"),
    [
        ("cert-revoked", "revoked"),
        ("cert-expired", "expired"),
        ("cert-expired-beyond-grace", "expired"),
        ("cert-not-yet-valid", "not yet valid"),
    ],
)
def test_certificate_problems_fail_the_check(pki: TestPKI, profile: str, words: str) -> None:
    results, _ = run_path(profile, pki)
    assert results["certificate"].status is StepStatus.PASSED
    assert results["check"].status is StepStatus.FAILED
    assert words in results["check"].detail
    assert results["pin_counter"].status is StepStatus.SKIPPED


def test_expiring_certificate_passes_with_a_notice(pki: TestPKI) -> None:
    results, ctx = run_path("cert-expiring", pki)
    assert results["check"].status is StepStatus.PASSED
    assert "expiring within 3 months" in results["check"].detail
    assert ctx.cert_check is not None and ctx.cert_check.expires_within_3_months


def test_juki_card_is_refused_by_its_token(pki: TestPKI) -> None:
    results, ctx = run_path("juki-card", pki)
    assert ctx.token == "JPKIAPICCTOKEN"
    assert results["token"].status is StepStatus.FAILED
    assert "住基カード" in results["token"].detail


@pytest.mark.parametrize(
    ("name", "token"), [("android", "JPKIAPGPSETOKEN"), ("iphone", "JPKIAPIOSTOKEN")]
)
def test_smartphone_token_gets_the_pin_before_the_certificate(
    pki: TestPKI, name: str, token: str
) -> None:
    results, ctx = run_path(name, pki)
    assert ctx.token == token
    assert set(statuses(results).values()) == {StepStatus.PASSED}
    assert "after the auth PIN" in results["certificate"].detail
    sent = [e.command.to_bytes().hex().upper() for e in ctx.exchanges]
    assert sent.index("00A4020C020018") < sent.index("00A4020C02000A")


def test_smartphone_token_with_a_wrong_pin_fails_at_the_certificate(pki: TestPKI) -> None:
    results, _ = run_path("android", pki, pin="0000")
    assert results["certificate"].status is StepStatus.FAILED
    assert results["certificate"].sw == 0x63C2


def test_face_auth_card_cannot_do_pin_mode(pki: TestPKI) -> None:
    results, _ = run_path("face-auth-card", pki)
    failed = [r for r in results.values() if r.status is StepStatus.FAILED]
    assert len(failed) == 1
    assert failed[0].name in {"pin_counter", "verify_pin"}
    assert results["sign"].status is StepStatus.SKIPPED


def test_expired_certificate_mentions_the_grace_period_only_inside_it(pki: TestPKI) -> None:
    inside, _ = run_path("cert-expired", pki)
    beyond, _ = run_path("cert-expired-beyond-grace", pki)
    assert "3-month grace" in inside["check"].detail
    assert "grace" not in beyond["check"].detail
