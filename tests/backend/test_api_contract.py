"""Direct tests of where the contract and the server used to disagree (issue 6, item 5).

Each case names a request, asks the contract (its JSON Schema, through ``jsonschema``) whether
the request is valid, and checks that the server answers accordingly: valid requests get an
answer (not 4xx for their shape), invalid ones get 4xx. The full property-based run is
``test_schemathesis.py``; these keep each defect that run found pinned by name.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import jsonschema
import pytest
from backend_queries import number_query
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from onshi.backend.auth import PATIENT_REFERENCE
from onshi.backend.contract import openapi_document
from onshi.backend.queries import BASE64, DATE8, INSURER_NUMBER

_URI = "urn:onshi:contract"


def contract_validator(name: str) -> jsonschema.Draft202012Validator:
    """A validator for one of the contract's component schemas (refs resolved in the document)."""
    registry = Registry().with_resource(
        _URI, Resource.from_contents(openapi_document(), default_specification=DRAFT202012)
    )
    return jsonschema.Draft202012Validator(
        {"$ref": f"{_URI}#/components/schemas/{name}"},
        registry=registry,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


def test_the_parsers_use_the_contracts_patterns() -> None:
    schemas = openapi_document()["components"]["schemas"]
    assert schemas["Date8"]["pattern"] == DATE8.pattern
    assert schemas["Base64"]["pattern"] == BASE64.pattern
    assert schemas["PatientReference"]["pattern"] == PATIENT_REFERENCE.pattern
    insurer = schemas["NumberSearchInfo"]["properties"]["InsurerNumber"]["pattern"]
    assert insurer == INSURER_NUMBER.pattern


@pytest.mark.parametrize(
    "birthdate",
    [
        "00000000",  # the example: matched ^[0-9]{8}$ and got 422
        "19591301",
        "20230229",
        "21000229",  # 2100 is not a leap year
        "09991231",
        "1990122",
        "１９９０１２２１",  # full-width digits
        "19901221",
        "20240229",
        "20000229",
        "10000101",
        "99991231",
    ],
)
def test_birthdate_valid_in_the_contract_iff_the_server_accepts_it(
    client, headers, population: Any, birthdate: str
) -> None:
    query = {**number_query(population.first("number_valid")), "Birthdate": birthdate}
    valid = contract_validator("NumberQuery").is_valid(query)
    r = client.post("/v1/eligibility/numbers", headers=headers, json=query)
    assert r.status_code == (200 if valid else 422), (birthdate, r.text)
    if not valid:
        assert r.json()["field"] == "Birthdate"


def test_date8_is_exactly_the_calendar() -> None:
    """The contract's pattern and the parser agree on every day of a leap cycle and its
    neighbours (and on the century rules)."""
    day = dt.date(1999, 12, 1)
    while day < dt.date(2005, 3, 1):
        assert DATE8.fullmatch(day.strftime("%Y%m%d")), day
        day += dt.timedelta(days=1)
    for text in ("19990229", "20010229", "19000229", "20000230", "20000431", "20001301"):
        assert DATE8.fullmatch(text) is None, text
    assert DATE8.fullmatch("16000229") and DATE8.fullmatch("24000229")


@pytest.mark.parametrize(
    ("certificate", "status", "code"),
    [
        ("", 422, None),  # the example: matched the contract and got 422; no longer valid
        ("***", 422, None),
        (base64.b64encode(b"not a certificate").decode(), 200, "ONSE200"),
        ("AAAAA", 200, "ONSE200"),  # the contract's shape, but it does not decode
    ],
)
def test_certificate_valid_in_the_contract_iff_the_server_answers(
    client, headers, certificate: str, status: int, code: str | None
) -> None:
    body = {"Certificate": certificate, "Method": "visual", "VisualCheck": {"OperatorId": "s"}}
    assert contract_validator("CardQuery").is_valid(body) == (status == 200)
    r = client.post("/v1/eligibility/card", headers=headers, json=body)
    assert r.status_code == status, r.text
    if code is not None:
        assert r.json()["MessageHeader"]["ErrorCode"] == code
    else:
        assert r.json()["field"] == "Certificate"


def test_card_fields_per_method_are_in_the_contract(client, headers) -> None:
    """pin needs Challenge and Signature: the contract says so now (it used to accept the body
    that the server refused)."""
    body = {"Certificate": "AAAA", "Method": "pin"}
    assert not contract_validator("CardQuery").is_valid(body)
    r = client.post("/v1/eligibility/card", headers=headers, json=body)
    assert r.status_code == 422 and r.json()["field"] == "Challenge"


def test_the_xml_contract_is_an_xmlmsg_not_any_string(client, headers, facility) -> None:
    """``<data></data>`` matched the old request schema (``type: string``) and got 400."""
    op = openapi_document()["paths"]["/v1/eligibility/xml"]["post"]
    schema = op["requestBody"]["content"]["application/xml"]["schema"]
    assert schema == {"$ref": "#/components/schemas/XmlQuery"}
    xml_query = openapi_document()["components"]["schemas"]["XmlQuery"]
    assert xml_query["xml"] == {"name": "XmlMsg"}
    assert not contract_validator("XmlQuery").is_valid("")  # what <data></data> was
    r = client.post(
        "/v1/eligibility/xml",
        headers={**headers, "Content-Type": "application/xml"},
        content=b"<data></data>",
    )
    assert r.status_code == 400


@pytest.mark.parametrize("method", ["TRACE", "PATCH", "PURGE", "CONNECT"])
def test_every_path_answers_an_unknown_method_405_with_allow(stacked_client, method: str) -> None:
    doc = openapi_document()
    for path, ops in doc["paths"].items():
        concrete = path.replace("{kind}", "checkup").replace("{reception_number}", "1")
        r = stacked_client.request(method, concrete)
        if path.startswith("/admin"):
            assert r.status_code == 401, (method, path)  # the admin guard comes first
            continue
        assert r.status_code == 405, (method, path, r.status_code)
        assert set(r.headers["allow"].split(", ")) == {m.upper() for m in ops}, path
        problem = r.json()
        assert {"type", "title", "status", "detail"} <= problem.keys()


def test_trace_on_healthz_is_405(stacked_client) -> None:
    """The served stack answers /healthz itself; TRACE used to get 200."""
    r = stacked_client.request("TRACE", "/healthz")
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    assert r.json()["title"] == "Method not allowed"
    assert stacked_client.get("/healthz").status_code == 200
