"""Running the reference backend: admission in the HTTP protocol, uvicorn workers, a launcher.

The API app (a factory `module:attr` called as `factory(db_path=...)` in each worker, e.g.
`onshi.backend.app:server_app`) runs inside the middleware stack of `stack.build_stack`.

`AbortableHttpToolsProtocol` is uvicorn's httptools protocol plus what must happen before the
app (see `overload`): it dispatches a request only once its body is complete, sheds it with
503 + Retry-After when the worker is over its limits or the request is older than the queue
budget (measured from the kernel's receipt), enforces the header and body read timeouts, and
installs the abort hook fault injection resets connections with.

`run_server` binds the listening socket itself (a busy port is one `error:` line before
anything is printed or seeded) and runs uvicorn with uvloop on it, one or several worker
processes, a graceful shutdown on SIGTERM (uvicorn's: stop accepting, finish requests in
flight), and only on loopback addresses unless told otherwise (CI rule: nothing listens on a
shared network). `start_server` binds a free loopback port, hands the socket to
`python -m onshi.backend.server` and waits for `/healthz`; tests, load tests and the quickstart
use it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import errno
import http.client
import importlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from onshi.backend.accesslog import log_config
from onshi.backend.admin import ControlStore
from onshi.backend.faults import ABORT_SCOPE_KEY, ASGIApp, FaultConfig
from onshi.backend.overload import (
    ARRIVED_SCOPE_KEY,
    DEFAULT_LIMITS,
    Admission,
    ConcurrencyLimiter,
    Limits,
    ReadClock,
    ReadPhase,
    Shed,
    Wait,
    body_timeout_problem,
    body_too_large_problem,
    kernel_arrival,
    response_bytes,
)
from onshi.backend.stack import Health, build_stack
from onshi.errors import OnshiError

ENV_SERVER = "ONSHI_SERVER"
"""JSON `ServerSettings` handed from `run_server` to each uvicorn worker process."""
ENV_ADMIN_TOKEN = "ONSHI_ADMIN_TOKEN"
PROTOCOL = "onshi.backend.server:AbortableHttpToolsProtocol"

__all__ = [  # Limits, ConcurrencyLimiter and build_stack live in overload / stack
    "ARRIVED_SCOPE_KEY",
    "ConcurrencyLimiter",
    "Health",
    "Limits",
    "RunningServer",
    "bind_socket",
    "build_stack",
    "run_server",
    "start_server",
]


class WorkerGuard:
    """One worker's admission state: the dispatch decision, its counters, and a watchdog that
    enforces the connections' read deadlines.

    One timer for all connections (every quarter of the shorter timeout, at most 1 s) rather
    than a timer per request: a request then costs two float stores, and a timeout fires
    within a quarter of its length late.
    """

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self.admission = Admission(limits)
        self.admission.on_finished = self._finished
        self.counts = self.admission.counts
        self.held: collections.deque[Any] = collections.deque()
        self.parked: collections.deque[tuple[Any, Any, Any, float]] = collections.deque()
        self.connections: set[Any] = set()
        self._timer: asyncio.TimerHandle | None = None
        self.tick_s = min(1.0, max(0.01, min(limits.header_timeout_s, limits.body_timeout_s) / 4))

    def watch(self, loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        """Start the watchdog on this worker's loop (once; uvicorn's connection set)."""
        if self._timer is None:
            self.connections = connections
            self._timer = loop.call_later(self.tick_s, self._tick, loop)

    def hold(self, protocol: Any) -> None:
        """Stop reading `protocol`'s connection until the loop has room: its next request
        waits in the kernel (aged by TCP_INFO) instead of costing a read and a 503 at every
        loop turn while the loop is full."""
        protocol.transport.pause_reading()
        protocol.held = True
        self.held.append(protocol)
        self.counts["held"] += 1

    def release(self, n: int) -> None:
        """Resume reading the `n` connections held longest (FIFO: each waits its turn)."""
        held = self.held
        while n > 0 and held:
            protocol = held.popleft()
            if not protocol.held:
                continue
            protocol.held = False
            transport = protocol.transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()
                n -= 1

    def park(self, protocol: Any, cycle: Any, app: Any, arrived: float) -> None:
        """Keep a complete request (`Wait.WAIT`) until the loop has room, FIFO. Its
        connection sends nothing more meanwhile (one request at a time), so nothing to pause."""
        protocol.parked = True
        self.parked.append((protocol, cycle, app, arrived))

    def _finished(self, unstarted: int) -> None:
        """A request finished: fill the loop's share from the parked requests (oldest first,
        too old ones shed), and let one held connection (a batch if the loop is idle) be read
        again."""
        adm, parked = self.admission, self.parked
        while parked and adm.has_room():
            protocol, cycle, app, arrived = parked.popleft()
            protocol.parked = False
            transport = protocol.transport
            gone = transport is None or transport.is_closing() or cycle.disconnected
            shed = adm.resume(now=time.monotonic(), arrived=arrived, gone=gone)
            if gone:
                continue
            if shed is None:
                protocol.run_app(cycle, app, arrived)
            else:
                protocol.shed(cycle, shed)
        # Held connections take turns with the parked requests (else they would starve while
        # the connections being served keep the FIFO full, until keep-alive closes them).
        self.release(1 if adm.unstarted else RELEASE_IDLE)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.admission.unstarted == 0:  # nothing will finish: wake what waits
            self._finished(0)
        now = self.clock()
        for protocol in list(self.connections):
            check = getattr(protocol, "check_read_deadline", None)
            if check is not None:
                check(now)
        self._timer = loop.call_later(self.tick_s, self._tick, loop)

    def stats(self) -> dict[str, Any]:
        adm = self.admission
        return {
            "connections": len(self.connections),
            "active": adm.active,
            "unstarted": adm.unstarted,
            "loop_cost_us": round(adm.cost_s * 1e6, 1),
            "waiting": adm.waiting,
            "held_now": sum(1 for p in self.held if p.held),
            "served": sum(adm.served_hist),
            "served_p50_ms": adm.served_ms(0.5),
            "served_p99_ms": adm.served_ms(0.99),
            **self.counts,
        }


ACCEPT_BATCH = 512
"""Connections accepted per wake-up of the listening socket (the rest wait one loop turn)."""


class EagerListener:
    """The worker's listening socket, drained at every loop turn: the `asyncio.Server` that
    `WorkerLoop.create_server` returns for uvicorn.

    uvloop (libuv) accepts *one* connection per loop iteration. A CPU-bound worker at several
    times its capacity runs iterations of a few hundred milliseconds, so connections piled up in
    the kernel's accept queue (strace: one `accept4` per `epoll_pwait`, 0.6 s apart, 500
    connections queued) and a fresh client waited there 10 s, invisible to admission: it was
    answered only once the load stopped. Accepting everything that is queued at each turn puts
    every waiting request where admission sees it (shed with 503 if it may not run, answered
    503 + close beyond `max_connections`)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol_factory: Callable[[], Any],
        sock: Any,
        backlog: int = 2048,
    ) -> None:
        self.loop = loop
        self.protocol_factory = protocol_factory
        self.sock = socket.socket(fileno=os.dup(sock.fileno()))  # ours to close
        self.sock.setblocking(False)
        self.sock.listen(backlog)
        self.counts = worker_guard().counts
        self._serving = True
        loop.add_reader(self.sock.fileno(), self._accept)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return (self.sock,)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EMFILE, ENOBUFS...: try again at the next turn
                self.counts["accept_errors"] += 1
                return
            conn.setblocking(False)
            self.counts["accepted"] += 1
            self.loop.create_task(
                self.loop.connect_accepted_socket(self.protocol_factory, conn)  # type: ignore[arg-type]
            )

    def is_serving(self) -> bool:
        return self._serving

    def close(self) -> None:
        """Stop accepting (uvicorn's graceful shutdown); connections already made finish."""
        if self._serving:
            self._serving = False
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()

    async def wait_closed(self) -> None:
        return None


