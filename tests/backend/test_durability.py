"""Acknowledged writes survive kill -9: of a writer process, of the HTTP server, of a seed.

Each test starts its own processes and kills them by PID (the server: the process group its
launcher created), reopens the database and checks that every write acknowledged before the
kill is there and that SQLite's integrity check passes. WAL + synchronous=NORMAL is what makes
this hold (see store.py); these tests would catch a regression to a mode that loses commits.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from onshi.backend.population import card_certificate, ensure_population, populate
from onshi.backend.server import start_server
from onshi.backend.store import Store

ACKS_BEFORE_KILL = 300

_WRITER = r"""
import datetime as dt, sys, time
from onshi.backend.store import Store

path, tag, mode = sys.argv[1], sys.argv[2], sys.argv[3]
store = Store.open(path)
if mode == "uncommitted":  # the negative control: acks for writes that are never committed
    store.connection().execute("BEGIN")
now = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
deadline = time.monotonic() + 30.0  # bounded: stops by itself if nobody kills it
i = 0
while i < 50_000 and time.monotonic() < deadline:
    key = f"{tag}-{i}"
    if i % 3 == 2 and mode == "commit":
        batch, _ = store.create_batch(
            facility_code="1310000001", idempotency_key=key, items=[{"n": i}], now=now
        )
        print("B", key, batch.reception_number, flush=True)
    else:
        consent, _ = store.record_consent(
            facility_code="1310000001", person_id=i + 1, kinds=frozenset({"medication"}),
            idempotency_key=key, now=now,
        )
        print("C", key, consent.id, flush=True)
    i += 1
