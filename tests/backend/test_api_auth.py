"""Facility authentication (401/403), the contract document, and no personal data in logs."""

from __future__ import annotations

import logging
import uuid

import pytest
from openapi_spec_validator import validate

from onshi.backend.app import openapi_document

PROTECTED = [
    ("post", "/v1/challenges"),
    ("post", "/v1/eligibility/card"),
    ("post", "/v1/eligibility/numbers"),
    ("post", "/v1/eligibility/xml"),
    ("post", "/v1/eligibility/public-subsidy"),
    ("post", "/v1/eligibility/demographics"),
    ("post", "/v1/consents"),
    ("get", "/v1/records/medication"),
    ("post", "/v1/batches"),
    ("get", "/v1/batches/1"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_no_credential_is_401(client, method: str, path: str) -> None:
    r = client.request(method, path, json={})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["fix"]


@pytest.mark.parametrize(
    "bad",
    [
        {"Authorization": "Bearer wrong-secret"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer "},
        {"X-Facility-Code": "123"},
        {"X-Facility-Code": "0000000000"},
    ],
)
def test_wrong_credential_is_401(client, headers, bad: dict[str, str]) -> None:
    r = client.post("/v1/challenges", headers={**headers, **bad})
    assert r.status_code == 401


def test_valid_credential_passes(client, headers) -> None:
    assert client.post("/v1/challenges", headers=headers).status_code == 201


def test_health_and_contract_need_no_credential(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")


def test_openapi_document_is_valid_and_covers_every_route(client) -> None:
    doc = openapi_document()
    validate(doc)
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    for method, path in PROTECTED:
        template = path.replace("/medication", "/{kind}").replace(
            "/batches/1", "/batches/{reception_number}"
        )
        assert (method, template) in documented
    for admin in [
        ("get", "/admin/faults"),
        ("put", "/admin/faults"),
        ("delete", "/admin/faults"),
        ("put", "/admin/outage-mode"),
    ]:
        assert admin in documented
    # Every code we emit is documented.
    from onshi.backend.codes import ALL_CODES

    for code in ALL_CODES:
        assert code.code in doc["info"]["description"]


def test_unknown_path_and_method_are_problem_documents(client) -> None:
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["status"] == 404
    r = client.get("/v1/eligibility/numbers")
    assert r.status_code == 405


def test_no_pin_my_number_or_full_name_in_logs(
    client, headers, kit, population, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    row = population.first("valid_card")
    kit.card_lookup(client, headers, kit.mint(row))
    ref = kit.card_lookup(client, headers, kit.mint(row), method="visual")["MessageBody"][
        "PatientReference"
    ]
    client.post(
        "/v1/consents",
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
        json={"PatientReference": ref, "Kinds": ["medication"]},
    )
    client.post("/v1/eligibility/numbers", headers=headers, json={"Name": row["holder"]["name"]})
    client.post("/v1/eligibility/numbers", headers=headers, content=b"{broken")
    text = caplog.text
    family, _, given = row["holder"]["name"].partition("\u3000")
    assert row["holder"]["name"] not in text
    assert family + given not in text
    assert headers["Authorization"].split()[1] not in text


def test_create_app_applies_start_up_faults(tmp_path) -> None:
    from starlette.testclient import TestClient

    from onshi.backend.app import create_app
    from onshi.backend.faults import FaultConfig

    faults = FaultConfig.from_dict({"routes": {"card": {"error_rate": 1.0, "error_status": 503}}})
    built: list = []

    async def app(scope, receive, send) -> None:
        if not built:  # the admin layer's SQLite connection belongs to the serving thread
            built.append(create_app(db_path=tmp_path / "faulty.db", faults=faults))
        await built[0](scope, receive, send)

    with TestClient(app) as c:
        assert c.post("/v1/eligibility/card", json={}).status_code == 503
        # Number lookups are not faulted: they reach the API (and its 401).
        assert c.post("/v1/eligibility/numbers", json={}).status_code == 401
