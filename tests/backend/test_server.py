"""Running the backend: overload protection, loopback rule, logs, graceful stop, the real API."""

from __future__ import annotations

import asyncio
import json
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_faults import ADMIN, request, start_probe_server

from onshi.backend.accesslog import redact_path
from onshi.backend.server import (
    ARRIVED_SCOPE_KEY,
    ConcurrencyLimiter,
    Limits,
    ServerSettings,
    check_host,
    load_app_factory,
    main,
    start_server,
)
from onshi.errors import OnshiError

AUTH = {"Authorization": f"Bearer {ADMIN}"}

# -- overload protection in process ------------------------------------------------------------


def _run_burst(limiter: ConcurrencyLimiter, n: int, gate: asyncio.Event | None = None) -> Any:
    """n concurrent requests through the limiter; returns [(status, headers, t_answer)]."""

    async def scenario() -> list[tuple[int, dict[bytes, bytes], float]]:
        t0 = time.perf_counter()

        async def one() -> tuple[int, dict[bytes, bytes], float]:
            sent: list[dict[str, Any]] = []

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            async def receive() -> dict[str, Any]:
                return {"type": "http.request"}

            scope = {"type": "http", "path": "/v1/eligibility/card", "method": "POST"}
            await limiter(scope, receive, send)
            return sent[0]["status"], dict(sent[0]["headers"]), time.perf_counter() - t0

        return list(await asyncio.gather(*(one() for _ in range(n))))

    return asyncio.run(scenario())


def _slow_app(delay: float) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(delay)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


def test_limiter_admits_queues_and_rejects_beyond_the_queue_at_once() -> None:
    limiter = ConcurrencyLimiter(
        _slow_app(0.2), Limits(max_in_flight=2, max_queue=2, queue_timeout_s=5.0, retry_after_s=3)
    )
    results = _run_burst(limiter, 6)
    ok = [r for r in results if r[0] == 200]
    rejected = [r for r in results if r[0] == 503]
    assert len(ok) == 4 and len(rejected) == 2
    for _, headers, t in rejected:
        assert headers[b"retry-after"] == b"3" and headers[b"x-onshi-overload"] == b"queue-full"
        assert t < 0.1  # answered immediately, not after queueing
    assert sorted(t for _, _, t in ok)[-1] >= 0.4  # the queued two ran after the first two
    assert limiter.stats() == {
        "in_flight": 0,
        "queued": 0,
        "admitted": 4,
        "rejected_queue_full": 2,
        "queued_total": 2,
        "peak_queued": 2,
        "peak_in_flight": 2,
    }


def test_limiter_rejects_requests_that_wait_past_the_queue_budget() -> None:
    limiter = ConcurrencyLimiter(
        _slow_app(0.3), Limits(max_in_flight=1, max_queue=10, queue_timeout_s=0.05)
    )
    results = _run_burst(limiter, 3)
    statuses = sorted(r[0] for r in results)
    assert statuses == [200, 503, 503]
    assert {r[1][b"x-onshi-overload"] for r in results if r[0] == 503} == {b"queue-timeout"}
    assert limiter.in_flight == 0 and not limiter.waiters
    # The slot is free again: a later request is admitted.
    assert _run_burst(limiter, 1)[0][0] == 200


def test_limiter_sheds_requests_that_aged_in_a_saturated_loop() -> None:
    limiter = ConcurrencyLimiter(_slow_app(0.0), Limits(queue_timeout_s=0.2))
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    for age in (0.5, 0.01):
        scope = {"type": "http", "path": "/v1/consents", ARRIVED_SCOPE_KEY: time.monotonic() - age}
        asyncio.run(limiter(scope, receive, send))
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [503, 200]
    assert dict(sent[0]["headers"])[b"x-onshi-overload"] == b"queue-timeout"
    assert limiter.counts["rejected_queue_age"] == 1 and limiter.counts["admitted"] == 1


def test_limiter_passes_slots_on_in_order_without_leaking() -> None:
    limiter = ConcurrencyLimiter(
        _slow_app(0.01), Limits(max_in_flight=3, max_queue=100, queue_timeout_s=5.0)
    )
    results = _run_burst(limiter, 60)
    assert {r[0] for r in results} == {200}
    assert limiter.in_flight == 0 and not limiter.waiters
    assert limiter.counts["peak_in_flight"] == 3


