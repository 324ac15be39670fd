"""Faults in the in-process stack (``create_app(faults=...)``) follow the injected clock."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

from backend_queries import number_query as _number_query
from starlette.testclient import TestClient

from onshi.backend.app import create_app
from onshi.backend.faults import FaultConfig
from onshi.pki import JST


def _copy(src: Path, dst: Path) -> Path:
    """A private copy of the session population: faults live in the database's control row,
    which every other test's stack reads too."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()
    return dst


def test_outage_windows_follow_the_injected_clock(
    tmp_path: Path, population: Any, pki: Any, clock: Any, headers: dict[str, str]
) -> None:
    db = _copy(population.path, tmp_path / "faults.db")
    noon = clock.now  # the clock starts at noon JST of the population's day
    start = dt.datetime.fromtimestamp(noon, JST) + dt.timedelta(minutes=30)
    faults = FaultConfig.from_dict(
        {
            "outages": [
                # An absolute window (like the 2025-02-13 line outage) on the virtual day ...
                {"start": start.isoformat(), "duration_s": 600, "effect": "error"},
                # ... and one relative to when the config was applied (at the virtual noon).
                {"after_s": 30, "duration_s": 60, "effect": "error", "classes": ["numbers"]},
            ]
        }
    )
    app = create_app(db_path=db, pki=pki, clock=clock, faults=faults, batch_worker=False)
    q = _number_query(population.first("number_valid"))

    def status() -> int:
        return c.post("/v1/eligibility/numbers", headers=headers, json=q).status_code

    with TestClient(app) as c:
        assert status() == 200  # noon: no window open (the wall clock is irrelevant)
        clock.advance(40)
        assert status() == 503  # inside the relative window
        clock.advance(60)
        assert status() == 200
        clock.now = start.timestamp() + 1
        assert status() == 503  # inside the absolute window
        clock.now = start.timestamp() + 601
        assert status() == 200
