"""Admission and overload: the sans-I/O decisions with a mock clock, then the real server.

The real-server tests block on answers and on the server's own counters, never on how fast
this machine is: a stalled body is answered 408 whenever the watchdog gets to it, a held request
stays held until the test releases it, and the one test that needs time to pass between two
events sleeps to make *at least* that much pass (a lower bound never flakes).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from onshi.backend.overload import (
    ARRIVED_SCOPE_KEY,
    Admission,
    ConcurrencyLimiter,
    Limits,
    ReadClock,
    ReadPhase,
    Shed,
    Wait,
    credential_key,
    kernel_arrival,
)
from onshi.backend.server import (
    RunningServer,
    WorkerGuard,
    WorkerLoop,
    start_server,
    worker_loop,
)

HERE = Path(__file__).resolve().parent
ADMIN = "overload-admin-token"
FACILITY_A = [(b"x-facility-code", b"1310000001"), (b"authorization", b"Bearer secret-a")]
FACILITY_B = [(b"x-facility-code", b"1310000002"), (b"authorization", b"Bearer secret-b")]
FORGED_A = [(b"x-facility-code", b"1310000001"), (b"authorization", b"Bearer guessed")]

# -- admission at dispatch (sans-I/O) ----------------------------------------------------------


def test_admission_dispatches_within_the_budget_and_sheds_old_requests() -> None:
    adm = Admission(Limits(queue_timeout_s=0.5))
    assert adm.decide(now=100.0, arrived=99.6) is None
    assert adm.decide(now=100.0, arrived=99.4) is Shed.QUEUE_AGE
    assert adm.counts["dispatched"] == 1 and adm.counts["shed_queue_age"] == 1
    assert adm.unstarted == adm.active == 1


def test_admission_predicts_the_wait_in_the_loop() -> None:
    adm = Admission(Limits(queue_timeout_s=1.2))
    adm.cost_s = 0.001  # the loop time a request has been taking
    adm.unstarted = 119  # 0.119 s ahead: within the loop's tenth of the budget
    assert adm.decide(now=10.0, arrived=10.0) is None
    adm.unstarted = 121  # 0.121 s ahead: beyond its share
    assert adm.decide(now=10.0, arrived=10.0) is Shed.LOOP_FULL
    adm.unstarted = 100  # 0.1 s ahead, and it already waited 1.15 s: it would be late
    assert adm.decide(now=10.0, arrived=8.85) is Shed.QUEUE_AGE


def test_a_full_loop_parks_requests_fifo_within_the_budget() -> None:
    """Beyond the loop's share a request waits, complete, in the protocol's FIFO (no task, no
    read of its connection's next request) while the work ahead fits three quarters of the
    budget; it is refused only beyond that, and shed when it leaves the FIFO too old."""
    adm = Admission(Limits(queue_timeout_s=1.0))
    adm.cost_s = 0.001
    adm.unstarted = 200  # 0.2 s ahead: the loop is full
    assert adm.decide(now=10.0, arrived=10.0, may_wait=True) is Wait.WAIT
    assert adm.waiting == 1 and adm.counts["waited"] == 1
    adm.waiting = 549  # 0.2 + 0.549 + 0.001 s ahead: the last that fits
    assert adm.decide(now=10.0, arrived=10.0, may_wait=True) is Wait.WAIT
    assert adm.decide(now=10.0, arrived=10.0, may_wait=True) is Shed.LOOP_FULL
    adm.waiting = 10  # a fresh connection's request, read 0.4 s after it arrived, fits
    assert adm.decide(now=10.0, arrived=9.6, may_wait=True) is Wait.WAIT
    adm.unstarted = 0  # the loop drained: a FIFO head that waited 0.5 s is dispatched,
    assert adm.has_room()
    assert adm.resume(now=10.5, arrived=10.0) is None and adm.unstarted == 1
    assert adm.resume(now=11.2, arrived=10.0) is Shed.QUEUE_AGE  # one that waited 1.2 s not
    assert adm.resume(now=11.2, arrived=10.0, gone=True) is None and adm.waiting == 8
    adm = Admission(Limits(max_waiting=2))
    adm.cost_s, adm.unstarted, adm.waiting = 0.001, 900, 2
    assert adm.decide(now=1.0, arrived=1.0, may_wait=True) is Shed.QUEUE_FULL


def test_served_latency_quantiles_count_answers_below_500() -> None:
    adm = Admission(Limits())
    assert adm.served_ms(0.99) is None
    for i in range(99):
        adm.answered(200, 0.005 + i * 0.001)  # 5..103 ms
    adm.answered(404, 0.95)  # an answer, served late
    adm.answered(503, 9.0)  # refused by the limiter: not served
    adm.answered(0, 0.001)  # no answer started (client left)
    assert sum(adm.served_hist) == 100
    assert adm.served_ms(0.5) == 60.0 and adm.served_ms(0.99) == 110.0
    assert adm.served_ms(1.0) == 960.0


def test_admission_learns_the_loop_time_of_a_request() -> None:
    adm = Admission(Limits())
    for _ in range(200):
        adm.unstarted += 1
        adm.active += 1
        adm.started(sojourn_s=0.2)
        adm.finished(busy_s=0.002)
    assert adm.cost_s == pytest.approx(0.002, rel=0.01)
    assert adm.counts["peak_loop_wait_ms"] == 200 and adm.unstarted == adm.active == 0


def test_a_timed_request_counts_its_steps_not_its_awaits() -> None:
    adm = Admission(Limits())
    seen: list[tuple[int, int]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((adm.unstarted, adm.active))
        await asyncio.sleep(0.05)  # awaiting costs the loop nothing

    assert adm.decide(now=1.0, arrived=1.0) is None
    asyncio.run(adm.timed(app, time.perf_counter())({}, None, None))
    assert seen == [(0, 1)] and (adm.unstarted, adm.active) == (0, 0)
    assert 0 < adm.cost_s < 0.05 * 0.05  # one EWMA step of a sample well under the await


def test_admission_bounds_pending_requests_and_connections() -> None:
    adm = Admission(Limits(max_pending=3))
    assert [adm.decide(now=1.0, arrived=1.0) for _ in range(4)] == [None] * 3 + [Shed.QUEUE_FULL]
    adm.finished(busy_s=0.0)
    assert adm.decide(now=1.0, arrived=1.0) is None
    assert adm.decide(now=1.0, arrived=1.0, over_capacity=True) is Shed.CONNECTIONS
    assert adm.counts["peak_pending"] == 3
    assert adm.counts["shed_queue_full"] == 1 and adm.counts["shed_connections"] == 1


@pytest.mark.parametrize("path", ["/healthz", "/admin/stats", "/admin"])
def test_health_and_admin_are_never_shed(path: str) -> None:
    adm = Admission(Limits(max_pending=1, queue_timeout_s=0.1))
    adm.active = adm.unstarted = 10
    adm.cost_s = 1.0
    assert adm.decide(now=50.0, arrived=0.0, over_capacity=True, path=path) is None


def test_shed_answer_is_a_problem_document_with_retry_after() -> None:
    adm = Admission(Limits(retry_after_s=4, max_pending=7))
    for shed in Shed:
        head, _, body = adm.shed_response(shed).partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = dict(line.split(b": ", 1) for line in lines[1:])
        assert lines[0] == b"HTTP/1.1 503 Service Unavailable"
        assert headers[b"retry-after"] == b"4" and headers[b"x-onshi-overload"] == shed.encode()
        assert headers[b"content-type"] == b"application/problem+json"
        assert int(headers[b"content-length"]) == len(body)
        doc = json.loads(body)
        assert doc["status"] == 503 and doc["type"].endswith("/503") and doc["title"]
        assert (headers.get(b"connection") == b"close") == (shed is Shed.CONNECTIONS)


def test_read_clock_runs_out_per_phase() -> None:
    clock = ReadClock(Limits(header_timeout_s=10.0, body_timeout_s=3.0))
    assert clock.expired(1e9) is None  # not reading: no deadline
    clock.start(ReadPhase.HEADERS, 100.0)
    assert clock.expired(109.99) is None and clock.expired(110.0) is ReadPhase.HEADERS
    clock.start(ReadPhase.BODY, 105.0)
    assert clock.expired(107.9) is None and clock.expired(108.0) is ReadPhase.BODY
    clock.stop()
    assert clock.expired(1e9) is None


class FakeSock:
    """A socket whose TCP_INFO says the last data came `ms` milliseconds ago."""

    def __init__(self, ms: int) -> None:
        self.info = bytes(52) + struct.pack("=I", ms) + bytes(4)

    def getsockopt(self, level: int, name: int, size: int) -> bytes:
        assert (level, name) == (socket.IPPROTO_TCP, socket.TCP_INFO)
        return self.info[:size]


def test_kernel_arrival_reads_tcp_info() -> None:
    assert kernel_arrival(FakeSock(1500), 10.0) == pytest.approx(8.5)
    assert kernel_arrival(None, 10.0) == 10.0  # no socket: the dispatch time itself


def test_kernel_arrival_on_a_real_socket_is_not_in_the_future() -> None:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        client = socket.create_connection(srv.getsockname())
        conn, _ = srv.accept()
        with client, conn:
            client.sendall(b"x")
            assert conn.recv(1) == b"x"
            now = time.monotonic()
            assert now - 5.0 < kernel_arrival(conn, now) <= now


def test_watchdog_checks_every_connection_on_its_clock() -> None:
    now = [0.0]
    guard = WorkerGuard(Limits(header_timeout_s=0.4, body_timeout_s=2.0), clock=lambda: now[0])
    assert guard.tick_s == pytest.approx(0.1)
    seen: list[float] = []

    class Conn:
        def check_read_deadline(self, t: float) -> None:
            seen.append(t)

    class Loop:
        def call_later(self, delay: float, fn: Any, *args: Any) -> Any:
            self.pending = (fn, args)
            return None

    loop = Loop()
    guard.watch(loop, {Conn(), Conn()})  # type: ignore[arg-type]
    now[0] = 7.0
    fn, args = loop.pending
    fn(*args)
    assert seen == [7.0, 7.0] and guard.stats()["connections"] == 2


# -- the per-facility cap (in process) ---------------------------------------------------------


class HeldApp:
    """An ASGI app whose requests wait until `gate` is set."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.entered = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.entered += 1
        await self.gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _call(
    app: Any, headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[bytes, bytes], Any]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/v1/consents", "headers": headers}
    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return sent[0]["status"], dict(sent[0]["headers"]), json.loads(body) if body else None


def test_one_facility_cannot_take_more_than_its_cap() -> None:
    inner = HeldApp()
    limiter = ConcurrencyLimiter(inner, Limits(max_in_flight=10, max_per_facility=2))

    async def scenario() -> None:
        held = [asyncio.create_task(_call(limiter, FACILITY_A)) for _ in range(2)]
        others = [asyncio.create_task(_call(limiter, h)) for h in (FACILITY_B, FORGED_A)]
        while inner.entered < 4:
            await asyncio.sleep(0)
        status, headers, doc = await _call(limiter, FACILITY_A)
        assert status == 429 and headers[b"retry-after"] == b"1"
        assert (
            doc["status"] == 429 and "1310000001" in doc["detail"] and "cap is 2" in doc["detail"]
        )
        assert limiter.per_facility == {
            credential_key(FACILITY_A): 2,
            credential_key(FACILITY_B): 1,
            credential_key(FORGED_A): 1,  # a claimed code without its secret: its own share
        }
        inner.gate.set()
        assert [r[0] for r in await asyncio.gather(*held, *others)] == [200] * 4
        assert limiter.per_facility == {} and limiter.counts["rejected_facility_cap"] == 1

    asyncio.run(scenario())


def test_requests_without_a_credential_are_not_counted_per_facility() -> None:
    assert credential_key([(b"x-facility-code", b"1310000001")]) is None
    assert credential_key([]) is None


def test_limiter_budget_counts_time_before_the_app() -> None:
    limiter = ConcurrencyLimiter(HeldApp(), Limits(queue_timeout_s=0.2))

    async def scenario() -> int:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "path": "/v1/consents",
            "headers": [],
            ARRIVED_SCOPE_KEY: time.monotonic() - 5.0,
        }
        await limiter(scope, None, send)  # type: ignore[arg-type]
        return int(sent[0]["status"])

    assert asyncio.run(scenario()) == 503
    assert limiter.counts["rejected_queue_age"] == 1