class WorkerLoop(uvloop.Loop):  # type: ignore[misc]
    """uvloop with `EagerListener` for servers on a given TCP socket (how `run_server` serves)."""

    async def create_server(self, protocol_factory: Any, *args: Any, **kwargs: Any) -> Any:
        sock = kwargs.get("sock")
        if args or sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return await super().create_server(protocol_factory, *args, **kwargs)
        return EagerListener(self, protocol_factory, sock, kwargs.get("backlog") or 2048)


def worker_loop() -> asyncio.AbstractEventLoop:
    """uvicorn's loop factory for the workers (`loop="onshi.backend.server:worker_loop"`)."""
    return WorkerLoop()


RELEASE_IDLE = 64
"""Held connections resumed at once when no request is waiting for the loop."""
HOLD_ON = frozenset({Shed.LOOP_FULL, Shed.QUEUE_FULL})
"""Sheds after which the connection is held: the worker is full, its next request would be too."""

_guard: WorkerGuard | None = None


def worker_guard() -> WorkerGuard:
    """This process's guard, with the limits `run_server` passed in `ONSHI_SERVER`."""
    global _guard
    if _guard is None:
        raw = os.environ.get(ENV_SERVER)
        _guard = WorkerGuard(ServerSettings.from_json(raw).limits if raw else Limits())
    return _guard


class AbortableHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with admission at dispatch (see `overload`), header and
    body read timeouts, and a scope hook that resets the connection (RST) for fault injection.

    uvicorn starts the app when a request's headers are in; this protocol starts it when the
    body is complete too (`_start_asgi_task` defers it), so a slow body costs a connection, not
    a task or a concurrency slot, and a request that may not run is answered without one.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = worker_guard()
        self.read_clock = ReadClock(self.guard.limits)
        self._sock: Any = None
        self._deferred: tuple[Any, Any] | None = None
        self._over_capacity = False
        self.held = False
        self.parked = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guard = self.guard
        guard.watch(self.loop, self.connections)
        self._sock = transport.get_extra_info("socket")
        n = len(self.connections)
        self._over_capacity = n > guard.limits.max_connections
        if n > guard.counts["peak_connections"]:
            guard.counts["peak_connections"] = n
        self.read_clock.start(ReadPhase.HEADERS, guard.clock())

    def connection_lost(self, exc: Exception | None) -> None:
        self._deferred = None
        self.read_clock.stop()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[ABORT_SCOPE_KEY] = self._reset_connection  # type: ignore[literal-required]
        if self.read_clock.phase is None:  # a new connection's clock runs from connection_made
            self.read_clock.start(ReadPhase.HEADERS, self.guard.clock())

    def on_headers_complete(self) -> None:
        self.read_clock.start(ReadPhase.BODY, self.guard.clock())
        super().on_headers_complete()
        deferred = self._deferred
        if self.expect_100_continue and deferred is not None and deferred[0] is self.cycle:
            # uvicorn answers 100 when the app first reads; here the app starts after the body.
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.cycle.waiting_for_100_continue = False

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle.response_complete or (self.parser.should_upgrade() and self._should_upgrade()):
            return
        if len(cycle.body) + len(body) > self.guard.limits.max_body_bytes:
            self.guard.counts["body_too_large"] += 1
            self._answer_without_app(
                cycle, response_bytes(body_too_large_problem(self.guard.limits), close=True), True
            )
            return
        cycle.body += body  # no pause at uvicorn's high-water mark: the app is not reading yet
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.read_clock.stop()
        deferred = self._deferred
        if deferred is not None and deferred[0] is self.cycle and not self.cycle.more_body:
            self._deferred = None
            self._dispatch(*deferred)

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if cycle.more_body:  # the body is still arriving: dispatch once it is complete
            self._deferred = (cycle, app)
            return
        self._dispatch(cycle, app)

    def _dispatch(self, cycle: Any, app: Any) -> None:
        now = time.monotonic()
        arrived = kernel_arrival(self._sock, now)
        guard = self.guard
        verdict = guard.admission.decide(
            now=now,
            arrived=arrived,
            over_capacity=self._over_capacity,
            path=cycle.scope.get("path", ""),
            may_wait=True,
        )
        if verdict is None:
            self.run_app(cycle, app, arrived)
        elif verdict is Wait.WAIT:
            guard.park(self, cycle, app, arrived)
        else:
            self.shed(cycle, verdict)

    def run_app(self, cycle: Any, app: Any, arrived: float) -> None:
        """Start the app on an admitted request (a task, as uvicorn does)."""
        cycle.scope[ARRIVED_SCOPE_KEY] = arrived
        admission = self.guard.admission
        super()._start_asgi_task(cycle, admission.timed(app, time.perf_counter(), arrived))

    def shed(self, cycle: Any, shed: Shed) -> None:
        """Answer 503 from the protocol; a connection shed because the loop is full is held
        (not read) until the loop has room, so it does not cost a read and a 503 per turn."""
        self._answer_without_app(
            cycle, self.guard.admission.shed_response(shed), shed is Shed.CONNECTIONS
        )
        if shed in HOLD_ON and not self.held and not self.transport.is_closing():
            self.guard.hold(self)

    def _answer_without_app(self, cycle: Any, answer: bytes, close: bool) -> None:
        """Write a whole answer for `cycle` from the protocol (no task, no app)."""
        if self._deferred is not None and self._deferred[0] is cycle:
            self._deferred = None
        cycle.response_started = cycle.response_complete = True
        self.read_clock.stop()
        if self.transport.is_closing():
            return
        self.transport.write(answer)
        if close or not cycle.keep_alive:
            self.transport.close()
        else:
            self.on_response_complete()

    def check_read_deadline(self, now: float) -> None:
        """Called by the watchdog: close a connection whose headers or body are overdue (a
        body gets a 408 first when no other answer is being written on the connection)."""
        phase = self.read_clock.expired(now)
        if phase is None or self.transport is None or self.transport.is_closing():
            return
        self.read_clock.stop()
        counts = self.guard.counts
        deferred = self._deferred
        if phase is ReadPhase.BODY and deferred is not None and deferred[0] is self.cycle:
            counts["body_timeouts"] += 1
            problem = body_timeout_problem(self.guard.limits)
            self._answer_without_app(self.cycle, response_bytes(problem, close=True), True)
            return
        counts["header_timeouts" if phase is ReadPhase.HEADERS else "body_timeouts"] += 1
        self.transport.close()

    def shutdown(self) -> None:
        if self._deferred is not None or self.parked:  # the app never started: nothing to finish
            self.transport.close()
            return
        super().shutdown()

    def _reset_connection(self) -> None:
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # linger 0: close() sends RST, not FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if self.cycle is not None:
            self.cycle.disconnected = True  # so uvicorn does not answer 500 for us
        self.transport.abort()


