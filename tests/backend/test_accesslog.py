"""The access log and the log format: no forged lines, no personal data, no lost lines.

In process: path masking against the route table, escaping, the line buffer and the middleware
(its lines captured by a handler). Through a real server: injection and fixture names sent over
raw sockets, then the log file read after a graceful stop (the shutdown flush writes the last
lines; the flush timer is set far beyond the test so only that flush can have written them).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import signal
import socket
import sqlite3
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from onshi.backend import accesslog
from onshi.backend.accesslog import (
    CHUNK_BYTES,
    ENV_FLUSH_INTERVAL,
    MASK,
    PREFORMATTED,
    AccessLog,
    LineBuffer,
    SafeFormatter,
    escape_control,
    log_config,
    redact_path,
)
from onshi.backend.server import RunningServer, start_server
from onshi.backend.store import Store

OVERLOADED = 503
"""Shed by the server's admission before the app (and its access log) sees the request."""
LINE_START = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
)
"""How every line of a server log begins (`log_config`'s format)."""

LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
"""Everything `str.splitlines` (and many log viewers) treat as the end of a line."""
CONTROLS = "".join(map(chr, [*range(0x20), 0x7F, *range(0x80, 0xA0)])) + "\u2028\u2029\u202e"
INJECTIONS = [
    "x\nFAKE ERROR line",
    "x\r\nFAKE ERROR line",
    "x\rFAKE",
    "x\x85FAKE",
    "x\u2028FAKE",
    "x\u2029FAKE",
    "x\x1b[31mFAKE",
    "x\x00FAKE",
]


def fixture_names(population: Any) -> list[str]:
    """Every name, kana name and address of the seeded population's fixture rows."""
    found: set[str] = set()

    def walk(row: Any) -> None:
        if isinstance(row, dict):
            for key, value in row.items():
                if key in ("name", "name_kana", "address") and isinstance(value, str):
                    found.add(value)
                walk(value)

    for rows in population.fixtures.values():
        for row in rows:
            walk(row)
    assert len(found) > 20
    return sorted(found)


def name_fragments(name: str) -> list[str]:
    """The name and its parts split at the ideographic space (family and given name)."""
    return [name, *name.split("\u3000")]


# -- paths --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/v1/eligibility/card", "/v1/eligibility/card"),
        ("/v1/eligibility/public-subsidy", "/v1/eligibility/public-subsidy"),
        ("/v1/records/medication", "/v1/records/medication"),
        ("/v1/records/Medication", f"/v1/records/{MASK}"),
        ("/v1/batches/202512020000000001", "/v1/batches/202512020000000001"),
        ("/v1/batches/20251202000001", f"/v1/batches/{MASK}"),  # not a 受付番号's 18 digits
        ("/v1/batches/２０２５１２０２００００００００01", f"/v1/batches/{MASK}"),  # not ASCII
        ("/v1/records/202512020000000001", f"/v1/records/{MASK}"),  # the shape, wrong place
        ("/v1/medication/records", f"/v1/{MASK}/records"),
        ("/admin/stats", "/admin/stats"),
        ("/healthz", "/healthz"),
        ("/", "/"),
        ("/v1/p/" + "A" * 40, f"/v1/{MASK}/{MASK}"),
        ("/v1/numbers/06281018/83/1", f"/v1/numbers/{MASK}/{MASK}/{MASK}"),
        ("/a" * 20, "/" + "/".join([MASK] * 8) + "/{+12}"),
    ],
)
def test_paths_log_routes_and_identifier_shapes_only(path: str, logged: str) -> None:
    assert redact_path(path) == logged


@pytest.mark.parametrize("injection", INJECTIONS)
def test_injected_path_segments_are_masked(injection: str) -> None:
    for path in (f"/v1/batches/{injection}", f"/{injection}", f"/v1/records/{injection}/x"):
        redacted = redact_path(path)
        assert "FAKE" not in redacted and redacted.isprintable() and MASK in redacted


def test_no_fixture_name_survives_in_any_path_position(population: Any) -> None:
    for name in fixture_names(population):
        for path in (
            f"/v1/records/{name}",
            f"/v1/batches/{name}",
            f"/{name}",
            f"/v1/{name}/card",
            f"/v1/eligibility/card/{name}",
        ):
            redacted = redact_path(path)
            assert not any(part in redacted for part in name_fragments(name)), (path, redacted)


