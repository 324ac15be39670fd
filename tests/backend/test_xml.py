"""The public XmlMsg form of the number-based query, in UTF-8 and Shift_JIS."""

from __future__ import annotations

from typing import Any

import pytest

from onshi.backend.xmlmsg import parse_answer


def xml_request(row: dict[str, Any], facility_code: str, encoding: str, *, limit: str = "0") -> str:
    symbol = f"<InsuredCardSymbol>{row['symbol']}</InsuredCardSymbol>" if row.get("symbol") else ""
    branch = (
        f"<InsuredBranchNumber>{row['branch']}</InsuredBranchNumber>" if row.get("branch") else ""
    )
    insurer = row["insurer_number"].rjust(8, "0")
    return (
        f'<?xml version="1.0" encoding="{encoding}"?>\n'
        "<XmlMsg><MessageHeader>"
        "<QualificationConfirmationDate>20260601</QualificationConfirmationDate>"
        f"<MedicalInstitutionCode>{facility_code}</MedicalInstitutionCode>"
        "<ArbitraryFileIdentifier>req-0001</ArbitraryFileIdentifier>"
        "</MessageHeader><MessageBody><QualificationConfirmSearchInfo>"
        f"<InsurerNumber>{insurer}</InsurerNumber>{symbol}"
        f"<InsuredIdentificationNumber>{row['number']}</InsuredIdentificationNumber>{branch}"
        f"<Birthdate>{row['birthdate'].replace('-', '')}</Birthdate>"
        f"<LimitApplicationCertificateRelatedConsFlg>{limit}</LimitApplicationCertificateRelatedConsFlg>"
        "</QualificationConfirmSearchInfo></MessageBody></XmlMsg>"
    )


def kanji_row(population) -> dict[str, Any]:
    """A number_valid row whose 記号 holds kanji, so the encoding really matters."""
    rows = [
        r for r in population.rows("number_valid") if r.get("symbol") and not r["symbol"].isascii()
    ]
    return rows[0] if rows else population.first("number_valid")


@pytest.mark.parametrize(
    ("encoding", "codec", "content_type", "identifier"),
    [
        ("UTF-8", "utf-8", "application/xml; charset=UTF-8", "0"),
        ("Shift_JIS", "cp932", "application/xml; charset=Shift_JIS", "1"),
        ("Shift_JIS", "cp932", "application/xml", "1"),  # from the XML declaration only
        ("UTF-8", "utf-8", "text/xml", "0"),
    ],
)
def test_xml_query_answers_in_the_same_encoding(
    client, headers, facility, population, encoding, codec, content_type, identifier
) -> None:
    row = kanji_row(population)
    payload = xml_request(row, facility["code"], encoding).encode(codec)
    r = client.post(
        "/v1/eligibility/xml",
        headers={**headers, "Content-Type": content_type},
        content=payload,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == f"application/xml; charset={encoding}"
    raw = r.content
    assert raw.startswith(f'<?xml version="1.0" encoding="{encoding}"?>'.encode())
    root = parse_answer(raw)
    assert root.findtext("MessageHeader/CharacterCodeIdentifier") == identifier
    assert root.findtext("MessageHeader/ArbitraryFileIdentifier") == "req-0001"
    assert root.findtext("MessageHeader/SegmentOfResult") == "1"
    assert root.findtext("MessageBody/QualificationValidity") == "1"
    result = root.find("MessageBody/ResultList/ResultOfQualificationConfirmation")
    assert result is not None
    assert result.findtext("Name") == row["name"]
    # The name really is in the declared encoding on the wire.
    assert row["name"].encode(codec) in raw


def test_xml_limit_flag_and_not_found(client, headers, facility, population) -> None:
    row = population.first("with_limit_class")
    raw = client.post(
        "/v1/eligibility/xml",
        headers={**headers, "Content-Type": "application/xml"},
        content=xml_request(row, facility["code"], "UTF-8", limit="1").encode(),
    ).content
    root = parse_answer(raw)
    flag = root.findtext(
        "MessageBody/ResultList/ResultOfQualificationConfirmation/"
        "LimitApplicationCertificateRelatedInfo/LimitApplicationCertificateClassificationFlag"
    )
    assert flag == row["limit_class"]
    unknown = population.first("number_unknown")
    raw = client.post(
        "/v1/eligibility/xml",
        headers=headers,
        content=xml_request(unknown, facility["code"], "Shift_JIS").encode("cp932"),
    ).content
    assert parse_answer(raw).findtext("MessageBody/QualificationValidity") == "4"


def test_xml_for_another_facility_is_403(client, headers, population) -> None:
    payload = xml_request(population.first("number_valid"), "9999999999", "UTF-8").encode()
    r = client.post("/v1/eligibility/xml", headers=headers, content=payload)
    assert r.status_code == 403
    assert r.json()["field"] == "MessageHeader.MedicalInstitutionCode"


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"", 400),
        (b"not xml at all", 400),
        (b"<XmlMsg><MessageHeader>", 400),
        (b"<Other/>", 400),
        (b"<XmlMsg/>", 400),
        (b'<?xml version="1.0" encoding="EUC-JP"?><XmlMsg/>', 415),
        (b'<?xml version="1.0" encoding="UTF-8"?><XmlMsg>\xff\xfe</XmlMsg>', 400),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><XmlMsg>&a;</XmlMsg>',
            400,
        ),
    ],
)
def test_bad_xml_is_4xx_with_a_clear_message(client, headers, payload: bytes, status: int) -> None:
    r = client.post("/v1/eligibility/xml", headers=headers, content=payload)
    assert r.status_code == status, r.text
    assert r.json()["detail"]


