"""Eligibility by card: every outcome, every refusal, the certificate time rules."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from onshi.backend.eligibility import grace_end
from onshi.pki import JST, TestPKI


def header(answer: dict[str, Any]) -> dict[str, Any]:
    return answer["MessageHeader"]


def body(answer: dict[str, Any]) -> dict[str, Any]:
    return answer["MessageBody"]


@pytest.mark.parametrize("method", ["pin", "face", "visual"])
def test_valid_card_answers_validity_1_with_the_holders_data(
    kit, client, headers, population: Any, clock: Any, method: str
) -> None:
    row = population.first("valid_card")
    creds = kit.mint(row)
    if method == "face":
        captured = dt.datetime.fromtimestamp(clock.now - 5, JST).isoformat()
        r = client.post(
            "/v1/eligibility/card",
            headers=headers,
            json={
                "Certificate": kit.cert_b64(creds),
                "Method": "face",
                "FaceMatch": {
                    "ReaderId": "R1",
                    "Score": 0.93,
                    "Threshold": 0.8,
                    "CapturedAt": captured,
                },
            },
        )
        assert r.status_code == 200, r.text
        answer = r.json()
    else:
        answer = kit.card_lookup(client, headers, creds, method=method)
    assert header(answer)["SegmentOfResult"] == "1"
    assert header(answer)["ReferenceClassification"] == "1"
    b = body(answer)
    assert b["ProcessingResultStatus"] == "1"
    assert b["QualificationValidity"] == "1"
    assert "ProcessingResultCode" not in b
    assert b["ResultList"][0]["Name"] == row["holder"]["name"]
    assert b["ResultList"][0]["Birthdate"] == row["holder"]["birthdate"].replace("-", "")
    assert b["PatientReference"].startswith("pr2.")


def test_face_below_threshold_and_stale_attestation_are_refused(
    kit, client, headers, population: Any, clock: Any
) -> None:
    creds = kit.mint(population.first("valid_card"))

    def face(score: float, age_s: float) -> dict[str, Any]:
        captured = dt.datetime.fromtimestamp(clock.now - age_s, JST).isoformat()
        match = {"ReaderId": "R1", "Score": score, "Threshold": 0.8, "CapturedAt": captured}
        r = client.post(
            "/v1/eligibility/card",
            headers=headers,
            json={"Certificate": kit.cert_b64(creds), "Method": "face", "FaceMatch": match},
        )
        assert r.status_code == 200, r.text
        return header(r.json())

    assert face(0.5, 1)["ErrorCode"] == "ONSE221"
    assert face(0.9, 301)["SegmentOfResult"] == "9"
    assert face(0.9, 301)["ErrorCode"] == "ONSE222"
    assert face(0.9, -60)["ErrorCode"] == "ONSE222"


def test_challenge_reuse_is_rejected(kit, client, headers, population: Any) -> None:
    creds = kit.mint(population.first("valid_card"))
    r = client.post("/v1/challenges", headers=headers)
    challenge = base64.b64decode(r.json()["Challenge"])
    req = {
        "Certificate": kit.cert_b64(creds),
        "Method": "pin",
        "Challenge": r.json()["Challenge"],
        "Signature": kit.sign(creds, challenge),
    }
    first = client.post("/v1/eligibility/card", headers=headers, json=req).json()
    assert body(first)["QualificationValidity"] == "1"
    again = client.post("/v1/eligibility/card", headers=headers, json=req).json()
    assert header(again)["SegmentOfResult"] == "9"
    assert header(again)["ErrorCode"] == "ONSE211"
    assert "MessageBody" not in again


def test_expired_challenge_and_foreign_facility_challenge_are_rejected(
    kit, client, headers, other_facility, population: Any, clock: Any
) -> None:
    creds = kit.mint(population.first("valid_card"))
    r = client.post("/v1/challenges", headers=headers)
    challenge = r.json()["Challenge"]
    clock.advance(301)
    req = {
        "Certificate": kit.cert_b64(creds),
        "Method": "pin",
        "Challenge": challenge,
        "Signature": kit.sign(creds, base64.b64decode(challenge)),
    }
    late = client.post("/v1/eligibility/card", headers=headers, json=req).json()
    assert header(late)["ErrorCode"] == "ONSE211"
    foreign = kit.card_lookup(
        client, headers, creds, challenge_from=kit.auth_headers(other_facility)
    )
    assert header(foreign)["ErrorCode"] == "ONSE211"


def test_forged_signature_is_rejected(kit, client, headers, population: Any) -> None:
    creds = kit.mint(population.first("valid_card"))
    impostor = kit.mint(population.rows("valid_card")[1])
    r = client.post("/v1/challenges", headers=headers)
    challenge = base64.b64decode(r.json()["Challenge"])
    if impostor.auth_key.private_numbers() == creds.auth_key.private_numbers():
        pytest.fail("the two fixtures share a pooled key; pick rows with distinct keys")
    forged = {
        "Certificate": kit.cert_b64(creds),
        "Method": "pin",
        "Challenge": r.json()["Challenge"],
        "Signature": kit.sign(impostor, challenge),
    }
    answer = client.post("/v1/eligibility/card", headers=headers, json=forged).json()
    assert header(answer)["ErrorCode"] == "ONSE212"
    # Signing another challenge than the one presented is a forgery too.
    r2 = client.post("/v1/challenges", headers=headers)
    other = {**forged, "Challenge": r2.json()["Challenge"], "Signature": kit.sign(creds, challenge)}
    answer = client.post("/v1/eligibility/card", headers=headers, json=other).json()
    assert header(answer)["ErrorCode"] == "ONSE212"


def test_foreign_ca_certificate_is_rejected(kit, client, headers, population: Any) -> None:
    foreign = kit.mint(population.first("valid_card"), TestPKI(seed="someone-elses-ca"))
    answer = kit.card_lookup(client, headers, foreign, method="visual")
    assert header(answer)["SegmentOfResult"] == "9"
    assert header(answer)["ErrorCode"] == "ONSE201"


def test_tampered_certificate_signature_is_rejected(kit, client, headers, population: Any) -> None:
    creds = kit.mint(population.first("valid_card"))
    der = bytearray(creds.auth_cert.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the CA's signature value
    req = {
        "Certificate": base64.b64encode(bytes(der)).decode(),
        "Method": "visual",
        "VisualCheck": {"OperatorId": "staff-01"},
    }
    answer = client.post("/v1/eligibility/card", headers=headers, json=req).json()
    assert header(answer)["ErrorCode"] == "ONSE202"


def test_revoked_certificate_answers_status_2(kit, client, headers, population: Any) -> None:
    answer = kit.card_lookup(client, headers, kit.mint(population.first("revoked_card")))
    assert header(answer)["SegmentOfResult"] == "1"
    assert body(answer)["ProcessingResultStatus"] == "2"
    assert body(answer)["ProcessingResultCode"] == "ONSE101"
    assert body(answer)["ResultList"] == []


def test_unregistered_card_answers_validity_4(kit, client, headers, population: Any) -> None:
    answer = kit.card_lookup(client, headers, kit.mint(population.first("unregistered_card")))
    assert body(answer)["QualificationValidity"] == "4"
    assert body(answer)["ProcessingResultCode"] == "ONSW003"
    assert body(answer)["ResultList"] == []
    assert "PatientReference" not in body(answer)


def test_mislinked_card_answers_the_linked_persons_data(
    kit, client, headers, population: Any
) -> None:
    row = population.first("mislinked_card")
    assert row["linked_person_id"] != row["person_id"]
    answer = kit.card_lookup(client, headers, kit.mint(row))
    results = body(answer)["ResultList"]
    assert results, "a mislinked card still answers (someone else's) qualification"
    holder = row["holder"]
    shown = {(r["Name"], r["Birthdate"]) for r in results}
    assert (holder["name"], holder["birthdate"].replace("-", "")) not in shown


def test_expiring_certificate_succeeds_with_the_notice(
    kit, client, headers, population: Any, clock: Any
) -> None:
    row = population.first("expiring_card")
    not_after = dt.date.fromisoformat(row["auth"]["not_after"])
    assert AS_OF_DATE(clock) + dt.timedelta(days=92) > not_after
    answer = kit.card_lookup(client, headers, kit.mint(row))
    assert body(answer)["ProcessingResultStatus"] == "1"
    assert body(answer)["ProcessingResultCode"] == "ONSW001"
    # Far from expiry, the same card carries no notice.
    clock.set_date(not_after - dt.timedelta(days=200))
    far = kit.card_lookup(client, headers, kit.mint(row))
    assert "ProcessingResultCode" not in body(far)


def AS_OF_DATE(clock: Any) -> dt.date:
    return dt.datetime.fromtimestamp(clock.now, JST).date()


def test_expired_in_grace_answers_eligibility_with_notice_then_refuses_after_grace(
    kit, client, headers, population: Any, clock: Any
) -> None:
    row = population.first("expired_card_in_grace")
    creds = kit.mint(row)
    answer = kit.card_lookup(client, headers, creds)
    assert header(answer)["SegmentOfResult"] == "1"
    assert body(answer)["ProcessingResultCode"] == "ONSW002"
    assert body(answer)["QualificationValidity"] == "1"
    end = grace_end(creds.auth_cert.not_valid_after_utc)
    clock.now = end.timestamp() - 60
    assert body(kit.card_lookup(client, headers, creds))["ProcessingResultCode"] == "ONSW002"
    clock.now = end.timestamp() + 1
    late = kit.card_lookup(client, headers, creds)
    assert header(late)["ErrorCode"] == "ONSE204"


def test_expired_beyond_grace_fixture_is_refused(kit, client, headers, population: Any) -> None:
    rows = population.rows("expired_card_beyond_grace")
    assert rows
    for row in rows:  # every one is past the grace on the population's day (the clock's)
        answer = kit.card_lookup(client, headers, kit.mint(row))
        assert header(answer)["ErrorCode"] == "ONSE204"


def test_not_yet_valid_certificate_is_refused(
    kit, client, headers, population: Any, clock: Any
) -> None:
    row = population.first("valid_card")
    clock.set_date(dt.date.fromisoformat(row["auth"]["not_before"]) - dt.timedelta(days=2))
    answer = kit.card_lookup(client, headers, kit.mint(row), method="visual")
    assert header(answer)["ErrorCode"] == "ONSE203"


def test_grace_end_is_three_months_after_the_expiry_month() -> None:
    expired = dt.datetime(2026, 5, 10, 23, 59, tzinfo=JST)
    assert grace_end(expired) == dt.datetime(2026, 9, 1, tzinfo=JST)
    assert grace_end(dt.datetime(2026, 11, 30, tzinfo=JST)) == dt.datetime(2027, 3, 1, tzinfo=JST)


def test_card_with_superseded_and_disqualified_qualifications(
    kit, client, headers, population: Any
) -> None:
    superseded = population.rows("card_superseded")
    disqualified = population.rows("card_disqualified")
    assert superseded and disqualified
    valid_now = kit.card_lookup(client, headers, kit.mint(superseded[0]))
    # The newer qualification is valid: the card answers 1 with the current one only.
    assert body(valid_now)["QualificationValidity"] == "1"
    assert all(r["DisqualificationDate"] is None for r in body(valid_now)["ResultList"])
    lost = kit.card_lookup(client, headers, kit.mint(disqualified[0]))
    assert body(lost)["QualificationValidity"] == "2"


def test_limit_class_only_with_the_consent_flag(kit, client, headers, population: Any) -> None:
    rows = [r for r in population.rows("with_limit_class") if r.get("card")]
    assert rows, "no with_limit_class fixture with a card"
    creds = kit.mint(rows[0]["card"])
    without = body(kit.card_lookup(client, headers, creds))["ResultList"][0]
    assert "LimitApplicationCertificateRelatedInfo" not in without
    assert without["LimitApplicationCertificateRelatedConsFlg"] == "0"
    with_flag = body(kit.card_lookup(client, headers, creds, limit=True))["ResultList"][0]
    info = with_flag["LimitApplicationCertificateRelatedInfo"]
    assert info["LimitApplicationCertificateClassificationFlag"] == rows[0]["limit_class"]


def test_specific_disease_is_returned_where_it_applies(
    kit, client, headers, population: Any
) -> None:
    rows = [r for r in population.rows("with_specific_disease") if r.get("card")]
    assert rows
    result = body(kit.card_lookup(client, headers, kit.mint(rows[0]["card"])))["ResultList"][0]
    categories = [
        d["SpecificDiseasesDiseaseCategory"] for d in result["SpecificDiseasesCertificateList"]
    ]
    assert categories == rows[0]["specific_diseases"]


def test_unknown_card_serial_is_refused(kit, client, headers, pki: TestPKI) -> None:
    from onshi.profiles.model import CertSpec, Holder, Sex

    spec = CertSpec(present=True, not_before=dt.date(2025, 1, 1), not_after=dt.date(2029, 1, 1))
    holder = Holder(
        name="試験　花子",
        name_kana=None,
        address="東京都千代田区1-1",
        birthdate=dt.date(1990, 1, 1),
        sex=Sex.FEMALE,
    )
    stranger = pki.card_credentials(
        seed="not-in-population", auth=spec, sign=spec, holder=holder, key_pool=64
    )
    answer = kit.card_lookup(client, headers, stranger)
    assert header(answer)["ErrorCode"] == "ONSE231"


def test_expiring_from_matches_calendar_month_arithmetic() -> None:
    import random

    from onshi.backend.eligibility import expiring_from
    from onshi.pki import add_months

    rng = random.Random(7)
    for _ in range(200):
        not_after = dt.datetime(2026, 1, 1, tzinfo=JST) + dt.timedelta(
            seconds=rng.randint(0, 10**8)
        )
        start = expiring_from(not_after)
        assert not_after < add_months(start.astimezone(JST), 3)
        before = (start - dt.timedelta(seconds=2)).astimezone(JST)
        assert not not_after < add_months(before, 3)


def test_mislinked_answer_is_exactly_the_linked_persons_record(
    kit, client, headers, population: Any
) -> None:
    from onshi.backend.store import Store

    row = population.first("mislinked_card")
    with Store.open(population.path) as store:
        linked_name = (
            store.connection()
            .execute("SELECT name FROM persons WHERE id = ?", (row["linked_person_id"],))
            .fetchone()[0]
        )
    answer = kit.card_lookup(client, headers, kit.mint(row))
    assert {r["Name"] for r in body(answer)["ResultList"]} == {linked_name}


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"Method": "retina"}, "Method"),
        ({"Certificate": "***"}, "Certificate"),
        ({"Certificate": ""}, "Certificate"),
        ({"Signature": None}, "Signature"),
        ({"Challenge": 12}, "Challenge"),
        ({"Method": "face", "FaceMatch": {"ReaderId": "R", "Score": True}}, "FaceMatch.Score"),
        (
            {
                "Method": "face",
                "FaceMatch": {"ReaderId": "R", "Score": 1, "Threshold": 0.5, "CapturedAt": "now"},
            },
            "FaceMatch.CapturedAt",
        ),
        ({"Method": "face", "FaceMatch": None}, "FaceMatch"),
        ({"Method": "visual", "VisualCheck": {"OperatorId": ""}}, "VisualCheck.OperatorId"),
        ({"Method": "visual", "VisualCheck": None}, "VisualCheck"),
        # A field the method does not use is still checked (the contract declares it).
        ({"Method": "visual", "VisualCheck": {"OperatorId": "s"}, "Challenge": "*"}, "Challenge"),
        (
            {"LimitApplicationCertificateRelatedConsFlg": 1},
            "LimitApplicationCertificateRelatedConsFlg",
        ),
    ],
)
def test_bad_card_requests_are_422_naming_the_field(
    kit, client, headers, population: Any, patch: dict[str, Any], field: str
) -> None:
    creds = kit.mint(population.first("valid_card"))
    req = {
        "Certificate": kit.cert_b64(creds),
        "Method": "pin",
        "Challenge": base64.b64encode(b"x" * 32).decode(),
        "Signature": base64.b64encode(b"y" * 256).decode(),
        **patch,
    }
    req = {k: v for k, v in req.items() if v is not None}
    r = client.post("/v1/eligibility/card", headers=headers, json=req)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


def test_oversized_body_is_413(client, headers) -> None:
    r = client.post(
        "/v1/eligibility/card",
        headers={**headers, "Content-Type": "application/json"},
        content=b'{"Certificate": "' + b"A" * (1 << 20) + b'"}',
    )
    assert r.status_code == 413


def test_signature_certificate_instead_of_user_auth_is_rejected(
    kit, client, headers, population: Any
) -> None:
    creds = kit.mint(population.first("valid_card"))
    assert creds.sign_cert is not None
    der = creds.sign_cert.public_bytes(serialization.Encoding.DER)
    req = {
        "Certificate": base64.b64encode(der).decode(),
        "Method": "visual",
        "VisualCheck": {"OperatorId": "staff-01"},
    }
    answer = client.post("/v1/eligibility/card", headers=headers, json=req).json()
    assert header(answer)["ErrorCode"] == "ONSE201"