def test_an_internal_error_logs_the_redacted_path(
    client: Any, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    def broken(self: Any, reception_number: str) -> None:
        raise RuntimeError(f"lookup of {reception_number} failed")

    monkeypatch.setattr(Store, "batch", broken)
    with caplog.at_level(logging.ERROR, logger="onshi.backend"):
        r = client.get("/v1/batches/06281018", headers=headers)  # an insurer-number shape
    assert r.status_code == 500
    [record] = [r for r in caplog.records if r.name == "onshi.backend"]
    assert record.getMessage() == f"internal error RuntimeError on /v1/batches/{MASK}"


# -- escaping -----------------------------------------------------------------------------------


def test_every_control_character_is_escaped_to_one_printable_line() -> None:
    for c in CONTROLS:
        out = escape_control(f"a{c}b")
        assert out.isprintable() and len(out.splitlines()) == 1 and out.startswith("a\\"), repr(c)
    assert escape_control("plain 坂本 text") == "plain 坂本 text"  # printable text unchanged
    assert escape_control("a\nb\r\x85\u2028") == "a\\nb\\r\\x85\\u2028"


def _safe_handler() -> tuple[logging.Handler, io.StringIO]:
    """A handler with the formatter `log_config` installs, writing to a string."""
    spec = log_config("info")["formatters"]["safe"]
    assert spec["class"] == f"{accesslog.__name__}.SafeFormatter"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter(spec["format"]))
    return handler, stream


def test_log_records_are_one_line_whatever_their_arguments_and_tracebacks() -> None:
    handler, stream = _safe_handler()
    logger = logging.getLogger("onshi.test.accesslog.safe")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for injection in INJECTIONS:
            logger.warning("bad input %s", injection)
            try:
                raise ValueError(injection)
            except ValueError:
                logger.exception("failed on %r", injection)
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 * len(INJECTIONS)
    assert all(LINE_START.match(line) and line.isprintable() for line in lines)
    assert sum("Traceback" in line for line in lines) == len(INJECTIONS)


def test_log_config_escapes_uvicorn_onshi_and_root_records() -> None:
    config = log_config("warning")
    assert set(config["loggers"]) == {"uvicorn", "onshi"}
    assert config["root"]["handlers"] == ["stderr"]
    assert {config["handlers"]["stderr"]["formatter"]} == set(config["formatters"]) == {"safe"}


# -- the line buffer ----------------------------------------------------------------------------


