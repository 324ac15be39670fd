"""Admission and overload: where a request may wait, for how long, and who answers when it may not.

A worker of the reference backend is CPU-bound: the API does its SQLite work without yielding,
so under overload requests do not pile up *in flight* (the ASGI concurrency limiter saw at most
two) but *before* the app: in the kernel (the accept queue, the socket's receive buffer while the
event loop runs other requests) and in the loop's ready queue. A check inside the ASGI app comes
too late there: the loop parses a request only when it gets round to it, so a time stamp taken
at parsing is taken late, and the age it measures is the small part of the wait that is left.

So admission happens at *dispatch*, in the HTTP protocol (``server.AbortableHttpToolsProtocol``),
once a request is complete and before any task is created for it:

- the request's age counts from when its last bytes reached the kernel (``kernel_arrival``:
  ``TCP_INFO.tcpi_last_data_recv``), so time waiting in a saturated loop counts;
- a worker holds at most ``max_in_flight + max_queue`` dispatched requests and
  ``max_connections`` connections;
- anything beyond is answered at once, from the protocol, with 503 + ``Retry-After`` and a
  problem document (``Admission.decide``), which costs a small fraction of serving it.

Requests are dispatched only once their body is complete, so a slow or stalled body holds a
connection (bounded by ``header_timeout_s`` / ``body_timeout_s``: 408, then close) but never a
slot. Inside the app, ``ConcurrencyLimiter`` bounds concurrent requests (FIFO hand-over of slots,
a queue-time budget) and gives each facility credential at most ``max_per_facility`` of them
(429): the key is the credential itself, code *and* secret, so a request that only claims a
facility's code cannot use up that facility's share, and no authentication is needed first.

The decisions here are sans-I/O (time and counts are passed in), so they are tested with a
mock clock; the protocol and the ASGI middleware are thin adapters.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import http
import socket
import struct
import time
from collections.abc import Coroutine, Generator, Sequence
from typing import Any

import orjson

from onshi.backend.auth import FACILITY_HEADER, ApiProblem
from onshi.backend.faults import EXEMPT_PREFIXES, ASGIApp, Receive, Scope, Send

ARRIVED_SCOPE_KEY = "onshi.arrived"
"""Scope key: `time.monotonic()` when the request's last bytes reached the kernel (set by the
server's protocol at dispatch), so the limiter's budget covers the wait before the app."""


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """Per-worker admission limits (the defaults are the production ones).

    Requests beyond `max_in_flight` wait in a queue of `max_queue`; beyond that, or older than
    `queue_timeout_s` (from the kernel's receipt of the request to admission), they are answered
    503 with `Retry-After: retry_after_s` at once. `max_connections` bounds open connections
    (the excess gets 503 and is closed); `max_per_facility` bounds one facility credential's
    requests in flight or queued (the excess gets 429). A request's headers must arrive within
    `header_timeout_s` of its first byte (or of the connection) and its body within
    `body_timeout_s` of its headers, else the connection is closed (408 for a body). Bodies
    larger than `max_body_bytes` (the API's largest, 一括照会's 8 MiB) are refused with 413.

    `max_pending` bounds the requests a worker has dispatched and not finished. It is the
    backstop for a saturated event loop: there requests wait as tasks that have not reached the
    limiter yet (so it sees nothing to refuse), and each one adds its service time to the wait
    of every request behind it. It sits above `max_in_flight + max_queue`, so while the loop
    keeps up the limiter decides. `max_waiting` bounds the complete requests parked (FIFO, in
    the protocol) until the loop has room; their wait is bounded by the queue budget first.
    """

    max_in_flight: int = 256
    max_queue: int = 256
    queue_timeout_s: float = 1.0
    retry_after_s: int = 1
    max_connections: int = 4096
    max_per_facility: int = 64
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    max_body_bytes: int = 8 << 20
    max_pending: int = 1024
    max_waiting: int = 4096


DEFAULT_LIMITS = Limits()
"""The production limits (a shared default for functions that take `limits=`)."""


class Shed(enum.StrEnum):
    """Why a request was refused before reaching the app (the `X-Onshi-Overload` header)."""

    QUEUE_AGE = "queue-age"  # it waited (kernel, loop) longer than the queue budget
    QUEUE_FULL = "queue-full"  # the worker already holds max_pending requests
    LOOP_FULL = "loop-full"  # the event loop already has its share of the budget queued
    CONNECTIONS = "connections"  # the connection was accepted beyond max_connections


class Wait(enum.Enum):
    """The request may wait for the loop (parked, complete, FIFO) rather than be shed."""

    WAIT = "wait"


WAIT_SHARE = 3 / 4
"""Requests are parked only while the work ahead (dispatched and parked) fits this share of
the queue budget: the rest covers the loop turns before a request is read and dispatched."""

LOOP_SHARE = 1 / 10
"""The share of the queue budget that requests dispatched but not yet started may add up to.

A request read in one loop iteration waits for the work dispatched before it *and* for the
next iteration (its bytes sit in the kernel while the loop runs that work), so the loop's queue
gets a third of the budget: served requests then wait about two thirds of it at worst."""
COST_EWMA = 0.05


@dataclasses.dataclass(slots=True)
class Admission:
    """The dispatch decision of one worker (sans-I/O) and its counters for `/admin/stats`.

    It predicts a request's wait in the event loop as the requests dispatched and not yet
    started times the loop time a request takes (an average of measured ones), and
    dispatches only what fits the queue budget: in a CPU-bound worker that is the wait that
    matters, and it is invisible to anything inside the app. `active` counts dispatched
    requests not finished (uvicorn's task set lags: it drops a task one loop turn late)."""

    limits: Limits
    counts: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    unstarted: int = 0
    active: int = 0
    cost_s: float = 0.0
    waiting: int = 0
    served_hist: list[int] = dataclasses.field(default_factory=lambda: [0] * 1001, repr=False)
    on_finished: Any = dataclasses.field(default=None, repr=False)
    """Called with the number of unstarted requests left after each finished one (the server
    resumes reading held connections there)."""
    _answers: dict[Shed, bytes] = dataclasses.field(default_factory=dict, repr=False)

    def started(self, sojourn_s: float) -> None:
        """A dispatched request got the loop after `sojourn_s` in its ready queue."""
        self.unstarted -= 1
        ms = int(sojourn_s * 1000)
        if ms > self.counts["peak_loop_wait_ms"]:
            self.counts["peak_loop_wait_ms"] = ms

    def finished(self, busy_s: float) -> None:
        """A dispatched request is done after `busy_s` of loop time (its steps, not its
        awaits): one more sample of what a request ahead costs the loop."""
        self.active -= 1
        self.cost_s += COST_EWMA * (busy_s - self.cost_s)
        if self.on_finished is not None:
            self.on_finished(self.unstarted)

    def decide(
        self,
        *,
        now: float,
        arrived: float,
        over_capacity: bool = False,
        path: str = "",
        may_wait: bool = False,
    ) -> Shed | Wait | None:
        """None to dispatch the request (counted in `unstarted` and `active` until `timed`
        reports it), `WAIT` to park it until the loop has room (`may_wait`: the caller keeps
        a FIFO of complete requests and calls `resume` as requests finish), else why it is
        shed. `arrived` and `now` are on the same clock. `/healthz` and `/admin/*` are never
        shed: operators must see an overloaded server."""
        lim = self.limits
        verdict: Shed | Wait | None
        if path.startswith(EXEMPT_PREFIXES) or path == "/admin":
            verdict = None
        elif over_capacity:
            verdict = Shed.CONNECTIONS
        elif self.active >= lim.max_pending or self.waiting >= lim.max_waiting:
            verdict = Shed.QUEUE_FULL
        else:
            ahead = self.unstarted * self.cost_s
            age = now - arrived
            if age + ahead > lim.queue_timeout_s:
                verdict = Shed.QUEUE_AGE
            elif ahead <= lim.queue_timeout_s * LOOP_SHARE and not self.waiting:
                verdict = None
            elif may_wait and self._may_wait(age, lim.queue_timeout_s):
                verdict = Wait.WAIT
            else:
                verdict = Shed.LOOP_FULL
        if verdict is None:
            self._dispatched()
        elif verdict is Wait.WAIT:
            self.waiting += 1
            self.counts["waited"] += 1
            if self.waiting > self.counts["peak_waiting"]:
                self.counts["peak_waiting"] = self.waiting
        else:
            self.counts["shed_" + verdict.name.lower()] += 1
        return verdict

    def _may_wait(self, age: float, budget: float) -> bool:
        """Whether a request of `age` fits behind everything queued: the queue's own share of
        the budget bounds every waiter alike, and this request's age must fit with it. (A
        request on a fresh connection is older when it is read: accepting and reading it
        takes loop turns. Judging the queue by its newest request would refuse it first.)"""
        wait = (self.unstarted + self.waiting + 1) * self.cost_s
        return wait <= budget * WAIT_SHARE and age + wait <= budget

    def has_room(self) -> bool:
        """Whether the loop's queue has room for one more request (its share of the budget)."""
        return self.unstarted * self.cost_s <= self.limits.queue_timeout_s * LOOP_SHARE

    def resume(self, *, now: float, arrived: float, gone: bool = False) -> Shed | None:
        """The decision for a parked (`WAIT`) request taken out of the FIFO: None to
        dispatch it, `QUEUE_AGE` if it has grown too old to be served in the budget. `gone`:
        its client left, it only leaves the count."""
        self.waiting -= 1
        if gone:
            return None
        if now - arrived + self.unstarted * self.cost_s > self.limits.queue_timeout_s:
            self.counts["shed_queue_age"] += 1
            return Shed.QUEUE_AGE
        self._dispatched()
        return None

    def _dispatched(self) -> None:
        self.unstarted += 1
        self.active += 1
        self.counts["dispatched"] += 1
        if self.active > self.counts["peak_pending"]:
            self.counts["peak_pending"] = self.active

    def timed(self, app: ASGIApp, dispatched: float, arrived: float | None = None) -> ASGIApp:
        """`app` for one request just dispatched at `dispatched` (`time.perf_counter`),
        reporting its start and its loop time to `started` and `finished`, and, given when it
        `arrived` (`time.monotonic`), its answer's status and latency to `answered`."""

        async def timed_app(scope: Scope, receive: Receive, send: Send) -> None:
            if arrived is None:
                await _Timed(app(scope, receive, send), self, dispatched)
                return
            status = 0

            async def send_status(message: Any) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await _Timed(app(scope, receive, send_status), self, dispatched)
            finally:
                self.answered(status, time.monotonic() - arrived)

        return timed_app

    def answered(self, status: int, latency_s: float) -> None:
        """A dispatched request was answered `latency_s` after the kernel received it. Answers
        below 500 are *served*: their latencies (10 ms buckets) give `served_ms`."""
        if 0 < status < 500:
            hist = self.served_hist
            hist[min(len(hist) - 1, int(latency_s * 100))] += 1

    def served_ms(self, q: float) -> float | None:
        """The `q` quantile of served latencies (upper bound of its 10 ms bucket), or None."""
        total = sum(self.served_hist)
        if not total:
            return None
        rank, seen = q * total, 0
        for i, n in enumerate(self.served_hist):
            seen += n
            if seen >= rank:
                return (i + 1) * 10.0
        return None

    def shed_response(self, shed: Shed) -> bytes:
        """The raw 503 the protocol writes for a shed request (built once per reason: under
        overload every answer not given costs the requests that are served)."""
        answer = self._answers.get(shed)
        if answer is None:
            lim = self.limits
            detail = {
                Shed.QUEUE_AGE: f"the request would wait longer than the {lim.queue_timeout_s:g} s "
                "queue budget before this worker could take it",
                Shed.QUEUE_FULL: f"this worker already holds {lim.max_pending} requests",
                Shed.CONNECTIONS: f"this worker already has {lim.max_connections} connections",
                Shed.LOOP_FULL: "this worker's event loop already has its share of the "
                f"{lim.queue_timeout_s:g} s queue budget waiting",
            }[shed]
            problem = ApiProblem(
                503,
                "Service Unavailable",
                f"overloaded ({shed}): {detail}",
                fix=f"retry after {lim.retry_after_s} s",
                retry_after=lim.retry_after_s,
            )
            extra = [(b"x-onshi-overload", shed.encode())]
            answer = response_bytes(problem, headers=extra, close=shed is Shed.CONNECTIONS)
            self._answers[shed] = answer
        return answer


class _Timed:
    """Drives a coroutine and adds up the time spent inside its steps: the loop time it takes
    (time spent awaiting is not counted). Reports its start and that total to an `Admission`.
    Shedding costs do not feed into it, so shedding more never makes it shed more."""

    __slots__ = ("admission", "coro", "dispatched")

    def __init__(
        self, coro: Coroutine[Any, Any, None], admission: Admission, dispatched: float
    ) -> None:
        self.coro = coro
        self.admission = admission
        self.dispatched = dispatched

    def __await__(self) -> Generator[Any, Any, None]:
        coro, clock = self.coro, time.perf_counter
        self.admission.started(clock() - self.dispatched)
        busy = 0.0
        value: Any = None
        error: BaseException | None = None
        try:
            while True:
                t0 = clock()
                try:
                    if error is None:
                        yielded = coro.send(value)
                    else:
                        yielded, error = coro.throw(error), None
                except StopIteration:
                    return
                finally:
                    busy += clock() - t0
                try:
                    value = yield yielded
                except GeneratorExit:
                    coro.close()
                    raise
                except BaseException as exc:  # cancellation and the like go to the app
                    error, value = exc, None
        finally:
            self.admission.finished(busy)


class ReadPhase(enum.Enum):
    """What a connection is waiting to read, for the header and body timeouts."""

    HEADERS = "headers"
    BODY = "body"


@dataclasses.dataclass(slots=True)
class ReadClock:
    """A connection's read deadline (sans-I/O): started when a phase begins, cleared when the
    phase's bytes are in; `expired(now)` says which phase ran out, if any."""

    limits: Limits
    phase: ReadPhase | None = None
    deadline: float = float("inf")

    def start(self, phase: ReadPhase, now: float) -> None:
        self.phase = phase
        budget = (
            self.limits.header_timeout_s
            if phase is ReadPhase.HEADERS
            else self.limits.body_timeout_s
        )
        self.deadline = now + budget

    def stop(self) -> None:
        self.phase = None
        self.deadline = float("inf")

    def expired(self, now: float) -> ReadPhase | None:
        return self.phase if now >= self.deadline else None


def body_timeout_problem(limits: Limits) -> ApiProblem:
    return ApiProblem(
        408,
        "Request Timeout",
        f"the request body did not arrive within {limits.body_timeout_s:g} s of its headers",
        fix="send the whole body that Content-Length announces, promptly",
    )


def body_too_large_problem(limits: Limits) -> ApiProblem:
    return ApiProblem(
        413,
        "Body too large",
        f"the body exceeds {limits.max_body_bytes} bytes",
        fix="send a smaller request",
    )


def response_bytes(
    problem: ApiProblem, *, headers: Sequence[tuple[bytes, bytes]] = (), close: bool = False
) -> bytes:
    """A complete HTTP/1.1 problem+json answer, for the protocol to write without an app."""
    body = orjson.dumps(problem.body())
    lines = [
        b"HTTP/1.1 %d %s" % (problem.status, http.HTTPStatus(problem.status).phrase.encode()),
        b"content-type: application/problem+json",
        b"content-length: %d" % len(body),
    ]
    if problem.retry_after:
        lines.append(b"retry-after: %d" % problem.retry_after)
    lines += [name + b": " + value for name, value in headers]
    if close:
        lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


_FACILITY = FACILITY_HEADER.encode()
_TCP_INFO = getattr(socket, "TCP_INFO", None)
_LAST_DATA_RECV = struct.Struct("=I")
_LAST_DATA_RECV_OFFSET = 52  # struct tcp_info: 8 bytes of u8 fields, 11 u32s before it


def kernel_arrival(sock: Any, now: float) -> float:
    """When the kernel last received data on `sock` (on the clock of `now`): `now` minus
    `tcpi_last_data_recv` (Linux, millisecond resolution). The loop may read a request long
    after it arrived; this is when it arrived. Falls back to `now` where TCP_INFO is missing."""
    if sock is None or _TCP_INFO is None:
        return now
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _LAST_DATA_RECV_OFFSET + 4)
    except (OSError, AttributeError):
        return now
    if len(info) < _LAST_DATA_RECV_OFFSET + 4:
        return now
    return now - _LAST_DATA_RECV.unpack_from(info, _LAST_DATA_RECV_OFFSET)[0] / 1000.0


def credential_key(headers: Sequence[tuple[bytes, bytes]]) -> tuple[bytes, bytes] | None:
    """The facility credential a request presents (code, Authorization), or None.

    The share is keyed by the whole credential: a request with facility A's code but not its
    secret lands in a bucket of its own and cannot use up A's share."""
    code = auth = None
    for name, value in headers:
        if name == _FACILITY:
            code = value
        elif name == b"authorization":
            auth = value
    return (code, auth) if code and auth else None


class ConcurrencyLimiter:
    """ASGI middleware bounding concurrent requests per worker (FIFO hand-over of slots) and
    per facility credential."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits
        self.in_flight = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.counts: collections.Counter[str] = collections.Counter()
        self.per_facility: dict[tuple[bytes, bytes], int] = {}

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
        key = credential_key(scope.get("headers", ()))
        if key is not None:
            held = self.per_facility.get(key, 0)
            if held >= self.limits.max_per_facility:
                self.counts["rejected_facility_cap"] += 1
                await self._reject_facility(send, key[0], held)
                return
            self.per_facility[key] = held + 1
        try:
            await self._admitted(scope, receive, send, budget)
        finally:
            if key is not None:
                left = self.per_facility[key] - 1
                if left:
                    self.per_facility[key] = left
                else:
                    del self.per_facility[key]

    async def _admitted(self, scope: Scope, receive: Receive, send: Send, budget: float) -> None:
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
        await _send_problem(
            send,
            ApiProblem(
                503,
                "Service Unavailable",
                f"overloaded ({reason}): {self.in_flight} requests in flight, "
                f"{len(self.waiters)} queued (limits {lim.max_in_flight}/{lim.max_queue})",
                fix=f"retry after {lim.retry_after_s} s",
                retry_after=lim.retry_after_s,
            ),
            [(b"x-onshi-overload", reason.encode())],
        )

    async def _reject_facility(self, send: Send, code: bytes, held: int) -> None:
        lim = self.limits
        facility = code.decode("latin-1") if code.isdigit() and len(code) <= 16 else "?"
        await _send_problem(
            send,
            ApiProblem(
                429,
                "Too Many Requests",
                f"facility {facility} already has {held} requests in flight or queued on this "
                f"worker; a facility's cap is {lim.max_per_facility}",
                field=FACILITY_HEADER,
                fix=f"send fewer requests at once; retry after {lim.retry_after_s} s",
                retry_after=lim.retry_after_s,
            ),
            [(b"x-onshi-overload", b"facility-cap")],
        )


async def _send_problem(
    send: Send, problem: ApiProblem, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = orjson.dumps(problem.body())
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    if problem.retry_after:
        headers.append((b"retry-after", str(problem.retry_after).encode()))
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
