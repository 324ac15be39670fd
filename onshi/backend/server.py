"""Running the reference backend: the middleware stack, uvicorn workers, and a test-side launcher.

The API app (a factory `module:attr` called as `factory(db_path=...)` in each worker, e.g.
`onshi.backend.app:create_api`) is wrapped,
outermost first, in: an access log without personal data, `/healthz`, the admin endpoint
(`admin.AdminApp`), overload protection (`ConcurrencyLimiter`) and fault injection
(`faults.FaultInjector`). Injected latency therefore holds a concurrency slot, as a slow
backend would, and the admin endpoint and `/healthz` stay reachable when the API is overloaded.

`run_server` runs it on uvicorn with uvloop and httptools, one or several worker processes, a
graceful shutdown on SIGTERM (uvicorn's: stop accepting, finish requests in flight), and only on
loopback addresses unless told otherwise (CI rule: nothing listens on a shared network).
`start_server` launches `python -m onshi.backend.server` on a free loopback port and waits for
`/healthz`; tests, load tests and the quickstart use it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
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

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from onshi.backend.accesslog import AccessLog, log_config
from onshi.backend.admin import AdminApp, ControlStore, ControlSync
from onshi.backend.auth import ApiProblem
from onshi.backend.faults import (
    ABORT_SCOPE_KEY,
    ASGIApp,
    FaultConfig,
    FaultInjector,
    Receive,
    Scope,
    Send,
)
from onshi.errors import OnshiError

ENV_SERVER = "ONSHI_SERVER"
"""JSON `ServerSettings` handed from `run_server` to each uvicorn worker process."""
ENV_ADMIN_TOKEN = "ONSHI_ADMIN_TOKEN"
PROTOCOL = "onshi.backend.server:AbortableHttpToolsProtocol"
ARRIVED_SCOPE_KEY = "onshi.arrived"
"""Scope key: `time.monotonic()` when the request's first bytes were parsed (set by the server)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """Overload protection: requests beyond `max_in_flight` wait in a queue of `max_queue`;
    anything beyond is answered 503 with `Retry-After` at once. `queue_timeout_s` is the budget
    from a request's arrival to its admission: it covers waiting for a slot and, when the server
    stamps arrivals (`ARRIVED_SCOPE_KEY`), waiting in a saturated event loop too. The API does
    its SQLite work without yielding, so under overload requests pile up in the loop rather than
    in flight; the age check is what sheds them there."""

    max_in_flight: int = 256
    max_queue: int = 256
    queue_timeout_s: float = 1.0
    retry_after_s: int = 1


class ConcurrencyLimiter:
    """ASGI middleware bounding concurrent requests per worker (FIFO hand-over of slots)."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits
        self.in_flight = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.counts: collections.Counter[str] = collections.Counter()

    def stats(self) -> dict[str, int]:
        return {"in_flight": self.in_flight, "queued": len(self.waiters), **self.counts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        budget = self.limits.queue_timeout_s
        arrived = scope.get(ARRIVED_SCOPE_KEY)
        if arrived is not None:
            budget -= time.monotonic() - arrived
            if budget <= 0:
                self.counts["rejected_queue_age"] += 1
                await self._reject(send, "queue-timeout")
                return
        if self.in_flight < self.limits.max_in_flight and not self.waiters:
            self.in_flight += 1
        elif len(self.waiters) >= self.limits.max_queue:
            self.counts["rejected_queue_full"] += 1
            await self._reject(send, "queue-full")
            return
        elif not await self._wait_for_slot(budget):
            self.counts["rejected_queue_timeout"] += 1
            await self._reject(send, "queue-timeout")
            return
        self.counts["admitted"] += 1
        self.counts["peak_in_flight"] = max(self.counts["peak_in_flight"], self.in_flight)
        try:
            await self.app(scope, receive, send)
        finally:
            self._release()

    async def _wait_for_slot(self, budget: float) -> bool:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        self.counts["queued_total"] += 1
        self.counts["peak_queued"] = max(self.counts["peak_queued"], len(self.waiters))
        try:
            await asyncio.wait_for(asyncio.shield(waiter), budget)
            return True
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                if isinstance(exc, TimeoutError):
                    return True  # the slot arrived as the budget ran out: use it
                self._release()  # handed a slot we will not use
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self.waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                return False
            raise

    def _release(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on; in_flight stays the same
                return
        self.in_flight -= 1

    async def _reject(self, send: Send, reason: str) -> None:
        lim = self.limits
        body = json.dumps(
            {
                "status": 503,
                "title": "Service Unavailable",
                "detail": f"overloaded ({reason}): {self.in_flight} requests in flight, "
                f"{len(self.waiters)} queued (limits {lim.max_in_flight}/{lim.max_queue})",
                "fix": f"retry after {lim.retry_after_s} s",
            }
        ).encode()
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(lim.retry_after_s).encode()),
            (b"x-onshi-overload", reason.encode()),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class Health:
    """ASGI middleware answering `/healthz` (which worker, which control version)."""

    def __init__(self, app: ASGIApp, control: ControlSync) -> None:
        self.app = app
        self.control = control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/healthz":
            await self.app(scope, receive, send)
            return
        if scope["method"] != "GET":  # TRACE, PUT, ... : 405 with Allow, as the API answers
            detail = f"{scope['method']} is not allowed on /healthz"
            problem = ApiProblem(405, "Method not allowed", detail, fix="use GET")
            body = json.dumps(problem.body()).encode()
            headers = [(b"content-type", b"application/problem+json"), (b"allow", b"GET")]
            headers.append((b"content-length", b"%d" % len(body)))
            await send({"type": "http.response.start", "status": 405, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        state = self.control.current()
        body = json.dumps(
            {"status": "ok", "pid": os.getpid(), "control_version": state.version}
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class AbortableHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a scope hook that resets the connection (RST) and the
    arrival time of each request (for the limiter's queue-time budget)."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[ABORT_SCOPE_KEY] = self._reset_connection  # type: ignore[literal-required]
        self.scope[ARRIVED_SCOPE_KEY] = time.monotonic()  # type: ignore[literal-required]

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
    limits: Limits = Limits()

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


def build_stack(
    inner: ASGIApp,
    *,
    db_path: str | os.PathLike[str],
    admin_token: str | None = None,
    limits: Limits = Limits(),
    clock: Callable[[], float] = time.time,
) -> ASGIApp:
    """Wrap an API app in the fault, overload, admin, health and access-log layers.

    The faults and the outage mode come from the database's control row (`run_server` writes
    the start-up ones); `clock` is the wall clock outage windows are judged by.
    """
    store = ControlStore(db_path)
    injector = FaultInjector(inner, clock=clock)
    limiter = ConcurrencyLimiter(injector, limits)
    access: AccessLog

    def stats() -> dict[str, Any]:
        return {
            "requests": dict(access.counts),
            "overload": limiter.stats(),
            "faults": dict(injector.counts),
        }

    control = ControlSync(store, stats=stats)
    injector.config_source = control.faults
    admin = AdminApp(limiter, control=control, token=admin_token, stats=stats)
    access = AccessLog(Health(admin, control))
    return access


def worker_app() -> ASGIApp:
    """uvicorn factory, run in each worker: the API app from `ONSHI_SERVER` inside the stack."""
    raw = os.environ.get(ENV_SERVER)
    if raw is None:
        raise OnshiError(f"{ENV_SERVER} is not set", fix="start the server with run_server()")
    s = ServerSettings.from_json(raw)
    inner = load_app_factory(s.app)(db_path=s.db_path)
    return build_stack(inner, db_path=s.db_path, admin_token=s.admin_token, limits=s.limits)


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
    limits: Limits = Limits(),
    allow_non_loopback: bool = False,
) -> None:
    """Serve until SIGTERM/SIGINT. `app` is `module:factory`, called as `factory(db_path=...)`.

    The start-up faults (or none) replace whatever a previous run left in the database, and the
    outage mode starts off: a restart is a clean slate.
    """
    import uvicorn

    check_host(host, allow_non_loopback=allow_non_loopback)
    if workers < 1:
        raise OnshiError(f"workers must be >= 1, got {workers}", fix="pass --workers 1 or more")
    load_app_factory(app)  # fail here, once, rather than in every worker
    config = (
        faults if isinstance(faults, FaultConfig) or faults is None else FaultConfig.load(faults)
    )
    store = ControlStore(db_path)
    try:
        store.set_faults(config or FaultConfig())
        store.set_outage_mode(False)
    finally:
        store.close()
    token = admin_token or os.environ.get(ENV_ADMIN_TOKEN) or None
    settings = ServerSettings(app, str(db_path), token, limits)
    os.environ[ENV_SERVER] = settings.to_json()
    uvicorn.run(
        "onshi.backend.server:worker_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http=PROTOCOL,
        access_log=False,
        log_config=log_config(log_level),
        log_level=log_level,
        timeout_graceful_shutdown=5,
        server_header=False,
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class RunningServer:
    """A server subprocess started by `start_server` (its own process group)."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (graceful), then SIGKILL to the group this launcher created."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.process.wait())

    def kill(self) -> None:
        """kill -9 the server and its workers (the process group it leads)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    app: str,
    *,
    db_path: str | os.PathLike[str],
    workers: int = 1,
    faults: FaultConfig | str | os.PathLike[str] | None = None,
    admin_token: str | None = None,
    limits: Limits = Limits(),
    log_level: str = "warning",
    timeout_s: float = 60.0,
    env: dict[str, str] | None = None,
) -> RunningServer:
    """Start `python -m onshi.backend.server` on a free loopback port; return once `/healthz`
    answers (or raise with the server's log tail)."""
    workdir = Path(tempfile.mkdtemp(prefix="onshi-server-"))
    args = ["--app", app, "--db", str(db_path), "--workers", str(workers)]
    args += ["--log-level", log_level, "--max-in-flight", str(limits.max_in_flight)]
    args += ["--max-queue", str(limits.max_queue), "--queue-timeout", str(limits.queue_timeout_s)]
    args += ["--retry-after", str(limits.retry_after_s)]
    if isinstance(faults, FaultConfig):
        (workdir / "faults.json").write_text(faults.to_json(), encoding="utf-8")
        args += ["--faults", str(workdir / "faults.json")]
    elif faults is not None:
        args += ["--faults", str(faults)]
    full_env = {**os.environ, **(env or {})}
    if admin_token is not None:
        full_env[ENV_ADMIN_TOKEN] = admin_token
    last_error = ""
    server: RunningServer | None = None
    try:
        for attempt in range(3):  # a free port can be taken between probing and binding
            port = free_port()
            log_path = workdir / f"server-{attempt}.log"
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "onshi.backend.server", *args, "--port", str(port)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=full_env,
                    start_new_session=True,
                )
            server = RunningServer(proc, "127.0.0.1", port, log_path)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and proc.poll() is None:
                if _healthy(server.host, port):
                    return server
                time.sleep(0.05)
            if proc.poll() is None:
                server.kill()
            last_error = server.log_text()[-2000:]
            if "address already in use" not in last_error.lower():
                break
    except BaseException:  # interrupted while starting (Ctrl-C, SIGTERM, a timeout): leave nothing
        if server is not None and server.process.poll() is None:
            server.kill()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    shutil.rmtree(workdir, ignore_errors=True)  # the error below carries the log's tail
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
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--faults", help="fault config file (YAML or JSON)")
    p.add_argument("--admin-token", help=f"admin bearer token (default: ${ENV_ADMIN_TOKEN})")
    p.add_argument("--log-level", default="info")
    p.add_argument("--max-in-flight", type=int, default=Limits.max_in_flight)
    p.add_argument("--max-queue", type=int, default=Limits.max_queue)
    p.add_argument("--queue-timeout", type=float, default=Limits.queue_timeout_s)
    p.add_argument("--retry-after", type=int, default=Limits.retry_after_s)
    p.add_argument("--allow-non-loopback", action="store_true")
    a = p.parse_args(argv)
    try:
        run_server(
            a.app,
            db_path=a.db,
            host=a.host,
            port=a.port,
            workers=a.workers,
            faults=a.faults,
            admin_token=a.admin_token,
            log_level=a.log_level,
            limits=Limits(a.max_in_flight, a.max_queue, a.queue_timeout, a.retry_after),
            allow_non_loopback=a.allow_non_loopback,
        )
    except OnshiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