class Capture(logging.Handler):
    """Collects records; `emitted` is set on each one, so tests wait on it instead of sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.emitted = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.emitted.set()

    @property
    def lines(self) -> list[str]:
        return [line for r in self.records for line in r.getMessage().split("\n")]


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, Capture]]:
    logger = logging.getLogger("onshi.test.accesslog.capture")
    handler = Capture()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger, handler
    finally:
        logger.removeHandler(handler)


def test_buffer_writes_whole_lines_in_pipe_atomic_chunks(
    capture: tuple[logging.Logger, Capture],
) -> None:
    logger, handler = capture
    lines = [f"line {i} " + "x" * (i % 97) for i in range(1000)]

    async def scenario() -> None:
        buffer = LineBuffer(logger, flush_interval_s=3600.0)
        for line in lines:
            buffer.add(line)
        assert len(buffer) > 0  # the tail waits for the timer or a flush
        buffer.flush()
        assert len(buffer) == 0

    asyncio.run(scenario())
    assert handler.lines == lines
    assert len(handler.records) > 1
    for record in handler.records:
        assert getattr(record, PREFORMATTED) and record.levelno == logging.INFO
        assert len(record.getMessage().encode()) + 1 <= CHUNK_BYTES  # with the newline


def test_buffer_timer_writes_a_lone_line(capture: tuple[logging.Logger, Capture]) -> None:
    logger, handler = capture

    async def scenario() -> None:
        buffer = LineBuffer(logger, flush_interval_s=0.001)
        buffer.add("only line")
        assert handler.records == []  # not written on the request path
        await asyncio.wait_for(handler.emitted.wait(), 30)  # the loop timer writes it

    asyncio.run(scenario())
    assert handler.lines == ["only line"]


def test_flush_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_FLUSH_INTERVAL, "7.5")
    assert LineBuffer().flush_interval_s == 7.5
    monkeypatch.setenv(ENV_FLUSH_INTERVAL, "soon")
    assert LineBuffer().flush_interval_s == accesslog.FLUSH_INTERVAL_S


# -- the middleware in process ------------------------------------------------------------------


async def _answer(scope: Any, receive: Any, send: Any) -> None:
    """An app without lifespan support answering 200 (or 404 off the contract's paths)."""
    if scope["type"] != "http":
        return
    status = 200 if scope["path"].startswith("/v1/") else 404
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _request(app: Any, path: str, client: str = "127.0.0.1") -> None:
    scope = {"type": "http", "method": "GET", "path": path, "client": (client, 5000)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    await app(scope, receive, send)


async def _lifespan(app: Any) -> list[str]:
    """Run the whole lifespan protocol against `app`; the message types it sent."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    sent: list[str] = []

    async def send(message: Any) -> None:
        sent.append(message["type"])

    inbox.put_nowait({"type": "lifespan.startup"})
    task = asyncio.ensure_future(app({"type": "lifespan"}, inbox.get, send))
    while not sent:
        await asyncio.sleep(0)
        assert not task.done() or sent, "the lifespan ended before starting up"
    inbox.put_nowait({"type": "lifespan.shutdown"})
    await asyncio.wait_for(task, 30)
    return sent


def test_middleware_lines_are_safe_and_flushed_at_lifespan_shutdown(
    capture: tuple[logging.Logger, Capture], population: Any
) -> None:
    logger, handler = capture
    names = fixture_names(population)
    paths = [f"/v1/batches/{i}" for i in INJECTIONS] + [f"/v1/records/{n}" for n in names]
    paths += ["/v1/records/checkup", "/x/" * 5000]
    clients = ["127.0.0.1", "::1", names[0], "10.0.0.1\nFAKE"]

    async def scenario() -> list[str]:
        app = AccessLog(_answer, lines=LineBuffer(logger, flush_interval_s=3600.0))
        for i, path in enumerate(paths):
            await _request(app, path, clients[i % len(clients)])
        return await _lifespan(app)

    sent = asyncio.run(scenario())
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    lines = handler.lines
    assert len(lines) == len(paths)
    assert all(LINE_START.match(line) and line.isprintable() for line in lines)
    text = "\n".join(lines)
    assert "FAKE" not in text
    assert not any(part in text for name in names for part in name_fragments(name))
    assert '"GET /v1/records/checkup" 200' in text and " ::1 " in text
    assert max(map(len, lines)) < 200  # a 15,000-character path logs as a short line


def test_middleware_passes_a_real_lifespan_through_and_flushes_before_it_completes(
    capture: tuple[logging.Logger, Capture],
) -> None:
    logger, handler = capture
    seen_at_shutdown: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            assert (await receive())["type"] == "lifespan.startup"
            await send({"type": "lifespan.startup.complete"})
            assert (await receive())["type"] == "lifespan.shutdown"
            await send({"type": "lifespan.shutdown.complete"})
            return
        await _answer(scope, receive, send)

    async def scenario() -> list[str]:
        access = AccessLog(app, lines=LineBuffer(logger, flush_interval_s=3600.0))
        for _ in range(3):
            await _request(access, "/v1/eligibility/card")
        seen_at_shutdown.append(len(handler.records))
        return await _lifespan(access)

    assert asyncio.run(scenario()) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert seen_at_shutdown == [0] and len(handler.lines) == 3


def test_no_line_is_built_when_the_access_log_is_off(
    capture: tuple[logging.Logger, Capture],
) -> None:
    logger, handler = capture
    logger.setLevel(logging.WARNING)

    async def scenario() -> AccessLog:
        app = AccessLog(_answer, lines=LineBuffer(logger))
        await _request(app, "/v1/eligibility/card")
        assert len(app.lines) == 0
        return app

    app = asyncio.run(scenario())
    assert handler.records == [] and app.counts["status_2xx"] == 1


# -- through a real server ----------------------------------------------------------------------


def _copy_db(source: Path, target: Path) -> Path:
    """A private copy of the session population (the server writes its control row)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return target


def _raw(server: RunningServer, target: bytes, headers: bytes = b"") -> int:
    """One request over a raw socket (bytes as given: no client-side quoting); its status."""
    with socket.create_connection((server.host, server.port), timeout=30) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n" + headers)
        s.sendall(b"Connection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data[9:12])


@pytest.fixture
def served(population: Any, tmp_path: Path) -> Iterator[RunningServer]:
    """The real API on the population at the default `serve` log level (info); the flush timer
    set beyond any test, so lines reach the file only when full chunks or the shutdown flush."""
    db = _copy_db(population.path, tmp_path / "population.db")
    server = start_server(
        "onshi.backend.app:server_app",
        db_path=db,
        log_level="info",
        env={ENV_FLUSH_INTERVAL: "3600"},
    )
    try:
        yield server
    finally:
        server.stop()


def _access_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if " INFO onshi.backend.access " in line]


def test_real_server_log_has_no_forged_line_name_or_secret(
    served: RunningServer, population: Any
) -> None:
    facility = population.fixtures["facility"][0]
    auth = f"X-Facility-Code: {facility['code']}\r\nAuthorization: Bearer {facility['secret']}\r\n"
    names = fixture_names(population)
    quoted = [urllib.parse.quote(n) for n in names]
    targets = [b"/v1/batches/x%0AFAKE%20ERROR%20line", b"/v1/batches/x%0D%0AFAKE%0D%0A"]
    targets += [b"/v1/batches/%C2%85FAKE", b"/v1/batches/%E2%80%A8FAKE%E2%80%A9"]
    targets += [f"/v1/records/{q}?PatientReference={q}".encode() for q in quoted]
    targets += [f"/v1/batches/{q}".encode() for q in quoted[:5]]
    targets += [b"/v1/records/medication?PatientReference=" + quoted[0].encode()]
    targets.append(("/" + quoted[1]).encode() * 400)  # a very long path of names
    statuses = [_raw(served, t) for t in targets]
    statuses += [_raw(served, f"/v1/records/{q}".encode(), auth.encode()) for q in quoted[:5]]
    # uvicorn takes X-Forwarded-For from loopback peers as the client address.
    forwarded = ["X-Forwarded-For: " + n for n in names[:3]] + ["X-Forwarded-For: 1.2.3.4\x85FAKE"]
    statuses += [_raw(served, b"/healthz", (h + "\r\n").encode("utf-8")) for h in forwarded]
    raw_non_ascii = _raw(served, f"/v1/records/{names[0]}".encode())  # raw UTF-8 in the target
    assert all(s in (200, 400, 401, 403, 404, 422, OVERLOADED) for s in statuses), statuses
    reached_app = len(statuses) - statuses.count(OVERLOADED)  # a starved machine may shed some
    served.stop()

    log = served.log_text()
    lines = log.splitlines()
    assert all(LINE_START.match(line) and line.isprintable() for line in lines), log[-3000:]
    access = _access_lines(log)
    # One line per request that reached the app (the start-up /healthz probes included).
    probes = sum('"GET /healthz" 200' in line for line in access) - len(forwarded)
    assert probes >= 1 and len(access) == reached_app + probes + (raw_non_ascii != 400)
    assert "FAKE" not in log
    for needle in (facility["secret"], *[p for n in names for p in name_fragments(n)]):
        assert needle not in log, needle
    assert sum(f" {{masked}} {json.dumps('GET /healthz')} 200" in a for a in access) == 4


@pytest.mark.parametrize("workers", [1, 2])
def test_graceful_stop_writes_every_buffered_line(
    population: Any, tmp_path: Path, workers: int
) -> None:
    db = _copy_db(population.path, tmp_path / "population.db")
    server = start_server(
        "onshi.backend.app:server_app",
        db_path=db,
        workers=workers,
        log_level="info",
        env={ENV_FLUSH_INTERVAL: "3600"},
    )
    try:
        n = 300  # several pipe-sized chunks plus a partial one waiting in each worker
        statuses = [_raw(server, b"/v1/records/medication") for _ in range(n)]
    finally:
        assert server.stop() in (0, -signal.SIGTERM)
    answered = statuses.count(401)  # the rest shed as 503 by admission, before the app
    assert answered + statuses.count(OVERLOADED) == n and answered > 0
    access = _access_lines(server.log_text())
    assert sum('"GET /v1/records/medication" 401' in line for line in access) == answered
