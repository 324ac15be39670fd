"""The admin endpoint and the shared control state: guard, resources, and multi-worker reach."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_faults import ADMIN, request, start_probe_server

from onshi.backend.admin import AdminApp, ControlStore, ControlSync
from onshi.backend.faults import FaultConfig, RouteClass
from onshi.backend.server import RunningServer

AUTH = {"Authorization": f"Bearer {ADMIN}"}


# -- ControlStore / ControlSync ----------------------------------------------------------------


def test_control_store_versions_every_change(tmp_path: Path) -> None:
    store = ControlStore(tmp_path / "c.db")
    first = store.read()
    assert first.faults.config.is_empty and not first.outage_mode
    config = FaultConfig.from_dict({"jpki": {"error_rate": 0.5}})
    state = store.set_faults(config, now=123.0)
    assert state.version == first.version + 1
    assert state.faults.config == config and state.faults.applied_at == 123.0
    assert store.set_outage_mode(True).outage_mode
    cleared = store.clear_faults()
    assert cleared.faults.config.is_empty and cleared.outage_mode  # independent settings
    assert cleared.version == first.version + 3
    # A second connection (another worker) sees the same row.
    assert ControlStore(tmp_path / "c.db").read() == cleared


def test_control_sync_rereads_at_most_every_interval_and_only_on_a_new_version(
    tmp_path: Path,
) -> None:
    store = ControlStore(tmp_path / "c.db")
    other = ControlStore(tmp_path / "c.db")  # the worker that takes the admin request
    t = [0.0]
    published: list[dict[str, Any]] = []
    sync = ControlSync(
        store,
        interval_s=0.1,
        publish_s=1.0,
        stats=lambda: published.append({}) or {"n": 1},
        monotonic=lambda: t[0],
    )
    before = sync.current()
    other.set_outage_mode(True)
    t[0] = 0.05
    assert sync.current() is before  # within the interval: cached
    t[0] = 0.11
    assert sync.current().outage_mode
    same = sync.current()
    t[0] = 0.3
    assert sync.current() is same  # version unchanged: no re-read
    t[0] = 1.2
    sync.current()
    assert len(published) == 1
    assert store.worker_stats(since=0.0)


# -- the endpoint ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_probe_server(tmp_path_factory.mktemp("admin"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Basic YWRtaW46YWRtaW4="}, 401),
        ({"Authorization": "Bearer "}, 401),
        ({"Authorization": "Bearer wrong-token"}, 403),
        ({"Authorization": f"Bearer {ADMIN}x"}, 403),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/faults"),
        ("PUT", "/admin/faults"),
        ("DELETE", "/admin/faults"),
        ("PUT", "/admin/outage-mode"),
        ("GET", "/admin/stats"),
    ],
)
def test_admin_needs_the_admin_bearer_token(
    server: RunningServer, headers: dict[str, str], status: int, method: str, path: str
) -> None:
    got, hdrs, body = request(server, path, method=method, body=b"{}", headers=headers)
    assert got == status
    assert json.loads(body)["fix"]
    if status == 401:
        assert hdrs["www-authenticate"].startswith("Bearer")


def test_a_server_without_admin_token_refuses_every_token(tmp_path: Path) -> None:
    with start_probe_server(tmp_path, admin_token=None, env={"ONSHI_ADMIN_TOKEN": ""}) as srv:
        assert request(srv, "/admin/stats", method="GET", headers=AUTH)[0] == 403


def test_faults_resource_get_put_delete(server: RunningServer) -> None:
    config = {"seed": 3, "jpki": {"error_rate": 1.0}}
    status, _, body = request(
        server, "/admin/faults", method="PUT", body=json.dumps(config), headers=AUTH
    )
    assert status == 200
    put = json.loads(body)
    assert FaultConfig.from_dict(put["faults"]) == FaultConfig.from_dict(config)
    got = json.loads(request(server, "/admin/faults", method="GET", headers=AUTH)[2])
    assert got["version"] == put["version"] and got["faults"] == put["faults"]
    assert request(server, "/v1/eligibility/card")[0] == 503  # effective on the next request
    status, _, body = request(server, "/admin/faults", method="DELETE", headers=AUTH)
    assert status == 200 and json.loads(body)["version"] == put["version"] + 1
    assert FaultConfig.from_dict(json.loads(body)["faults"]).is_empty
    assert request(server, "/v1/eligibility/card")[0] == 200


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/admin/faults", b"{not json", 400, "not JSON"),
        ("/admin/faults", b'{"routes": {"kard": {}}}', 422, "routes.kard"),
        ("/admin/faults", b'{"jpki": {"error_rate": -1}}', 422, "jpki.error_rate"),
        ("/admin/outage-mode", b'{"enabled": "yes"}', 422, "true or false"),
        ("/admin/outage-mode", b"[]", 422, "true or false"),
    ],
)
def test_bad_admin_bodies_are_rejected_and_change_nothing(
    server: RunningServer, path: str, body: bytes, status: int, needle: str
) -> None:
    before = json.loads(request(server, "/admin/faults", method="GET", headers=AUTH)[2])
    got, hdrs, answer = request(server, path, method="PUT", body=body, headers=AUTH)
    assert got == status and hdrs["content-type"] == "application/problem+json"
    assert needle in json.loads(answer)["detail"]
    after = json.loads(request(server, "/admin/faults", method="GET", headers=AUTH)[2])
    assert after["version"] == before["version"]


def test_unknown_admin_resource_and_wrong_method(server: RunningServer) -> None:
    assert request(server, "/admin/nothing", method="GET", headers=AUTH)[0] == 404
    status, headers, _ = request(server, "/admin/stats", method="DELETE", headers=AUTH)
    assert status == 405 and headers["allow"] == "GET"


def test_outage_mode_reaches_the_api_handlers(server: RunningServer) -> None:
    def flag() -> bool:
        return bool(json.loads(request(server, "/v1/eligibility/demographics")[2])["outage_mode"])

    assert not flag()
    status, _, body = request(
        server, "/admin/outage-mode", method="PUT", body=b'{"enabled": true}', headers=AUTH
    )
    assert status == 200 and json.loads(body)["outage_mode"] is True
    assert flag()
    assert json.loads(request(server, "/admin/outage-mode", method="GET", headers=AUTH)[2])[
        "outage_mode"
    ]
    request(server, "/admin/outage-mode", method="PUT", body=b'{"enabled": false}', headers=AUTH)
    assert not flag()


def test_stats_count_requests_faults_and_overload(server: RunningServer) -> None:
    request(
        server,
        "/admin/faults",
        method="PUT",
        headers=AUTH,
        body=json.dumps({"routes": {"records": {"error_rate": 1.0}}}),
    )
    for _ in range(3):
        request(server, "/v1/records/medication", method="GET")
    stats = json.loads(request(server, "/admin/stats", method="GET", headers=AUTH)[2])
    worker = stats["worker"]
    assert worker["faults"]["error"] >= 3
    assert worker["requests"]["status_5xx"] >= 3
    assert worker["overload"]["in_flight"] == 0 and worker["overload"]["admitted"] >= 3
    assert stats["total"]["faults"]["error"] >= 3
    request(server, "/admin/faults", method="DELETE", headers=AUTH)


# -- several workers ---------------------------------------------------------------------------


def _burst(srv: RunningServer, path: str, n: int = 16) -> list[tuple[int, dict[str, Any]]]:
    """n requests on n fresh connections at once, so the kernel spreads them over workers."""
    out: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()

    def one() -> None:
        status, _, body = request(srv, path, method="GET")
        with lock:
            out.append((status, json.loads(body) if status == 200 else {}))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_a_run_time_change_reaches_every_worker(tmp_path: Path) -> None:
    with start_probe_server(tmp_path, workers=2) as srv:
        # Both workers answer, with outage mode off.
        pids: set[int] = set()
        deadline = time.monotonic() + 20
        while len(pids) < 2 and time.monotonic() < deadline:
            pids |= {b["pid"] for _, b in _burst(srv, "/healthz")}
        assert len(pids) == 2, "the second worker never answered"

        request(srv, "/admin/outage-mode", method="PUT", body=b'{"enabled": true}', headers=AUTH)
        request(
            srv,
            "/admin/faults",
            method="PUT",
            headers=AUTH,
            body=json.dumps({"jpki": {"error_rate": 1.0, "error_status": 504}}),
        )
        # Each worker re-reads the control row within 100 ms: poll until both show the change
        # (the deadline only guards against a hang).
        seen: dict[int, bool] = {}
        deadline = time.monotonic() + 30
        while seen != {pid: True for pid in pids} and time.monotonic() < deadline:
            for status, body in _burst(srv, "/v1/eligibility/numbers"):
                assert status == 200
                seen[body["pid"]] = body["outage_mode"]
        assert seen == {pid: True for pid in pids}
        # The faults were PUT after the outage mode: a worker may have re-read between the two.
        statuses: set[int] = set()
        deadline = time.monotonic() + 30
        while statuses != {504} and time.monotonic() < deadline:
            statuses = {status for status, _ in _burst(srv, "/v1/eligibility/card", n=32)}
        assert statuses == {504}
        # Each worker publishes its counters (at most once a second); any worker sums them.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(0.5)
            _burst(srv, "/v1/eligibility/card")
            stats = json.loads(request(srv, "/admin/stats", method="GET", headers=AUTH)[2])
            if {int(p) for p in stats["workers"]} == pids:
                break
        assert {int(p) for p in stats["workers"]} == pids
        assert stats["total"]["faults"]["error"] == sum(
            w["faults"].get("error", 0) for w in stats["workers"].values()
        )
        assert stats["control_version"] >= 3
    # Leaving the block sent SIGTERM to the supervisor: it stops both workers before exiting.
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_route_class_names_are_the_config_keys() -> None:
    assert {str(c) for c in RouteClass} == {
        "card",
        "numbers",
        "consent",
        "records",
        "batch",
        "other",
    }


def test_stats_publishing_skips_instead_of_waiting_behind_a_writer(tmp_path: Path) -> None:
    store = ControlStore(tmp_path / "c.db")
    writer = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    executed: list[str] = []
    store._db.set_trace_callback(executed.append)  # what it asked SQLite, not how fast it was
    assert store.publish_stats(1, {"n": 1}, now=0.0) is False
    store._db.set_trace_callback(None)
    insert = next(i for i, sql in enumerate(executed) if sql.startswith("INSERT"))
    timeouts = [int(sql.rsplit("=", 1)[1]) for sql in executed[:insert] if "busy_timeout" in sql]
    assert timeouts and timeouts[-1] <= 50  # it gave up after a few ms rather than waiting
    writer.execute("COMMIT")
    assert store.publish_stats(1, {"n": 1}, now=0.0) is True
    assert store.worker_stats(since=0.0) == {1: {"n": 1}}


def test_an_unusable_database_path_is_a_one_line_error(tmp_path: Path) -> None:
    from onshi.errors import OnshiError

    with pytest.raises(OnshiError, match=r"no-such-dir/c.db: cannot open the control table"):
        ControlStore(tmp_path / "no-such-dir" / "c.db")


# -- property: the admin endpoint never answers 5xx ---------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    method=st.sampled_from(["GET", "PUT", "DELETE", "POST", "PATCH"]),
    path=st.sampled_from(
        [
            "/admin",
            "/admin/",
            "/admin/faults",
            "/admin/faults/",
            "/admin/stats",
            "/admin/outage-mode",
            "/admin/x",
        ]
    ),
    body=st.one_of(
        st.binary(max_size=64),
        st.builds(
            lambda d: json.dumps(d).encode(),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(
                        st.sampled_from(
                            ["enabled", "jpki", "routes", "seed", "error_rate", "card"]
                        ),
                        inner,
                        max_size=3,
                    )
                ),
                max_leaves=8,
            ),
        ),
    ),
    token=st.sampled_from([None, ADMIN, "nope"]),
)
def test_admin_never_answers_5xx(
    tmp_path_factory: pytest.TempPathFactory,
    method: str,
    path: str,
    body: bytes,
    token: str | None,
) -> None:
    db = tmp_path_factory.getbasetemp() / "admin-fuzz.db"
    store = ControlStore(db)

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("admin requests must not reach the API")

    app = AdminApp(inner, control=ControlSync(store), token=ADMIN, stats=dict)
    headers = [] if token is None else [(b"authorization", f"Bearer {token}".encode())]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    asyncio.run(app(scope, receive, send))
    status = sent[0]["status"]
    assert status < 500
    assert status != 200 or token == ADMIN
    doc = json.loads(sent[1]["body"])
    if status >= 400:  # the contract's Problem: type and title were missing on admin answers
        assert {"type", "title", "status", "detail"} <= doc.keys()
        assert doc["status"] == status
    store.close()


def _admin_answer(
    tmp_path: Path, method: str, path: str, token: str | None, body: bytes = b""
) -> tuple[int, dict[bytes, bytes], dict[str, Any]]:
    store = ControlStore(tmp_path / "control.db")

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("admin requests must not reach the API")

    app = AdminApp(inner, control=ControlSync(store), token=ADMIN, stats=dict)
    headers = [] if token is None else [(b"authorization", f"Bearer {token}".encode())]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    asyncio.run(app(scope, receive, send))
    store.close()
    return sent[0]["status"], dict(sent[0]["headers"]), json.loads(sent[1]["body"])


@pytest.mark.parametrize(
    ("method", "path", "token", "body", "status", "title"),
    [
        ("GET", "/admin/faults", None, b"", 401, "Unauthorized"),
        ("GET", "/admin/faults", "nope", b"", 403, "Forbidden"),
        ("GET", "/admin/nothing", ADMIN, b"", 404, "Not found"),
        ("TRACE", "/admin/faults", ADMIN, b"", 405, "Method not allowed"),
        ("PUT", "/admin/faults", ADMIN, b"{", 400, "Malformed JSON"),
        ("PUT", "/admin/faults", ADMIN, b'{"seed": "x"}', 422, "Invalid fault configuration"),
        ("PUT", "/admin/outage-mode", ADMIN, b"{}", 422, "Invalid request field"),
    ],
)
def test_admin_refusals_are_complete_problem_documents(
    tmp_path: Path, method: str, path: str, token: str | None, body: bytes, status: int, title: str
) -> None:
    got, headers, doc = _admin_answer(tmp_path, method, path, token, body)
    assert got == status
    assert headers[b"content-type"] == b"application/problem+json"
    assert doc["type"].endswith(f"/{status}") and doc["title"] == title
    assert doc["status"] == status and doc["detail"] and doc["fix"]
    if status == 405:
        assert headers[b"allow"] == b"GET, PUT, DELETE"


@pytest.mark.parametrize(
    "latency",
    [
        {"kind": "lognormal", "mean_ms": 5, "sigma": 0},
        {"kind": "normal", "mean_ms": 0, "p99_ms": 0},
        {"kind": "normal", "mean_ms": 0, "sigma_ms": 0},
        {"kind": "uniform", "low_ms": 0, "high_ms": 0},
        {"kind": "fixed", "ms": 0},
    ],
)
def test_an_accepted_fault_config_reads_back_from_the_control_row(
    tmp_path: Path, latency: dict[str, Any]
) -> None:
    """A zero spread or mean used to be dropped when stored, so the row no longer parsed and
    every later request failed (schemathesis found it through PUT /admin/faults)."""
    config = FaultConfig.from_dict({"jpki": {"latency": latency}})
    store = ControlStore(tmp_path / "control.db")
    store.set_faults(config)
    assert store.read().faults.config == config
    store.close()


def test_the_control_store_can_be_used_from_another_thread(tmp_path: Path) -> None:
    """Test clients run the app in a portal thread that need not be the one that built it."""
    store = ControlStore(tmp_path / "control.db")
    versions: list[int] = []
    worker = threading.Thread(target=lambda: versions.append(store.set_outage_mode(True).version))
    worker.start()
    worker.join()
    assert versions == [store.version()]
    store.close()
