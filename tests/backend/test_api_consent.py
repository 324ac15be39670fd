"""Consent registration (idempotent) and records within the 24-hour window."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from onshi.pki import JST


def reference(client, headers, kit, row: dict[str, Any]) -> str:
    answer = kit.card_lookup(client, headers, kit.mint(row))
    return answer["MessageBody"]["PatientReference"]


def consent(client, headers, ref: str, kinds: list[str], key: str):
    return client.post(
        "/v1/consents",
        headers={**headers, "Idempotency-Key": key},
        json={"PatientReference": ref, "Kinds": kinds},
    )


def test_same_key_twice_gives_one_consent(client, headers, kit, population, clock) -> None:
    ref = reference(client, headers, kit, population.first("valid_card"))
    key = str(uuid.uuid4())
    first = consent(client, headers, ref, ["medication", "checkup"], key)
    assert first.status_code == 201, first.text
    again = consent(client, headers, ref, ["checkup", "medication"], key)
    assert again.status_code == 200
    assert again.json()["ConsentId"] == first.json()["ConsentId"]
    view = first.json()
    assert view["PharmacistsInfoConsFlg"] == "1"
    assert view["SpecificHealthCheckupsInfoConsFlg"] == "1"
    assert view["DiagnosisInfoConsFlg"] == "0"
    # AvailableTime = ConsTime + 24 h (the public sample's rule), yyyyMMddHHmmss JST.
    fmt = "%Y%m%d%H%M%S"
    cons = dt.datetime.strptime(view["PharmacistsInfoConsTime"], fmt)
    until = dt.datetime.strptime(view["PharmacistsInfoAvailableTime"], fmt)
    assert until - cons == dt.timedelta(hours=24)
    assert cons == dt.datetime.fromtimestamp(clock.now, JST).replace(tzinfo=None)


def test_same_key_with_another_body_is_409(client, headers, kit, population) -> None:
    ref = reference(client, headers, kit, population.first("valid_card"))
    key = str(uuid.uuid4())
    assert consent(client, headers, ref, ["medication"], key).status_code == 201
    clash = consent(client, headers, ref, ["surgery"], key)
    assert clash.status_code == 409
    assert clash.json()["field"] == "Idempotency-Key"


def test_consent_needs_an_idempotency_key(client, headers, kit, population) -> None:
    ref = reference(client, headers, kit, population.first("valid_card"))
    r = client.post(
        "/v1/consents", headers=headers, json={"PatientReference": ref, "Kinds": ["medication"]}
    )
    assert r.status_code == 400
    assert r.json()["field"] == "Idempotency-Key"


@pytest.mark.parametrize("kinds", [[], ["x-ray"], "medication", [1]])
def test_bad_consent_kinds_are_422(client, headers, kit, population, kinds) -> None:
    ref = reference(client, headers, kit, population.first("valid_card"))
    r = consent(client, headers, ref, kinds, str(uuid.uuid4()))
    assert r.status_code == 422
    assert r.json()["field"] == "Kinds"


def test_records_refused_without_consent_then_given_then_expire_after_24h(
    client, headers, kit, population, clock
) -> None:
    row = population.rows("valid_card")[-1]  # the only test that consents to diagnosis
    ref = reference(client, headers, kit, row)
    params = {"PatientReference": ref}
    before = client.get("/v1/records/diagnosis", headers=headers, params=params)
    assert before.status_code == 403
    assert consent(client, headers, ref, ["diagnosis"], str(uuid.uuid4())).status_code == 201
    clock.advance(60)
    ok = client.get("/v1/records/diagnosis", headers=headers, params=params)
    assert ok.status_code == 200, ok.text
    assert ok.json()["Kind"] == "diagnosis"
    assert isinstance(ok.json()["Records"], list)
    other_kind = client.get("/v1/records/surgery", headers=headers, params=params)
    assert other_kind.status_code == 403
    clock.advance(24 * 3600)
    late = client.get("/v1/records/diagnosis", headers=headers, params=params)
    assert late.status_code == 403


def test_records_refused_for_a_certificate_in_grace(client, headers, kit, population) -> None:
    ref = reference(client, headers, kit, population.first("expired_card_in_grace"))
    assert consent(client, headers, ref, ["medication"], str(uuid.uuid4())).status_code == 201
    r = client.get("/v1/records/medication", headers=headers, params={"PatientReference": ref})
    assert r.status_code == 403
    assert r.json()["code"] == "ONSW002"


def test_reference_of_another_facility_is_403(
    client, headers, kit, population, other_facility
) -> None:
    ref = reference(client, headers, kit, population.first("valid_card"))
    other = kit.auth_headers(other_facility)
    assert consent(client, other, ref, ["medication"], str(uuid.uuid4())).status_code == 403
    r = client.get("/v1/records/medication", headers=other, params={"PatientReference": ref})
    assert r.status_code == 403


def test_forged_reference_is_403_and_a_misshapen_one_422(client, headers, kit, population) -> None:
    """A reference of the contract's shape is a well-formed request: one this backend did not
    issue (the MAC fails) is refused (403); only another shape is invalid (422)."""
    ref = reference(client, headers, kit, population.first("valid_card"))
    prefix, payload, mac = ref.split(".")
    forged = f"{prefix}.{payload}.{'A' * len(mac)}"
    r = consent(client, headers, forged, ["medication"], str(uuid.uuid4()))
    assert r.status_code == 403
    assert r.json()["field"] == "PatientReference"
    for shaped in ("pr2.-.-", "pr2.A.A"):  # the shape, but not even decodable
        r = client.get(
            "/v1/records/medication", headers=headers, params={"PatientReference": shaped}
        )
        assert r.status_code == 403, shaped
    r = client.get("/v1/records/medication", headers=headers, params={"PatientReference": "junk"})
    assert r.status_code == 422
    assert r.json()["field"] == "PatientReference"


def test_unknown_record_kind_is_404(client, headers) -> None:
    r = client.get("/v1/records/x-ray", headers=headers, params={"PatientReference": "x"})
    assert r.status_code == 404
