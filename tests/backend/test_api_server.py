"""The API served for real: uvicorn on a free loopback port in its own process."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from onshi.backend.cli import APP_FACTORY
from onshi.backend.server import RunningServer, start_server


@pytest.fixture(scope="module")
def server(population) -> Iterator[RunningServer]:
    running = start_server(APP_FACTORY, db_path=population.path, timeout_s=60)
    try:
        yield running
    finally:
        running.stop()


def test_card_and_number_lookups_over_loopback(server, headers, kit, population) -> None:
    row = population.first("valid_card")
    creds = kit.mint(row)
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as http:
        assert http.get("/openapi.json").json()["openapi"].startswith("3.1")
        challenge = http.post("/v1/challenges").json()["Challenge"]
        answer = http.post(
            "/v1/eligibility/card",
            json={
                "Certificate": kit.cert_b64(creds),
                "Method": "pin",
                "Challenge": challenge,
                "Signature": kit.sign(creds, base64.b64decode(challenge)),
            },
        ).json()
        # The real clock is later than the population's day: the card may be expiring, but
        # it is valid and registered.
        assert answer["MessageHeader"]["SegmentOfResult"] == "1", answer
        assert answer["MessageBody"]["ResultList"][0]["Name"] == row["holder"]["name"]
        unauthorized = http.post("/v1/challenges", headers={"Authorization": "Bearer nope"})
        assert unauthorized.status_code == 401
        bad = http.post(
            "/v1/eligibility/numbers", content=b"{", headers={"Content-Type": "application/json"}
        )
        assert bad.status_code == 400
    log = server.log_text()
    assert row["holder"]["name"] not in log
    assert headers["Authorization"].split()[1] not in log


def test_batch_is_processed_by_the_background_worker(server, headers, population) -> None:
    import time
    import uuid

    row = population.first("number_valid")
    item = {
        "InsurerNumber": row["insurer_number"],
        "InsuredIdentificationNumber": row["number"],
        "Birthdate": row["birthdate"].replace("-", ""),
    }
    if row.get("symbol"):
        item["InsuredCardSymbol"] = row["symbol"]
    if row.get("branch"):
        item["InsuredBranchNumber"] = row["branch"]
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as http:
        r = http.post(
            "/v1/batches", json={"Items": [item]}, headers={"Idempotency-Key": str(uuid.uuid4())}
        )
        assert r.status_code == 202, r.text
        number = r.json()["MessageHeader"]["ReceptionNumber"]
        deadline = time.monotonic() + 60  # guards against a hang only
        while time.monotonic() < deadline:
            # Read the row the worker writes, not GET (GET would also process a due batch).
            from onshi.backend.store import Store

            with Store.open(population.path) as store:
                if store.batch(number).status == "done":
                    break
            time.sleep(0.2)
        else:
            pytest.fail("the background worker did not finish the batch within 60 s")
        done = http.get(f"/v1/batches/{number}").json()
        assert done["MessageHeader"]["SegmentOfResult"] == "1"
        assert done["MessageBody"]["ResultList"][0]["QualificationValidity"] == "1"
