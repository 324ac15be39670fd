"""一括照会: submission, 処理中, download by 受付番号, idempotency, foreign facility."""

from __future__ import annotations

import uuid
from typing import Any

from backend_queries import number_query as item

from onshi.backend.batch import PROCESSING_DELAY_S, BatchWorker


def submit(client, headers, items: list[dict[str, Any]], key: str):
    return client.post(
        "/v1/batches", headers={**headers, "Idempotency-Key": key}, json={"Items": items}
    )


def test_batch_lifecycle(client, headers, population, clock) -> None:
    rows = [population.first(k) for k in ("number_valid", "number_invalid", "number_unknown")]
    key = str(uuid.uuid4())
    r = submit(client, headers, [item(r) for r in rows], key)
    assert r.status_code == 202, r.text
    header = r.json()["MessageHeader"]
    assert header["SegmentOfResult"] == "2"
    number = header["ReceptionNumber"]
    assert r.headers["Location"] == f"/v1/batches/{number}"
    pending = client.get(f"/v1/batches/{number}", headers=headers).json()
    assert pending["MessageHeader"]["SegmentOfResult"] == "2"
    assert "MessageBody" not in pending
    clock.advance(PROCESSING_DELAY_S + 0.1)
    done = client.get(f"/v1/batches/{number}", headers=headers).json()
    assert done["MessageHeader"]["SegmentOfResult"] == "1"
    assert done["MessageHeader"]["NumberOfProcessingResult"] == 3
    assert done["MessageHeader"]["NumberOfNormalProcessing"] == 3
    validity = [x["QualificationValidity"] for x in done["MessageBody"]["ResultList"]]
    assert validity == ["1", "2", "4"]
    # A retry with the same key answers the same batch and creates nothing new.
    retry = submit(client, headers, [item(r) for r in rows], key)
    assert retry.status_code == 200
    assert retry.json()["MessageHeader"]["ReceptionNumber"] == number


def test_background_worker_finishes_due_batches(client, headers, population, clock) -> None:
    r = submit(client, headers, [item(population.first("number_valid"))], str(uuid.uuid4()))
    number = r.json()["MessageHeader"]["ReceptionNumber"]
    worker = BatchWorker(client.app.state.eligibility, clock)
    clock.advance(PROCESSING_DELAY_S + 0.1)
    assert worker.run_once() >= 1
    store = client.app.state.store
    assert store.batch(number).status == "done"


def test_same_key_other_items_is_409(client, headers, population) -> None:
    key = str(uuid.uuid4())
    assert submit(client, headers, [item(population.first("number_valid"))], key).status_code == 202
    clash = submit(client, headers, [item(population.first("number_invalid"))], key)
    assert clash.status_code == 409


def test_batch_of_another_facility_is_403_and_unknown_is_404(
    client, headers, population, other_facility, kit
) -> None:
    r = submit(client, headers, [item(population.first("number_valid"))], str(uuid.uuid4()))
    number = r.json()["MessageHeader"]["ReceptionNumber"]
    other = client.get(f"/v1/batches/{number}", headers=kit.auth_headers(other_facility))
    assert other.status_code == 403
    assert client.get("/v1/batches/99999999", headers=headers).status_code == 404
    assert client.get("/v1/batches/not-a-number", headers=headers).status_code == 404


def test_bad_batch_items_name_the_item(client, headers, population) -> None:
    good = item(population.first("number_valid"))
    bad = {**good, "Birthdate": "2020"}
    r = submit(client, headers, [good, bad], str(uuid.uuid4()))
    assert r.status_code == 422
    assert r.json()["field"] == "Items[1].Birthdate"
    assert submit(client, headers, [], str(uuid.uuid4())).status_code == 422
