"""Whole sessions through the world driver: the reader against the real emulated card (the
shipped profiles, re-issued as the population's cards) and the real backend app in process,
all on one mock clock."""

from __future__ import annotations

from typing import Any

import pytest

from onshi.reader import Outcome, ReaderPolicy
from onshi.reader import actions as act
from onshi.reader import events as ev
from onshi.reader.events import Method, ReaderMode
from onshi.reader.results import Fallback
from onshi.reader.world import Patient, Staff

from .conftest import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_pin_check_is_eligible_with_one_verify_one_signature_and_consent(world) -> None:
    d = world(patient=Patient(method=Method.PIN, pins=["1234"], consents={"all": True}))
    r = d.present_card().result
    assert r.eligible and r.method is Method.PIN
    assert (r.counts.pin_verifies, r.counts.signatures, r.counts.backend_calls) == (1, 1, 3)
    assert r.public["QualificationValidity"] == "1"
    assert r.public["SpecificHealthCheckupsInfoConsFlg"] == "1"
    assert r.public["PharmacistsInfoConsFlg"] == "1"
    assert r.public["DiagnosisInfoConsFlg"] == "0"
    assert len(r.public["PharmacistsInfoAvailableTime"]) == 14


def test_face_check_needs_no_pin(world) -> None:
    d = world(patient=Patient(face_scores=[0.4, 0.91]))
    run = d.present_card()
    r = run.result
    assert r.eligible and r.method is Method.FACE
    assert r.counts.pin_verifies == 0 and r.counts.signatures == 0
    assert d.card.counters["jpki.auth_pin"] == 3


def test_wrong_pins_lock_then_face(world) -> None:
    d = world(
        "pin-nearly-locked",
        patient=Patient(method=Method.PIN, pins=["0000", "1234"], face_scores=[0.95]),
    )
    r = d.present_card().result
    assert r.eligible and r.method is Method.FACE
    assert d.card.counters["jpki.auth_pin"] == 0 and r.counts.pin_verifies == 1


def test_pin_locked_card_never_sends_a_pin(world) -> None:
    d = world("pin-locked", patient=Patient(method=Method.PIN, pins=["1234"], face_scores=[0.9]))
    r = d.present_card().result
    assert r.eligible and r.method is Method.FACE and r.counts.pin_verifies == 0


def test_face_auth_card_goes_to_staff_then_visual(world) -> None:
    d = world("face-auth-card", patient=Patient(face_scores=[0.1, 0.2, 0.3]), staff=Staff())
    r = d.present_card().result
    assert r.eligible and r.method is Method.VISUAL
    assert r.counts.pin_verifies == 0 and d.reader.mode is ReaderMode.VISUAL


def test_face_timeout_in_virtual_time(world, clock) -> None:
    start = clock.now()
    d = world("face-auth-card", patient=Patient(face_scores=[]), staff=Staff(comes=False))
    r = d.present_card().result
    assert r.outcome is Outcome.NOT_IDENTIFIED
    assert clock.now() - start == pytest.approx(30 + 300)  # face timeout, then staff timeout


@pytest.mark.parametrize(
    ("profile", "kind", "outcome", "fallback"),
    [
        ("unregistered", "unregistered_card", Outcome.NOT_REGISTERED, Fallback.NUMBER_PATH),
        ("mislinked", "mislinked_card", Outcome.MISLINKED, Fallback.NUMBER_PATH),
        ("cert-revoked", "revoked_card", Outcome.CERTIFICATE_INVALID, Fallback.NUMBER_PATH),
        (
            "cert-expired-beyond-grace",
            "expired_card_beyond_grace",
            Outcome.CERTIFICATE_INVALID,
            Fallback.NUMBER_PATH,
        ),
        ("juki-card", "valid_card", Outcome.CARD_REFUSED, Fallback.NUMBER_PATH),
    ],
)
def test_situations_end_as_the_profile_models(world, profile, kind, outcome, fallback) -> None:
    d = world(profile, kind, patient=Patient(face_scores=[0.95]))
    r = d.present_card().result
    assert (r.outcome, r.fallback) == (outcome, fallback)
    assert not r.eligible


