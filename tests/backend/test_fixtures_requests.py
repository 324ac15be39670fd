"""`onshi backend fixtures` prints requests a user can paste: the API's field names and
yyyyMMdd dates, answered 200 by the app (in process, on the shared test population)."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

from onshi.cli import main

DEMOGRAPHICS_PATH = "/v1/eligibility/demographics"
"""Answered only in outage mode: tested on its own below."""


def fixtures_json(population: Any, *kinds: str) -> dict[str, list[dict[str, Any]]]:
    args = ["backend", "fixtures", "--db", str(population.path), "--json"]
    for kind in kinds:
        args += ["--kind", kind]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_every_printed_request_is_answered_200(client, population) -> None:
    printed = fixtures_json(population)
    headers = row_headers(printed)
    sent = 0
    for kind, rows in printed.items():
        for row in rows:
            request = row.get("request")
            if request is None or request["path"] == DEMOGRAPHICS_PATH:
                continue
            answer = client.request(
                request["method"], request["path"], json=request["body"], headers=headers
            )
            assert answer.status_code == 200, (kind, request, answer.text)
            assert answer.json()["MessageHeader"]["SegmentOfResult"] == "1", (kind, answer.text)
            sent += 1
    assert sent >= 10


def row_headers(printed: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """The first facility's headers, as the same command printed them."""
    return printed["facility"][0]["headers"]


def test_the_numbers_request_uses_the_public_names(population) -> None:
    (row, *_) = fixtures_json(population, "number_valid")["number_valid"]
    body = row["request"]["body"]
    assert set(body) >= {"InsurerNumber", "InsuredIdentificationNumber", "Birthdate"}
    assert body["Birthdate"] == row["birthdate"].replace("-", "") and len(body["Birthdate"]) == 8


def test_the_table_prints_the_same_request_body(population) -> None:
    """The human output's example line is the JSON request body, pasteable as is."""
    first = fixtures_json(population, "koki")["koki"][0]["request"]
    args = ["backend", "fixtures", "--db", str(population.path), "--kind", "koki"]
    out = CliRunner().invoke(main, args, catch_exceptions=False).stdout
    line = next(x.strip() for x in out.splitlines() if x.strip().startswith("POST "))
    method, path, body = line.split(" ", 2)
    assert (method, path) == (first["method"], first["path"])
    assert json.loads(body) == first["body"]


def test_demographics_request_is_answered_in_outage_mode(stacked_client, population, kit) -> None:
    printed = fixtures_json(population, "demographics", "facility")
    request = printed["demographics"][0]["request"]
    admin = {"Authorization": f"Bearer {kit.ADMIN_TOKEN}"}
    assert stacked_client.put(
        "/admin/outage-mode", headers=admin, json={"enabled": True}
    ).is_success
    try:
        answer = stacked_client.post(
            request["path"], json=request["body"], headers=row_headers(printed)
        )
        assert answer.status_code == 200, answer.text
    finally:
        stacked_client.put("/admin/outage-mode", headers=admin, json={"enabled": False})