@dataclasses.dataclass(frozen=True, slots=True)
class ServerSettings:
    """What each worker needs to build its stack (passed as JSON in `ONSHI_SERVER`)."""

    app: str
    db_path: str
    admin_token: str | None = None
    limits: Limits = DEFAULT_LIMITS

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServerSettings:
        d = json.loads(text)
        return cls(d["app"], d["db_path"], d.get("admin_token"), Limits(**d.get("limits", {})))


def load_app_factory(spec: str) -> Any:
    """`module:attr` -> the object; one clear error when it cannot be found."""
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise OnshiError(
            f"app {spec!r} cannot be loaded ({exc})", fix="give the app factory as module:attr"
        ) from None
    if not attr or not callable(obj):
        raise OnshiError(f"app {spec!r} is not a callable factory", fix="give module:factory")
    return obj


def worker_app() -> ASGIApp:
    """uvicorn factory, run in each worker: the API app from `ONSHI_SERVER` inside the stack."""
    raw = os.environ.get(ENV_SERVER)
    if raw is None:
        raise OnshiError(f"{ENV_SERVER} is not set", fix="start the server with run_server()")
    s = ServerSettings.from_json(raw)
    inner = load_app_factory(s.app)(db_path=s.db_path)
    return build_stack(
        inner,
        db_path=s.db_path,
        admin_token=s.admin_token,
        limits=s.limits,
        admission_stats=worker_guard().stats,
    )