def test_mislink_names_the_fields(world, population) -> None:
    r = world("mislinked", "mislinked_card", patient=Patient(face_scores=[0.95])).present_card()
    assert "Name" in r.result.mismatch or "Birthdate" in r.result.mismatch
    assert not any(c.path == "/v1/consents" for c in r.calls())


def test_grace_gives_eligibility_only(world) -> None:
    d = world("cert-expired", "expired_card_in_grace", patient=Patient(face_scores=[0.95]))
    run = d.present_card()
    r = run.result
    assert r.eligible and "ONSW002" in r.notices
    assert not any(s.screen is act.Screen.CONSENT for s in run.screens())


def test_expiring_certificate_notice(world) -> None:
    r = world("cert-expiring", "expiring_card", patient=Patient(face_scores=[0.95])).present_card()
    assert r.result.eligible and r.result.notices == ("ONSW001",)


def test_a_backend_that_never_answers_ends_on_the_readers_timer(world, clock) -> None:
    d = world(patient=Patient(face_scores=[0.95]), backend_call=lambda call: None)
    start = clock.now()
    r = d.present_card().result
    assert r.outcome is Outcome.BACKEND_UNAVAILABLE and not r.eligible
    assert clock.now() - start == pytest.approx(3 + 10)  # one capture, then the 10 s timer


def test_jpki_degradation_fails_closed_and_the_number_path_still_works(
    world, client, population
) -> None:
    faults = {"seed": 1, "jpki": {"error_rate": 1.0, "error_status": 503}}
    assert client.put("/admin/faults", json=faults, headers=ADMIN).status_code == 200
    d = world(patient=Patient(method=Method.PIN, pins=["1234"]))
    r = d.present_card().result
    assert r.outcome is Outcome.BACKEND_UNAVAILABLE and r.fallback is Fallback.NUMBER_PATH
    assert d.card.counters["jpki.auth_pin"] == 3  # the challenge failed: no PIN was used
    row = population.first("number_valid")
    query = ev.NumberQueryRequested(
        insurer_number=row["insurer_number"],
        symbol=row.get("symbol"),
        number=row["number"],
        branch=row.get("branch"),
        birthdate=row["birthdate"].replace("-", ""),
    )
    numbers = d.staff_event(query).result
    assert numbers.eligible and numbers.public["ReferenceClassification"] == "2"


def test_outage_mode_by_the_cards_basic4(world, client) -> None:
    put = client.put("/admin/outage-mode", json={"enabled": True}, headers=ADMIN)
    assert put.status_code == 200
    d = world(policy=ReaderPolicy(mode=ReaderMode.OUTAGE))
    run = d.present_card()
    assert [c.path for c in run.calls()] == ["/v1/eligibility/demographics"]
    assert run.result.eligible and run.result.counts.pin_verifies == 0


def test_consent_write_retried_with_the_same_key_never_duplicates(world, backend) -> None:
    seen: list[tuple[act.CallBackend, Any]] = []

    def lossy(call: act.CallBackend) -> Any:
        reply = backend(call)
        seen.append((call, reply))
        if call.path == "/v1/consents" and sum(c.path == "/v1/consents" for c, _ in seen) == 1:
            return "timeout"  # the write happened, its answer was lost
        return reply

    d = world(patient=Patient(face_scores=[0.95], consents={"all": True}), backend_call=lossy)
    r = d.present_card().result
    writes = [(c, reply) for c, reply in seen if c.path == "/v1/consents"]
    assert len(writes) == 2
    assert writes[0][0].headers == writes[1][0].headers
    assert [reply[0] for _, reply in writes] == [201, 200]  # the retry found the first consent
    assert r.eligible and r.public["PharmacistsInfoConsFlg"] == "1"