def test_xml_with_a_bad_field_names_it(client, headers, facility, population) -> None:
    row = dict(population.first("number_valid"), birthdate="2026-13-45")
    payload = xml_request(row, facility["code"], "UTF-8").encode()
    r = client.post("/v1/eligibility/xml", headers=headers, content=payload)
    assert r.status_code == 422
    assert r.json()["field"] == "MessageBody.QualificationConfirmSearchInfo.Birthdate"


def test_xml_multiple_hits_repeat_the_result_element(client, headers, facility, population) -> None:
    row = population.first("number_multiple")
    raw = client.post(
        "/v1/eligibility/xml",
        headers=headers,
        content=xml_request(row, facility["code"], "UTF-8").encode(),
    ).content
    root = parse_answer(raw)
    assert root.findtext("MessageBody/QualificationValidity") == "5"
    results = root.findall("MessageBody/ResultList/ResultOfQualificationConfirmation")
    assert len(results) >= row["expected_matches"]


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        # Values are taken as written: the contract's patterns apply to them as in JSON.
        ("<Birthdate>", "<Birthdate> ", "Birthdate"),
        ("20260601</Qualification", "20260631</Qualification", "QualificationConfirmationDate"),
        # A leaf is one text element: repeated or nested is not a value.
        ("<Birthdate>", "<Birthdate>19000101</Birthdate><Birthdate>", "Birthdate"),
        ("<InsuredIdentificationNumber>", "<InsuredIdentificationNumber><x/>", "Identification"),
        ("<MedicalInstitutionCode>", "<MedicalInstitutionCode> ", "MedicalInstitutionCode"),
    ],
)
def test_xml_leaves_follow_the_contract(
    client, headers, facility, population, old: str, new: str, field: str
) -> None:
    payload = xml_request(population.first("number_valid"), facility["code"], "UTF-8")
    assert old in payload
    r = client.post(
        "/v1/eligibility/xml",
        headers={**headers, "Content-Type": "application/xml"},
        content=payload.replace(old, new, 1).encode(),
    )
    assert r.status_code == 422, r.text
    assert field in r.json()["field"]


def test_an_empty_optional_leaf_is_an_empty_value(client, headers, facility, population) -> None:
    """``<InsuredCardSymbol></InsuredCardSymbol>`` is the string "" (maxLength 40: valid)."""
    row = population.first("number_valid")
    payload = xml_request({**row, "symbol": None}, facility["code"], "UTF-8")
    payload = payload.replace(
        "<InsuredIdentificationNumber>", "<InsuredCardSymbol/><InsuredIdentificationNumber>"
    )
    r = client.post(
        "/v1/eligibility/xml",
        headers={**headers, "Content-Type": "application/xml"},
        content=payload.encode(),
    )
    assert r.status_code == 200, r.text