def check_host(host: str, *, allow_non_loopback: bool) -> None:
    """Refuse to listen beyond loopback unless explicitly allowed."""
    if allow_non_loopback or host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        raise OnshiError(
            f"host {host!r} is not an IP address", fix="use 127.0.0.1 or ::1"
        ) from None
    if not loopback:
        raise OnshiError(
            f"host {host} is not a loopback address",
            fix="use 127.0.0.1 (or pass --allow-non-loopback to listen on a network on purpose)",
        )


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host:port` (not yet listening), inheritable by worker processes.

    Binding first reserves the port, so a busy port is one clear error before anything is
    seeded, printed or started."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise OnshiError(
                f"port {port} on {host} is in use",
                fix=f"stop what listens there (ss -ltnp 'sport = :{port}') or pass another --port",
            ) from None
        if exc.errno == errno.EACCES:
            raise OnshiError(
                f"port {port} on {host} needs privileges", fix="pass a --port of 1024 or more"
            ) from None
        raise OnshiError(
            f"cannot listen on {host} port {port} ({exc.strerror or exc})",
            fix="pass an address of this machine as --host, e.g. 127.0.0.1",
        ) from None
    sock.set_inheritable(True)
    return sock


def run_server(
    app: str,
    *,
    db_path: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    faults: FaultConfig | str | os.PathLike[str] | None = None,
    admin_token: str | None = None,
    log_level: str = "info",
    limits: Limits = DEFAULT_LIMITS,
    allow_non_loopback: bool = False,
    sock: socket.socket | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT. `app` is `module:factory`, called as `factory(db_path=...)`.

    `sock` is a bound socket to serve on (`bind_socket`, or one inherited from a launcher);
    without it `host:port` is bound here. The start-up faults (or none) replace whatever a
    previous run left in the database, and the outage mode starts off: a restart is a clean
    slate.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    check_host(host, allow_non_loopback=allow_non_loopback)
    if workers < 1:
        raise OnshiError(f"workers must be >= 1, got {workers}", fix="pass --workers 1 or more")
    load_app_factory(app)  # fail here, once, rather than in every worker
    config = (
        faults if isinstance(faults, FaultConfig) or faults is None else FaultConfig.load(faults)
    )
    listener = sock if sock is not None else bind_socket(host, port)
    try:
        store = ControlStore(db_path)
        try:
            store.set_faults(config or FaultConfig())
            store.set_outage_mode(False)
        finally:
            store.close()
        token = admin_token or os.environ.get(ENV_ADMIN_TOKEN) or None
        settings = ServerSettings(app, str(db_path), token, limits)
        os.environ[ENV_SERVER] = settings.to_json()
        uv_config = uvicorn.Config(
            "onshi.backend.server:worker_app",
            factory=True,
            workers=workers,
            loop="onshi.backend.server:worker_loop",
            http=PROTOCOL,
            access_log=False,
            log_config=log_config(log_level),
            log_level=log_level,
            timeout_graceful_shutdown=5,
            server_header=False,
        )
        if workers > 1:
            Multiprocess(uv_config, sockets=[listener]).run()
        else:
            uvicorn.Server(uv_config).run(sockets=[listener])
    finally:
        listener.close()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class RunningServer:
    """A server subprocess started by `start_server` (its own process group). Stopping it
    removes `workdir` (its log and fault file); `log_text()` still answers from memory."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path
    workdir: Path | None = None
    _log: str | None = dataclasses.field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_text(self) -> str:
        if self._log is not None:
            return self._log
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (graceful), then SIGKILL to the group this launcher created."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        code = int(self.process.wait())
        self._remove_workdir()
        return code

    def kill(self) -> None:
        """kill -9 the server and its workers (the process group it leads)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._remove_workdir()

    def _remove_workdir(self) -> None:
        if self.workdir is None or self._log is not None:
            return
        with contextlib.suppress(OSError):
            self._log = self.log_path.read_text(encoding="utf-8", errors="replace")
        if self._log is None:
            self._log = ""
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def limits_args(limits: Limits) -> list[str]:
    """`python -m onshi.backend.server` options for `limits`."""
    out: list[str] = []
    for option, field in _LIMIT_OPTIONS:
        out += [option, str(getattr(limits, field))]
    return out


_LIMIT_OPTIONS = (
    ("--max-in-flight", "max_in_flight"),
    ("--max-queue", "max_queue"),
    ("--queue-timeout", "queue_timeout_s"),
    ("--retry-after", "retry_after_s"),
    ("--max-connections", "max_connections"),
    ("--max-per-facility", "max_per_facility"),
    ("--header-timeout", "header_timeout_s"),
    ("--body-timeout", "body_timeout_s"),
    ("--max-body", "max_body_bytes"),
    ("--max-pending", "max_pending"),
    ("--max-waiting", "max_waiting"),
)


def start_server(
    app: str,
    *,
    db_path: str | os.PathLike[str],
    workers: int = 1,
    faults: FaultConfig | str | os.PathLike[str] | None = None,
    admin_token: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    log_level: str = "warning",
    timeout_s: float = 60.0,
    env: dict[str, str] | None = None,
) -> RunningServer:
    """Start `python -m onshi.backend.server` on a free loopback port; return once `/healthz`
    answers (or raise with the server's log tail).

    The port is bound here and the socket handed to the server process, so no other process
    can take it between choosing and listening."""
    workdir = Path(tempfile.mkdtemp(prefix="onshi-server-"))
    args = ["--app", app, "--db", str(db_path), "--workers", str(workers)]
    args += ["--log-level", log_level, *limits_args(limits)]
    server: RunningServer | None = None
    try:
        if isinstance(faults, FaultConfig):
            (workdir / "faults.json").write_text(faults.to_json(), encoding="utf-8")
            args += ["--faults", str(workdir / "faults.json")]
        elif faults is not None:
            args += ["--faults", str(faults)]
        full_env = {**os.environ, **(env or {})}
        if admin_token is not None:
            full_env[ENV_ADMIN_TOKEN] = admin_token
        log_path = workdir / "server.log"
        with bind_socket("127.0.0.1", 0) as sock, open(log_path, "wb") as log:
            port = int(sock.getsockname()[1])
            proc = subprocess.Popen(
                [sys.executable, "-m", "onshi.backend.server", *args, "--fd", str(sock.fileno())],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
                pass_fds=(sock.fileno(),),
            )
        server = RunningServer(proc, "127.0.0.1", port, log_path, workdir)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and proc.poll() is None:
            if _healthy(server.host, port):
                return server
            time.sleep(0.05)
        last_error = server.log_text()[-2000:]
        server.kill()  # removes the work dir; the error below carries the log's tail
    except BaseException:  # interrupted while starting (Ctrl-C, SIGTERM, a timeout): leave nothing
        if server is not None:
            server.kill()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    raise OnshiError(
        f"the backend server did not answer /healthz: {last_error.strip() or 'no output'}",
        fix="read the server log above",
    )


def _healthy(host: str, port: int) -> bool:
    conn = http.client.HTTPConnection(host, port, timeout=1.0)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m onshi.backend.server`: the process `start_server` launches."""
    p = argparse.ArgumentParser(prog="python -m onshi.backend.server", description=__doc__)
    p.add_argument("--app", required=True, help="API app factory as module:attr")
    p.add_argument("--db", required=True, help="SQLite database path")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--fd", type=int, help="serve on this inherited, bound socket (not --port)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--faults", help="fault config file (YAML or JSON)")
    p.add_argument("--admin-token", help=f"admin bearer token (default: ${ENV_ADMIN_TOKEN})")
    p.add_argument("--log-level", default="info")
    defaults = Limits()
    for option, field in _LIMIT_OPTIONS:
        value = getattr(defaults, field)
        p.add_argument(option, dest=field, type=type(value), default=value)
    p.add_argument("--allow-non-loopback", action="store_true")
    a = p.parse_args(argv)
    limits = Limits(**{field: getattr(a, field) for _, field in _LIMIT_OPTIONS})
    try:
        check_host(a.host, allow_non_loopback=a.allow_non_loopback)
        sock = socket.socket(fileno=a.fd) if a.fd is not None else None
        run_server(
            a.app,
            db_path=a.db,
            host=a.host,
            port=a.port,
            workers=a.workers,
            faults=a.faults,
            admin_token=a.admin_token,
            log_level=a.log_level,
            limits=limits,
            allow_non_loopback=a.allow_non_loopback,
            sock=sock,
        )
    except OnshiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
