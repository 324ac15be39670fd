"""一括照会 (batch eligibility inquiry): accept now, answer later by 受付番号 (ReceptionNumber).

Real facilities submit the next day's reservations in the evening (OQSmuquc01req) and download
the results later by 受付番号 (OQSmuquc02req); the answer is SegmentOfResult 2 (処理中) until the
results are ready (onshi_system_facts.md §1.2, §6). Here a batch is stored at once (durable,
idempotent by key), processed by a background task in every worker (``BatchWorker``) or on the
first download after ``PROCESSING_DELAY_S``, whichever comes first; both paths end in
``Store.finish_batch``, which is a no-op for a batch already finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from onshi.backend.answers import envelope
from onshi.backend.auth import ApiProblem
from onshi.backend.codes import ProcessingResultStatus, ReferenceClassification, SegmentOfResult
from onshi.backend.eligibility import Eligibility
from onshi.backend.queries import NumberQuery, require_object

log = logging.getLogger("onshi.backend.batch")

MAX_ITEMS = 1000
"""Items per batch (ours; the real limit is not public)."""
PROCESSING_DELAY_S = 1.0
"""A batch is never answered sooner than this after submission: clients must poll."""
POLL_S = 0.25


def parse_items(doc: Any) -> list[dict[str, Any]]:
    """Validate ``{"Items": [number query, ...]}``; return the items in their echo form."""
    doc = require_object(doc)
    items = doc.get("Items")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
        raise ApiProblem(
            422,
            "Invalid batch",
            f"Items must be a list of 1..{MAX_ITEMS} number queries",
            field="Items",
            fix="send {'Items': [{InsurerNumber, InsuredIdentificationNumber, Birthdate, ...}]}",
        )
    parsed = [NumberQuery.parse(item, prefix=f"Items[{i}].") for i, item in enumerate(items)]
    return [q.echo() for q in parsed]


def due(batch: Any, now: float) -> bool:
    return (
        batch.status == "processing" and now >= batch.submitted_at.timestamp() + PROCESSING_DELAY_S
    )


def process(elig: Eligibility, batch: Any, now: float) -> Any:
    """Answer every item, store the results, return the finished batch."""
    results = []
    for item in batch.items:
        query = NumberQuery.parse(item)
        answer = elig.by_numbers(batch.facility_code, query, now)
        results.append(answer["MessageBody"])
    elig.store.finish_batch(batch.reception_number, results, dt.datetime.fromtimestamp(now, dt.UTC))
    return elig.store.batch(batch.reception_number)


def view(batch: Any, now: float) -> dict[str, Any]:
    """The download answer: 処理中 until done, then the counts and every item's result."""
    done = batch.status == "done"
    doc = envelope(
        facility_code=batch.facility_code,
        now=now,
        reference=ReferenceClassification.NUMBERS,
        segment=SegmentOfResult.NORMAL if done else SegmentOfResult.PROCESSING,
    )
    header = doc["MessageHeader"]
    header["ReceptionNumber"] = batch.reception_number
    header["NumberOfQualificationConfirmation"] = len(batch.items)
    if done:
        results = batch.results or []
        normal = sum(
            1 for r in results if r.get("ProcessingResultStatus") == ProcessingResultStatus.NORMAL
        )
        header["NumberOfProcessingResult"] = len(results)
        header["NumberOfNormalProcessing"] = normal
        header["NumberOfError"] = len(results) - normal
        doc["MessageBody"] = {"ResultList": results}
    doc["Location"] = f"/v1/batches/{batch.reception_number}"
    return doc


class BatchWorker:
    """Background processing of due batches in one worker process (a thread per batch run)."""

    def __init__(self, elig: Eligibility, clock: Callable[[], float]) -> None:
        self.elig = elig
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            try:
                await asyncio.to_thread(self.run_once)
            except Exception as exc:  # keep the loop alive; the next poll retries
                log.error("batch processing failed: %s", type(exc).__name__)

    def run_once(self) -> int:
        """Process every due batch; return how many were finished."""
        now = self.clock()
        finished = 0
        for batch in self.elig.store.pending_batches():
            if due(batch, now):
                process(self.elig, batch, now)
                finished += 1
        return finished