def test_overload_answers_503_with_retry_after_from_a_real_server(tmp_path: Path) -> None:
    limits = Limits(max_in_flight=2, max_queue=1, queue_timeout_s=5.0, retry_after_s=2)
    with start_probe_server(tmp_path, limits=limits) as srv:
        request(
            srv,
            "/admin/faults",
            method="PUT",
            headers=AUTH,
            body=json.dumps({"default": {"latency": {"kind": "fixed", "ms": 1000}}}),
        )
        results: list[tuple[int, dict[str, str], float]] = []
        lock = threading.Lock()

        def one() -> None:
            t0 = time.perf_counter()
            status, headers, _ = request(srv, "/v1/consents")
            with lock:
                results.append((status, headers, time.perf_counter() - t0))

        threads = [threading.Thread(target=one) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        t0 = time.perf_counter()
        assert request(srv, "/healthz", method="GET")[0] == 200  # health is outside the limit
        assert time.perf_counter() - t0 < 0.3
        for t in threads:
            t.join()
        rejected = [r for r in results if r[0] == 503]
        # 2 in flight + 1 queued fit; the rest are refused at once (a slow machine may let a
        # late thread in after the first slot frees, hence ">=").
        assert len(rejected) >= 3 and len(rejected) + sum(r[0] == 200 for r in results) == 8
        assert all(r[1]["retry-after"] == "2" and r[2] < 0.8 for r in rejected)
        stats = json.loads(request(srv, "/admin/stats", method="GET", headers=AUTH)[2])
        assert stats["worker"]["overload"]["rejected_queue_full"] == len(rejected)


# -- start-up rules ----------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_are_accepted(host: str) -> None:
    check_host(host, allow_non_loopback=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.org"])
def test_other_hosts_are_refused_unless_allowed(host: str) -> None:
    with pytest.raises(OnshiError, match="fix:"):
        check_host(host, allow_non_loopback=False)
    if host != "example.org":
        check_host(host, allow_non_loopback=True)


def test_cli_refuses_a_public_host_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(
        ["--app", "test_faults:probe_app", "--db", str(tmp_path / "c.db"), "--host", "0.0.0.0"]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: host 0.0.0.0 is not a loopback address")
    assert err.count("\n") == 1


def test_bad_app_and_bad_faults_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(OnshiError, match="cannot be loaded"):
        load_app_factory("onshi.no_such_module:app")
    with pytest.raises(OnshiError, match="not a callable factory"):
        load_app_factory("onshi.backend.server")
    (tmp_path / "f.yaml").write_text("jpki: {error_rate: 7}\n")
    code = main(
        [
            "--app",
            "onshi.backend.server:worker_app",
            "--db",
            str(tmp_path / "c.db"),
            "--faults",
            str(tmp_path / "f.yaml"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "f.yaml: jpki.error_rate" in err and err.count("\n") == 1


def test_start_server_reports_the_log_when_the_app_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where its work dir would be left
    with pytest.raises(OnshiError, match=r"did not answer /healthz.*cannot be loaded"):
        start_server("onshi.no_such_module:factory", db_path=tmp_path / "c.db", timeout_s=20)
    assert not list(tmp_path.glob("onshi-server-*")), "a failed start leaves its work dir behind"


def test_settings_round_trip() -> None:
    s = ServerSettings("a.b:c", "/tmp/x.db", "tok", Limits(3, 4, 0.5, 9))
    assert ServerSettings.from_json(s.to_json()) == s


# -- logs and shutdown -------------------------------------------------------------------------


def test_redacted_paths() -> None:
    assert redact_path("/v1/eligibility/card") == "/v1/eligibility/card"
    assert redact_path("/v1/batches/20251202000001") == "/v1/batches/{n}"
    assert redact_path("/v1/records/medication") == "/v1/records/medication"
    assert redact_path("/v1/p/" + "A" * 40) == "/v1/p/{n}"


def test_access_log_has_no_personal_data(tmp_path: Path) -> None:
    secret_name = "山田太郎"
    with start_probe_server(tmp_path, log_level="info") as srv:
        body = json.dumps({"InsuredIdentificationNumber": "12345678", "Name": secret_name})
        request(srv, "/v1/eligibility/numbers?Name=yamada&birth=19800101", body=body.encode())
        request(srv, "/v1/batches/20251202000001", method="GET")
        time.sleep(0.1)
        log = srv.log_text()
    assert '"POST /v1/eligibility/numbers" 200' in log and '"GET /v1/batches/{n}" 200' in log
    for needle in (secret_name, "12345678", "yamada", "19800101", "20251202000001"):
        assert needle not in log


def test_sigterm_finishes_requests_in_flight_then_exits(tmp_path: Path) -> None:
    srv = start_probe_server(tmp_path, log_level="info")
    request(
        srv,
        "/admin/faults",
        method="PUT",
        headers=AUTH,
        body=json.dumps({"default": {"latency": {"kind": "fixed", "ms": 800}}}),
    )
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(request(srv, "/v1/consents")[0]))
    thread.start()
    time.sleep(0.3)
    srv.process.send_signal(signal.SIGTERM)
    thread.join(10)
    assert result == [200]
    # uvicorn shuts down gracefully, then re-raises SIGTERM so a supervisor sees why it ended.
    assert srv.process.wait(10) in (0, -signal.SIGTERM)
    log = srv.log_text()
    assert log.index("Shutting down") < log.index("Finished server process")


# -- the real API behind the stack -------------------------------------------------------------


def test_the_real_api_runs_behind_the_stack(tmp_path: Path) -> None:
    # The factory `onshi backend serve` runs (empty database: the answers are the API's own).
    with start_server(
        "onshi.backend.app:server_app", db_path=tmp_path / "api.db", admin_token=ADMIN
    ) as srv:
        status, _, body = request(srv, "/openapi.json", method="GET")
        assert status == 200 and "paths" in json.loads(body)
        # Unauthenticated: the API's own answer comes through the stack.
        assert request(srv, "/v1/eligibility/card", body=b"{}")[0] == 401
        request(
            srv,
            "/admin/faults",
            method="PUT",
            headers=AUTH,
            body=json.dumps({"jpki": {"error_rate": 1.0}}),
        )
        status, headers, _ = request(srv, "/v1/eligibility/card", body=b"{}")
        assert status == 503 and headers["x-onshi-fault"] == "error"
        assert request(srv, "/v1/eligibility/numbers", body=b"{}")[0] == 401
