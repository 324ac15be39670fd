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
from test_faults import (
    ADMIN,
    HOLD_PATH,
    release_held,
    request,
    start_probe_server,
    wait_until_held,
)

from onshi.backend.server import (
    ARRIVED_SCOPE_KEY,
    ConcurrencyLimiter,
    Limits,
    ServerSettings,
    build_stack,
    check_host,
    load_app_factory,
    main,
    start_server,
)
from onshi.errors import OnshiError

AUTH = {"Authorization": f"Bearer {ADMIN}"}

# -- overload protection in process ------------------------------------------------------------
# The app behind the limiter blocks on a gate the test opens, so which requests are in flight,
# queued or refused is decided by the limiter's structure, never by how fast this machine is.


class GatedApp:
    """An API stand-in that holds every request until :attr:`gate` opens; records the order."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.entered: list[int] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.entered.append(scope["n"])
        await self.gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _call(app: Any, n: int = 0, **scope: Any) -> tuple[int, dict[bytes, bytes]]:
    """One request through ``app``; (status, headers) of its answer."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    full = {"type": "http", "path": "/v1/eligibility/card", "method": "POST", "n": n, **scope}
    await app(full, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"])


async def _settle(condition: Any) -> None:
    """Let every task run to its next await (no clock involved) until ``condition()`` holds."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the requests did not reach the expected state")


def test_limiter_admits_queues_and_rejects_beyond_the_queue_at_once() -> None:
    app = GatedApp()
    limiter = ConcurrencyLimiter(
        app, Limits(max_in_flight=2, max_queue=2, queue_timeout_s=60.0, retry_after_s=3)
    )

    async def scenario() -> list[tuple[int, dict[bytes, bytes]]]:
        tasks = [asyncio.create_task(_call(limiter, n)) for n in range(6)]
        await _settle(lambda: limiter.counts["rejected_queue_full"] == 2)
        # Refused while the gate is still shut: answered at once, not after queueing.
        refused = [t.result() for t in tasks if t.done()]
        assert [status for status, _ in refused] == [503, 503]
        assert app.entered == [0, 1] and len(limiter.waiters) == 2
        app.gate.set()
        return list(await asyncio.gather(*tasks))

    results = asyncio.run(scenario())
    assert [status for status, _ in results] == [200, 200, 200, 200, 503, 503]
    for _, headers in results[4:]:
        assert headers[b"retry-after"] == b"3" and headers[b"x-onshi-overload"] == b"queue-full"
    assert app.entered == [0, 1, 2, 3]  # the queued two ran after the first two, in order
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
    app = GatedApp()
    limiter = ConcurrencyLimiter(app, Limits(max_in_flight=1, max_queue=10, queue_timeout_s=0.05))

    async def scenario() -> list[tuple[int, dict[bytes, bytes]]]:
        tasks = [asyncio.create_task(_call(limiter, n)) for n in range(3)]
        # The gate stays shut until both waiters have given up: the budget cannot be raced.
        done, _ = await asyncio.wait(tasks[1:], timeout=60)
        assert len(done) == 2
        app.gate.set()
        return list(await asyncio.gather(*tasks))

    results = asyncio.run(scenario())
    assert [status for status, _ in results] == [200, 503, 503]
    assert {h[b"x-onshi-overload"] for _, h in results[1:]} == {b"queue-timeout"}
    assert limiter.in_flight == 0 and not limiter.waiters
    # The slot is free again: a later request is admitted.
    assert asyncio.run(_call(limiter))[0] == 200


def test_limiter_sheds_requests_that_aged_in_a_saturated_loop() -> None:
    app = GatedApp()
    app.gate.set()
    limiter = ConcurrencyLimiter(app, Limits(queue_timeout_s=60.0))
    # Ages far from the budget on either side: no race with the time this test takes.
    for age in (120.0, 0.0):
        scope = {"path": "/v1/consents", ARRIVED_SCOPE_KEY: time.monotonic() - age}
        asyncio.run(_call(limiter, **scope))
    assert limiter.counts["rejected_queue_age"] == 1 and limiter.counts["admitted"] == 1
    assert len(app.entered) == 1


def test_limiter_passes_slots_on_in_order_without_leaking() -> None:
    app = GatedApp()
    limiter = ConcurrencyLimiter(app, Limits(max_in_flight=3, max_queue=100, queue_timeout_s=60))

    async def scenario() -> list[tuple[int, dict[bytes, bytes]]]:
        tasks = [asyncio.create_task(_call(limiter, n)) for n in range(60)]
        await _settle(lambda: len(limiter.waiters) == 57)
        app.gate.set()
        return list(await asyncio.gather(*tasks))

    results = asyncio.run(scenario())
    assert {status for status, _ in results} == {200}
    assert app.entered == list(range(60))  # FIFO hand-over
    assert limiter.in_flight == 0 and not limiter.waiters
    assert limiter.counts["peak_in_flight"] == 3


def test_health_and_admin_are_outside_the_limit(tmp_path: Path) -> None:
    """With every slot taken and the queue full, /healthz and /admin/stats still answer: a
    request inside the limit would be refused with 503 queue-full at once."""
    app = GatedApp()
    stack = build_stack(
        app,
        db_path=tmp_path / "control.db",
        admin_token=ADMIN,
        limits=Limits(max_in_flight=1, max_queue=1, queue_timeout_s=60.0),
    )

    async def scenario() -> None:
        tasks = [asyncio.create_task(_call(stack, n, path="/v1/consents")) for n in range(2)]
        await _settle(lambda: len(app.entered) == 1)
        assert (await _call(stack, path="/v1/consents"))[0] == 503  # full: refused at once
        health = await _call(stack, method="GET", path="/healthz")
        auth = [(b"authorization", f"Bearer {ADMIN}".encode())]
        stats = await _call(stack, method="GET", path="/admin/stats", headers=auth)
        assert health[0] == 200 and stats[0] == 200
        app.gate.set()
        assert [status for status, _ in await asyncio.gather(*tasks)] == [200, 200]

    asyncio.run(scenario())


def test_overload_answers_503_with_retry_after_from_a_real_server(tmp_path: Path) -> None:
    limits = Limits(max_in_flight=2, max_queue=1, queue_timeout_s=60.0, retry_after_s=2)
    with start_probe_server(tmp_path, limits=limits) as srv:
        results: list[tuple[int, dict[str, str]]] = []
        lock = threading.Lock()

        def one() -> None:
            status, headers, _ = request(srv, HOLD_PATH, timeout=60)
            with lock:
                results.append((status, headers))

        threads = [threading.Thread(target=one) for _ in range(8)]
        for t in threads:
            t.start()
        # Held requests never finish until released: 2 in flight + 1 queued, 5 refused.
        overload = wait_for_stats(srv, lambda o: o["rejected_queue_full"] == 5)
        assert overload["in_flight"] == 2 and overload["queued"] == 1
        assert len(results) == 5  # refused while the others were still held: at once
        assert request(srv, "/healthz", method="GET")[0] == 200  # health is outside the limit
        release_held(srv)
        for t in threads:
            t.join(60)
        statuses = sorted(status for status, _ in results)
        assert statuses == [200] * 3 + [503] * 5
        for status, headers in results:
            if status == 503:
                assert headers["retry-after"] == "2"
                assert headers["x-onshi-overload"] == "queue-full"


def wait_for_stats(srv: Any, done: Any) -> dict[str, Any]:
    """The worker's overload figures once ``done(figures)`` holds (the deadline only guards
    against a hang: held requests cannot finish by themselves)."""
    deadline = time.monotonic() + 30
    overload: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, _, body = request(srv, "/admin/stats", method="GET", headers=AUTH)
        if status == 200:  # an overloaded server may shed this one too: ask again
            overload = json.loads(body)["worker"]["overload"]
            if done(overload):
                break
        time.sleep(0.02)
    return overload


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


def test_access_log_has_no_personal_data(tmp_path: Path) -> None:
    secret_name = "山田太郎"
    with start_probe_server(tmp_path, log_level="info") as srv:
        body = json.dumps({"InsuredIdentificationNumber": "12345678", "Name": secret_name})
        request(srv, "/v1/eligibility/numbers?Name=yamada&birth=19800101", body=body.encode())
        request(srv, "/v1/batches/20251202000001", method="GET")
        log = wait_for_log(srv, '"POST /v1/eligibility/numbers" 200', '"GET /v1/batches/')
    assert '"GET /v1/batches/{masked}" 200' in log
    for needle in (secret_name, "12345678", "yamada", "19800101", "20251202000001"):
        assert needle not in log


def wait_for_log(srv: Any, *needles: str) -> str:
    """The server's log once it holds every needle (the access log may be written in batches
    off the request path); the deadline only guards against a hang."""
    deadline = time.monotonic() + 30
    while True:
        log: str = srv.log_text()
        if all(n in log for n in needles) or time.monotonic() > deadline:
            return log
        time.sleep(0.02)


def test_sigterm_finishes_requests_in_flight_then_exits(tmp_path: Path) -> None:
    srv = start_probe_server(tmp_path, log_level="info")
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(request(srv, HOLD_PATH, timeout=60)[0]))
    thread.start()
    assert wait_until_held(srv)
    srv.process.send_signal(signal.SIGTERM)
    release_held(srv)  # the held request finishes during the graceful shutdown
    thread.join(60)
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
