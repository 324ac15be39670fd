"""Eligibility by numbers, by 公費, and by demographics in system-outage mode."""

from __future__ import annotations

from typing import Any

import pytest
from backend_queries import number_query as query


@pytest.mark.parametrize(
    ("kind", "validity"),
    [
        ("number_valid", "1"),
        ("number_invalid", "2"),
        ("number_superseded", "3"),
        ("number_unknown", "4"),
        ("number_multiple", "5"),
    ],
)
def test_number_lookup_outcomes(client, headers, population, kind: str, validity: str) -> None:
    row = population.first(kind)
    r = client.post("/v1/eligibility/numbers", headers=headers, json=query(row))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["MessageHeader"]["ReferenceClassification"] == "2"
    assert answer["MessageHeader"]["SegmentOfResult"] == "1"
    body = answer["MessageBody"]
    assert body["ProcessingResultStatus"] == "1"
    assert body["QualificationValidity"] == validity
    results = body["ResultList"]
    if validity == "4":
        assert results == []
    elif validity == "5":
        assert len({(x["Name"], x["Birthdate"]) for x in results}) == row["expected_matches"]
    else:
        assert results[0]["Name"] == row["name"]
    assert body["QualificationConfirmSearchInfo"]["InsurerNumber"] == row["insurer_number"]


def test_superseded_and_invalid_carry_the_right_dates(client, headers, population) -> None:
    invalid = client.post(
        "/v1/eligibility/numbers", headers=headers, json=query(population.first("number_invalid"))
    ).json()
    assert invalid["MessageBody"]["ResultList"][0]["DisqualificationDate"] is not None


def test_zero_padded_kokuho_insurer_number_is_accepted(client, headers, population) -> None:
    from onshi.backend.store import Store

    with Store.open(population.path) as store:
        found = (
            store.connection()
            .execute(
                "SELECT q.insurer_number, q.symbol, q.number, q.branch, p.birthdate"
                " FROM qualifications q JOIN persons p ON p.id = q.person_id"
                " WHERE length(q.insurer_number) = 6 AND q.disqualification_date IS NULL"
                " AND q.superseded_by IS NULL LIMIT 1"
            )
            .fetchone()
        )
    assert found, "the population has no current 国保 (6-digit) qualification"
    row = dict(
        zip(("insurer_number", "symbol", "number", "branch", "birthdate"), found, strict=True)
    )
    q = query(row, InsurerNumber="00" + row["insurer_number"])
    body = client.post("/v1/eligibility/numbers", headers=headers, json=q).json()["MessageBody"]
    assert body["QualificationValidity"] == "1"


def test_koki_answers_the_contribution_ratio(client, headers, population) -> None:
    row = population.first("koki")
    body = client.post("/v1/eligibility/numbers", headers=headers, json=query(row)).json()
    result = body["MessageBody"]["ResultList"][0]
    assert result["InsuredPartialContributionRatio"] == row["contribution_ratio"]
    assert result["InsurerNumber"].startswith("39")


def test_limit_class_by_numbers_needs_the_flag(client, headers, population) -> None:
    row = population.first("with_limit_class")
    plain = client.post("/v1/eligibility/numbers", headers=headers, json=query(row)).json()
    assert "LimitApplicationCertificateRelatedInfo" not in plain["MessageBody"]["ResultList"][0]
    flagged = client.post(
        "/v1/eligibility/numbers",
        headers=headers,
        json=query(row, LimitApplicationCertificateRelatedConsFlg="1"),
    ).json()
    info = flagged["MessageBody"]["ResultList"][0]["LimitApplicationCertificateRelatedInfo"]
    assert info["LimitApplicationCertificateClassificationFlag"] == row["limit_class"]


def test_public_subsidy_lookup(client, headers, population) -> None:
    row = population.first("with_public_subsidy")
    req = {
        "PublicExpensePayerNumber": row["payer_number"],
        "PublicExpenseRecipientNumber": row["recipient_number"],
        "Birthdate": row["birthdate"].replace("-", ""),
    }
    r = client.post("/v1/eligibility/public-subsidy", headers=headers, json=req)
    assert r.status_code == 200, r.text
    body = r.json()["MessageBody"]
    assert body["QualificationValidity"] == "1"
    subsidies = body["ResultList"][0]["PublicExpenseResultList"]
    assert {s["PublicExpensePayerNumber"] for s in subsidies} == {row["payer_number"]}
    # The numbers with another birthdate match nobody.
    wrong = {**req, "Birthdate": "19000101"}
    body = client.post("/v1/eligibility/public-subsidy", headers=headers, json=wrong).json()
    assert body["MessageBody"]["QualificationValidity"] == "4"


def test_demographics_only_in_outage_mode(stacked_client, headers, population, kit) -> None:
    row = population.first("demographics")
    req = {
        "Name": row["name"].replace("\u3000", " "),
        "Sex": row["sex"],
        "Birthdate": row["birthdate"].replace("-", ""),
        "Address": row["address"],
    }
    off = stacked_client.post("/v1/eligibility/demographics", headers=headers, json=req)
    assert off.status_code == 409
    assert "outage" in off.json()["detail"].lower() or "緊急時" in off.json()["detail"]
    admin = {"Authorization": f"Bearer {kit.ADMIN_TOKEN}"}
    put = stacked_client.put("/admin/outage-mode", headers=admin, json={"enabled": True})
    assert put.status_code == 200, put.text
    try:
        on = stacked_client.post("/v1/eligibility/demographics", headers=headers, json=req)
        assert on.status_code == 200, on.text
        body = on.json()["MessageBody"]
        assert body["QualificationValidity"] == "1"
        assert body["ResultList"][0]["Name"] == row["name"]
    finally:
        stacked_client.put("/admin/outage-mode", headers=admin, json={"enabled": False})
    again = stacked_client.post("/v1/eligibility/demographics", headers=headers, json=req)
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"InsurerNumber": "12ab5678"}, "InsurerNumber"),
        ({"Birthdate": "19991345"}, "Birthdate"),
        ({"Birthdate": 19990101}, "Birthdate"),
        ({"InsuredBranchNumber": "1"}, "InsuredBranchNumber"),
        (
            {"LimitApplicationCertificateRelatedConsFlg": "2"},
            "LimitApplicationCertificateRelatedConsFlg",
        ),
        ({"InsuredIdentificationNumber": None}, "InsuredIdentificationNumber"),
    ],
)
def test_bad_number_fields_are_422_naming_the_field(
    client, headers, population, patch: dict[str, Any], field: str
) -> None:
    q = {**query(population.first("number_valid")), **patch}
    q = {k: v for k, v in q.items() if v is not None}
    r = client.post("/v1/eligibility/numbers", headers=headers, json=q)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["field"] == field
    assert problem["fix"]


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"[1, 2]", b"null", b'"text"', b"\xff\xfe", b'{"InsurerNumber": ']
)
def test_bad_json_bodies_are_4xx_never_500(client, headers, raw: bytes) -> None:
    for path in (
        "/v1/eligibility/numbers",
        "/v1/eligibility/card",
        "/v1/eligibility/public-subsidy",
    ):
        r = client.post(path, headers={**headers, "Content-Type": "application/json"}, content=raw)
        assert 400 <= r.status_code < 500, (path, raw, r.status_code, r.text)
        assert r.json()["detail"]