# -- the real server ---------------------------------------------------------------------------

_release: asyncio.Event | None = None


def overload_app(db_path: str) -> Any:
    """The API factory of the real-server tests (`test_overload:overload_app`): echo a body,
    hold until released, or block the whole event loop until a file exists."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        global _release
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while (await receive())["type"] != "lifespan.shutdown":
                    await send({"type": "lifespan.startup.complete"})
                await send({"type": "lifespan.shutdown.complete"})
            return
        if _release is None:
            _release = asyncio.Event()
        path = scope["path"]
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = urllib.parse.parse_qs(scope["query_string"].decode())
        if path == "/v1/hold" and "until" in query:  # released by a file, not a request
            while not os.path.exists(query["until"][0]):
                await asyncio.sleep(0.005)
        elif path == "/v1/hold":
            await _release.wait()
        elif path == "/v1/release":
            _release.set()
            _release = asyncio.Event()
        elif path == "/v1/spin":
            # Headers first, then block the loop (as the SQLite handlers do) until a file exists.
            marker = query["until"][0]
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"spinning\n", "more_body": True})
            deadline = time.monotonic() + 60
            while not os.path.exists(marker) and time.monotonic() < deadline:
                time.sleep(0.002)
            await send({"type": "http.response.body", "body": b"done"})
            return
        payload = json.dumps({"bytes": len(body)}).encode()
        headers = [(b"content-type", b"application/json")]
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return app


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    servers: list[RunningServer] = []

    def start(**limits: Any) -> RunningServer:
        pythonpath = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
        srv = start_server(
            "test_overload:overload_app",
            db_path=tmp_path / f"control-{len(servers)}.db",
            admin_token=ADMIN,
            limits=Limits(**limits),
            env={"PYTHONPATH": pythonpath},
        )
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


def _connect(srv: RunningServer) -> socket.socket:
    s = socket.create_connection((srv.host, srv.port), timeout=60)  # a hang guard only
    return s


def _raw(
    path: str,
    *,
    method: str = "GET",
    body: bytes = b"",
    length: int | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
    lines += [k + b": " + v for k, v in headers or []]
    lines.append(b"Content-Length: %d" % (len(body) if length is None else length))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _read_response(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One whole response (by Content-Length, or to EOF), blocking until it is there."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    if "content-length" in headers:
        while len(body) < int(headers["content-length"]):
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    else:
        while chunk := s.recv(65536):
            body += chunk
    return int(lines[0].split()[1]), headers, body


def _request(srv: RunningServer, path: str, **kw: Any) -> tuple[int, dict[str, str], bytes]:
    with _connect(srv) as s:
        s.sendall(_raw(path, **kw))
        return _read_response(s)


def _admission(srv: RunningServer) -> dict[str, Any]:
    auth = [(b"authorization", f"Bearer {ADMIN}".encode())]
    status, _, body = _request(srv, "/admin/stats", headers=auth)
    assert status == 200, body
    return dict(json.loads(body)["worker"]["admission"])


def _wait_in_flight(srv: RunningServer, n: int) -> None:
    """Until the worker's limiter holds `n` requests (held ones cannot leave by themselves)."""
    auth = [(b"authorization", f"Bearer {ADMIN}".encode())]
    while True:
        stats = json.loads(_request(srv, "/admin/stats", headers=auth)[2])
        if stats["worker"]["overload"]["in_flight"] >= n:
            return