"""


def _check_acks(path: Path, acks: list[tuple[str, ...]]) -> None:
    with Store.open(path, create=False) as store:
        conn = store.connection()
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        consents = dict(conn.execute("SELECT idempotency_key, id FROM consents").fetchall())
        batches = dict(
            conn.execute("SELECT idempotency_key, reception_number FROM batches").fetchall()
        )
    lost = [
        ack
        for ack in acks
        if (consents if ack[0] == "C" else batches).get(ack[1])
        != (int(ack[2]) if ack[0] == "C" else ack[2])
    ]
    assert lost == [], f"{len(lost)} acknowledged writes lost, e.g. {lost[:3]}"


def _start_writer(path: Path, tag: str, mode: str = "commit") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), tag, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _read_acks(writer: subprocess.Popen[str], acks: list[tuple[str, ...]]) -> None:
    assert writer.stdout is not None
    for line in writer.stdout:  # ends at EOF, after the kill
        parts = tuple(line.split())
        if len(parts) == 3:  # printed after the commit returned: acknowledged
            acks.append(parts)


def test_store_writes_survive_sigkill_of_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "durable.db"
    Store.open(path).close()
    writers = [_start_writer(path, tag) for tag in ("w0", "w1")]
    acks: list[list[tuple[str, ...]]] = [[], []]
    readers = [
        threading.Thread(target=_read_acks, args=(w, a)) for w, a in zip(writers, acks, strict=True)
    ]
    try:
        for r in readers:
            r.start()
        deadline = time.monotonic() + 60
        while min(map(len, acks)) < ACKS_BEFORE_KILL and time.monotonic() < deadline:
            if any(w.poll() is not None for w in writers):
                break
            time.sleep(0.005)
        for w in writers:  # mid-stream, each by its PID
            os.kill(w.pid, signal.SIGKILL)
    finally:
        for w in writers:
            if w.poll() is None:
                os.kill(w.pid, signal.SIGKILL)
        for r in readers:
            r.join(timeout=30)
    for w in writers:
        w.wait(timeout=30)
        assert w.stderr is not None
        assert w.returncode == -signal.SIGKILL, w.stderr.read()[-2000:]
    assert min(map(len, acks)) >= ACKS_BEFORE_KILL
    _check_acks(path, acks[0] + acks[1])


def test_the_check_catches_lost_writes(tmp_path: Path) -> None:
    """Negative control: a writer acknowledging uncommitted writes is caught losing them."""
    path = tmp_path / "lossy.db"
    Store.open(path).close()
    writer = _start_writer(path, "lossy", "uncommitted")
    acks: list[tuple[str, ...]] = []
    assert writer.stdout is not None
    for line in writer.stdout:
        acks.append(tuple(line.split()))
        if len(acks) >= 50:
            break
    os.kill(writer.pid, signal.SIGKILL)
    writer.communicate(timeout=30)
    with pytest.raises(AssertionError, match="acknowledged writes lost"):
        _check_acks(path, acks)


def _has_data(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def test_killed_seed_leaves_no_half_population(tmp_path: Path) -> None:
    """kill -9 during ensure_population: the target never appears half-seeded."""
    path = tmp_path / "seeded.db"
    code = (
        "import sys; from onshi.backend.population import ensure_population; "
        "ensure_population(sys.argv[1], persons=400_000, seed='killed')"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], stderr=subprocess.PIPE)
    staging = path.with_name(path.name + ".seeding")
    deadline = time.monotonic() + 60
    # Kill once the staging database holds data (not after a guessed sleep); 400,000 persons
    # take far longer to seed than that, so the kill lands mid-seed.
    while not _has_data(staging) and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    assert child.poll() is None, "the seed finished before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert not path.exists()
    summary = ensure_population(path, persons=200, seed="after-kill")
    assert summary is not None and summary.persons == 200
    with Store.open(path) as store:
        assert store.stats()["persons"] == 200


# -- through HTTP ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Write:
    """One kind of acknowledged HTTP write: where to POST, what, and the id in the answer."""

    path: str
    body: bytes
    created: int
    ack_id: Callable[[dict[str, Any]], str]


def _post_loop(
    port: int,
    facility: dict[str, str],
    write: _Write,
    tag: str,
    acked: list[tuple[str, str]],
    stop: threading.Event,
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = {
        "X-Facility-Code": facility["code"],
        "Authorization": f"Bearer {facility['secret']}",
        "Content-Type": "application/json",
    }
    for i in range(5000):
        if stop.is_set():
            break
        headers["Idempotency-Key"] = f"{tag}-{i}"
        try:
            conn.request("POST", write.path, body=write.body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            break  # the server is gone
        if resp.status == write.created:
            acked.append((headers["Idempotency-Key"], write.ack_id(json.loads(data))))
        elif resp.status >= 500 or resp.status == 429:
            continue
        else:
            raise AssertionError(f"unexpected {resp.status}: {data[:300]!r}")
    conn.close()


def _find(doc: Any, key: str) -> Any:
    if isinstance(doc, dict):
        if key in doc:
            return doc[key]
        for value in doc.values():
            found = _find(value, key)
            if found is not None:
                return found
    return None


def _patient_reference(port: int, facility: dict[str, str], row: dict[str, Any]) -> str:
    """A visual-check (目視確認) card lookup, which hands out the PatientReference for consent."""
    creds = card_certificate(row)
    cert = base64.b64encode(creds.auth_cert.public_bytes(serialization.Encoding.DER)).decode()
    body = {"Certificate": cert, "Method": "visual", "VisualCheck": {"OperatorId": "staff-01"}}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(
        "POST",
        "/v1/eligibility/card",
        body=json.dumps(body),
        headers={
            "X-Facility-Code": facility["code"],
            "Authorization": f"Bearer {facility['secret']}",
            "Content-Type": "application/json",
        },
    )
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    conn.close()
    ref = _find(doc, "PatientReference")
    assert resp.status == 200 and ref, doc
    return str(ref)


@pytest.mark.parametrize("workers", [1, 2])
def test_http_acknowledged_writes_survive_kill_9_of_the_server(
    tmp_path: Path, workers: int
) -> None:
    """Batches and consents acknowledged by a real server (uvicorn) survive its kill -9."""
    path = tmp_path / "http.db"
    with Store.open(path) as store:
        populate(store, persons=300, facilities=2, seed="durable-http", as_of=dt.date.today())
        fx = store.fixtures()
    facility = fx["facility"][0]
    row = fx["number_valid"][0]
    item = {
        "InsurerNumber": row["insurer_number"],
        "InsuredIdentificationNumber": row["number"],
        "Birthdate": row["birthdate"].replace("-", ""),
    }
    if row["symbol"]:
        item["InsuredCardSymbol"] = row["symbol"]
    server = start_server("onshi.backend.app:server_app", db_path=path, workers=workers)
    acked: dict[str, list[tuple[str, str]]] = {"batch": [], "consent": []}
    stop = threading.Event()
    clients = []
    try:
        reference = _patient_reference(server.port, facility, fx["valid_card"][0])
        writes = {
            "batch": _Write(
                "/v1/batches",
                json.dumps({"Items": [item]}).encode(),
                202,
                lambda doc: str(doc["MessageHeader"]["ReceptionNumber"]),
            ),
            "consent": _Write(
                "/v1/consents",
                json.dumps({"PatientReference": reference, "Kinds": ["medication"]}).encode(),
                201,
                lambda doc: str(doc["ConsentId"]),
            ),
        }
        clients = [
            threading.Thread(
                target=_post_loop,
                args=(server.port, facility, writes[kind], kind, acked[kind], stop),
            )
            for kind in writes
        ]
        for c in clients:
            c.start()
        deadline = time.monotonic() + 30
        while (
            min(map(len, acked.values())) < 100
            and time.monotonic() < deadline
            and all(c.is_alive() for c in clients)
        ):
            time.sleep(0.01)
        server.kill()  # SIGKILL to the server's own process group, mid-stream
    finally:
        stop.set()
        for c in clients:
            c.join(timeout=30)
        if server.process.poll() is None:
            server.kill()
    assert min(map(len, acked.values())) >= 100, server.log_text()[-2000:]
    with Store.open(path, create=False) as store:
        conn = store.connection()
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        batches = dict(conn.execute("SELECT idempotency_key, reception_number FROM batches"))
        consents = dict(conn.execute("SELECT idempotency_key, id FROM consents"))
    lost = [a for a in acked["batch"] if batches.get(a[0]) != a[1]]
    lost += [a for a in acked["consent"] if str(consents.get(a[0])) != a[1]]
    assert lost == [], f"{len(lost)} acknowledged writes lost, e.g. {lost[:3]}"


def test_store_reopens_in_wal_after_a_crash(tmp_path: Path) -> None:
    """A database left by a killed writer (WAL file present) reopens in WAL mode."""
    path = tmp_path / "reopen.db"
    Store.open(path).close()
    w = _start_writer(path, "x")
    assert w.stdout is not None
    for _ in range(20):
        w.stdout.readline()
    os.kill(w.pid, signal.SIGKILL)
    w.communicate(timeout=30)
    with Store.open(path) as store:
        assert store.connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.stats()["consents"] >= 13