def test_a_stalled_body_gets_408_and_the_connection_is_closed(serve: Any) -> None:
    srv = serve(body_timeout_s=0.3)
    with _connect(srv) as s:
        s.sendall(_raw("/v1/echo", method="POST", body=b"ab", length=100))
        status, headers, body = _read_response(s)
        assert status == 408 and headers["connection"] == "close"
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(body)["status"] == 408
        assert s.recv(1) == b""  # closed by the server
    assert _admission(srv)["body_timeouts"] == 1


def test_slow_headers_and_silent_connections_are_closed(serve: Any) -> None:
    srv = serve(header_timeout_s=0.3)
    with _connect(srv) as slow, _connect(srv) as silent:
        slow.sendall(b"POST /v1/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest
        assert slow.recv(1024) == b""  # closed without an answer
        assert silent.recv(1024) == b""
    assert _admission(srv)["header_timeouts"] == 2


def test_stalled_bodies_hold_no_slot_so_other_facilities_are_served(serve: Any) -> None:
    # Before: each stalled body held a concurrency slot, and 4 of them made every request 503.
    srv = serve(max_in_flight=4, max_queue=0, body_timeout_s=60.0)
    stalled = [_connect(srv) for _ in range(8)]
    try:
        for s in stalled:
            s.sendall(_raw("/v1/echo", method="POST", body=b"ab", length=100, headers=FACILITY_A))
        for headers in (FACILITY_B, FACILITY_A):
            status, _, body = _request(srv, "/v1/echo", method="POST", body=b"{}", headers=headers)
            assert status == 200 and json.loads(body) == {"bytes": 2}
        # A stalled body completed late is still served.
        stalled[0].sendall(b"x" * 98)
        status, _, body = _read_response(stalled[0])
        assert status == 200 and json.loads(body) == {"bytes": 100}
    finally:
        for s in stalled:
            s.close()


def test_a_facility_over_its_cap_gets_429_and_others_are_served(serve: Any) -> None:
    srv = serve(max_per_facility=2)
    held = [_connect(srv) for _ in range(2)]
    try:
        for s in held:
            s.sendall(_raw("/v1/hold", headers=FACILITY_A))
        _wait_in_flight(srv, 2)
        status, headers, body = _request(srv, "/v1/echo", method="POST", headers=FACILITY_A)
        doc = json.loads(body)
        assert status == 429 and headers["retry-after"] == "1"
        assert headers["content-type"] == "application/problem+json"
        assert "1310000001" in doc["detail"] and "cap is 2" in doc["detail"]
        for other in (FACILITY_B, FORGED_A):
            assert _request(srv, "/v1/echo", method="POST", headers=other)[0] == 200
        assert _request(srv, "/v1/release", method="POST")[0] == 200
        assert [_read_response(s)[0] for s in held] == [200, 200]
    finally:
        for s in held:
            s.close()


def test_the_worker_sheds_at_dispatch_when_too_many_requests_are_pending(
    serve: Any, tmp_path: Path
) -> None:
    srv = serve(max_pending=2)
    marker = tmp_path / "release"
    held = [_connect(srv) for _ in range(2)]
    try:
        for s in held:
            s.sendall(_raw(f"/v1/hold?until={urllib.parse.quote(str(marker))}"))
        _wait_in_flight(srv, 2)
        status, headers, body = _request(srv, "/v1/echo", method="POST")
        assert status == 503 and headers["x-onshi-overload"] == "queue-full"
        assert headers["retry-after"] == "1" and json.loads(body)["title"]
        assert _request(srv, "/healthz")[0] == 200  # never shed
        assert _admission(srv)["shed_queue_full"] == 1
        marker.touch()
        assert [_read_response(s)[0] for s in held] == [200, 200]
    finally:
        for s in held:
            s.close()


def test_age_counts_from_the_kernel_while_the_loop_is_blocked(serve: Any, tmp_path: Path) -> None:
    """A request that arrives while the event loop is busy waits in the kernel; its age must
    count from there. Before, the stamp was taken when the loop parsed it (age ~0): served."""
    srv = serve(queue_timeout_s=0.1)
    marker = tmp_path / "release"
    with _connect(srv) as spinner, _connect(srv) as late:
        spinner.sendall(_raw(f"/v1/spin?until={urllib.parse.quote(str(marker))}"))
        head = b""
        while b"spinning\n" not in head:  # the loop is now blocked in the handler
            head += spinner.recv(1024)
        late.sendall(_raw("/v1/echo", method="POST"))
        time.sleep(0.3)  # at least 0.3 s pass while the request waits (a lower bound)
        marker.touch()
        status, headers, _ = _read_response(late)
    assert status == 503 and headers["x-onshi-overload"] == "queue-age"
    assert _admission(srv)["shed_queue_age"] == 1


def test_every_queued_connection_is_accepted_in_one_loop_turn() -> None:
    """libuv accepts one connection per loop iteration: at 3x capacity (iterations of ~0.5 s)
    fresh clients waited 10 s in the kernel's accept queue. The worker loop drains it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    made: list[Any] = []

    class Proto(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            made.append(transport)

    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Proto, sock=listener, backlog=64)
        clients = [socket.create_connection(listener.getsockname()) for _ in range(20)]
        try:
            for _ in range(3):  # three loop turns: libuv alone would have accepted three
                await asyncio.sleep(0)
            return len(made)
        finally:
            server.close()
            await server.wait_closed()
            for c in clients:
                c.close()
            for t in made:
                t.close()

    loop = worker_loop()
    try:
        assert isinstance(loop, WorkerLoop)
        assert loop.run_until_complete(scenario()) == 20
    finally:
        loop.close()
        listener.close()


class HeldProto:
    """A protocol whose transport records pause/resume."""

    def __init__(self) -> None:
        self.held = False
        self.reading = True
        self.closing = False
        self.transport = self

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing


def test_held_connections_resume_one_per_finished_request_in_order() -> None:
    guard = WorkerGuard(Limits())
    a, b, c = HeldProto(), HeldProto(), HeldProto()
    for p in (a, b, c):
        guard.hold(p)
    assert not any(p.reading for p in (a, b, c))
    b.closing = True  # a closed connection is skipped, not counted
    guard.admission.unstarted = 5
    guard.admission.active = 2
    guard.admission.finished(0.001)  # the loop is still busy: one out, one in
    assert (a.reading, c.reading) == (True, False)
    guard.admission.finished(0.001)
    assert c.reading and not guard.held
    assert guard.counts["held"] == 3
