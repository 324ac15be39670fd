"""Fault injection: the config model, the decision rules, and each fault seen by a real client.

The in-process tests drive `FaultInjector` as an ASGI app with an injected clock and sleep, so
outage windows such as 2025-02-13 11:06-11:35 JST are checked without waiting. The server tests
run the real stack (uvicorn + httptools + the middleware) in a subprocess with `probe_app` below
as the API, and observe every fault from `http.client`, the way a reader would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import json
import math
import os
import random
import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from onshi.backend.admin import outage_mode_enabled
from onshi.backend.faults import (
    ABORT_SCOPE_KEY,
    FaultConfig,
    FaultConfigError,
    FaultInjector,
    FaultKind,
    Latency,
    LatencyKind,
    RouteClass,
    classify_route,
    decide,
)
from onshi.backend.server import RunningServer, start_server

HERE = Path(__file__).resolve().parent
JST = dt.timezone(dt.timedelta(hours=9))
ADMIN = "admin-test-token"


HOLD_PATH = "/v1/hold"
"""A probe request to this path stays in flight until :func:`release_held` is called."""


def release_file(db_path: str | os.PathLike[str]) -> Path:
    return Path(db_path).with_suffix(".release")


def _db_path(server: RunningServer) -> str:
    args = server.process.args
    return str(args[args.index("--db") + 1])  # type: ignore[union-attr]


def release_held(server: RunningServer) -> None:
    """Let every request held at :data:`HOLD_PATH` (now and later) answer."""
    release_file(_db_path(server)).touch()


def wait_until_held(server: RunningServer) -> bool:
    """Block until a request has reached the app at :data:`HOLD_PATH` (the deadline only
    guards against a hang)."""
    held = Path(_db_path(server)).with_suffix(".held")
    deadline = time.monotonic() + 60
    while not held.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return held.exists()


def probe_app(*, db_path: str) -> Any:
    """The API stand-in for fault tests: 200 with the path, the worker pid and the outage-mode
    flag the admin layer set, for any route. Requests to :data:`HOLD_PATH` wait for
    :func:`release_held`, so a test can keep requests in flight without racing a clock."""
    release = release_file(db_path)
    held = Path(db_path).with_suffix(".held")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        if scope["path"] == HOLD_PATH:
            held.touch()
        while scope["path"] == HOLD_PATH and not release.exists():
            await asyncio.sleep(0.01)
        outage = outage_mode_enabled(scope)
        body = json.dumps({"path": scope["path"], "pid": os.getpid(), "outage_mode": outage})
        body = body.encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def start_probe_server(
    tmp: Path, *, env: dict[str, str] | None = None, admin_token: str | None = ADMIN, **kwargs: Any
) -> RunningServer:
    """A real server (subprocess, uvicorn) with `probe_app` as its API."""
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    return start_server(
        "test_faults:probe_app",
        db_path=tmp / "control.db",
        admin_token=admin_token,
        env={"PYTHONPATH": path, **(env or {})},
        **kwargs,
    )


def request(
    server: RunningServer, path: str, *, method: str = "POST", timeout: float = 5.0, **kw: Any
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        conn.request(method, path, **kw)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def put_faults(server: RunningServer, config: dict[str, Any]) -> None:
    status, _, body = request(
        server,
        "/admin/faults",
        method="PUT",
        body=json.dumps(config),
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert status == 200, body


# -- the config model --------------------------------------------------------------------------

FULL = {
    "seed": 7,
    "timeout_s": 12,
    "routes": {
        "card": {"latency": {"kind": "lognormal", "mean_ms": 30, "p99_ms": 200}, "error_rate": 0.1},
        "numbers": {"latency": {"kind": "uniform", "low_ms": 1, "high_ms": 5}},
    },
    "default": {"latency": {"kind": "normal", "mean_ms": 10, "sigma_ms": 2}, "reset_rate": 0.01},
    "jpki": {"latency": {"kind": "fixed", "ms": 500}, "error_rate": 0.5, "error_status": 504},
    "outages": [
        {"start": "2025-02-13T11:06:00+09:00", "duration_s": 29 * 60},
        {"after_s": 60, "duration_s": 5, "effect": "timeout", "classes": ["card"]},
    ],
}


def test_config_round_trips_through_json_and_yaml_files(tmp_path: Path) -> None:
    config = FaultConfig.from_dict(FULL)
    assert FaultConfig.from_dict(json.loads(config.to_json())) == config
    (tmp_path / "f.json").write_text(json.dumps(FULL))
    assert FaultConfig.load(tmp_path / "f.json") == config
    (tmp_path / "f.yaml").write_text(
        "seed: 7\ntimeout_s: 12\njpki:\n  error_rate: 0.5\n  error_status: 504\n"
        "  latency: {kind: fixed, ms: 500}\n"
    )
    loaded = FaultConfig.load(tmp_path / "f.yaml")
    assert loaded.jpki == config.jpki and loaded.seed == 7
    assert FaultConfig.load(tmp_path / "f.yaml").layers(RouteClass.NUMBERS) == ()
    (tmp_path / "outage.yaml").write_text(
        "outages:\n  - start: 2025-02-13T11:06:00+09:00  # unquoted: YAML reads a datetime\n"
        "    duration_s: 1740\n"
    )
    begin, end = FaultConfig.load(tmp_path / "outage.yaml").outages[0].window(0.0)
    assert dt.datetime.fromtimestamp(begin, JST) == dt.datetime(2025, 2, 13, 11, 6, tzinfo=JST)
    assert end - begin == 29 * 60
    (tmp_path / "empty.yaml").write_text("")
    assert FaultConfig.load(tmp_path / "empty.yaml").is_empty


@pytest.mark.parametrize(
    ("data", "field", "fix"),
    [
        ({"routes": {"kard": {}}}, "routes.kard", "card"),
        ({"routes": {"card": {"error_rate": 1.5}}}, "routes.card.error_rate", "0.0..1.0"),
        ({"default": {"error_rate": 0.6, "reset_rate": 0.6}}, "default", "lower the rates"),
        ({"jpki": {"error_status": 404}}, "jpki.error_status", "500..599"),
        ({"jpki": {"latency": {"kind": "gamma"}}}, "jpki.latency.kind", "lognormal"),
        ({"default": {"latency": {"kind": "normal", "mean_ms": 5}}}, "default.latency", "p99_ms"),
        (
            {"default": {"latency": {"kind": "lognormal", "mean_ms": 1, "p99_ms": 50}}},
            "p99_ms",
            "14.9",
        ),
        ({"default": {"latency": {"kind": "uniform", "low_ms": 5, "high_ms": 1}}}, "high_ms", ">="),
        ({"outages": [{"duration_s": 5}]}, "outages[0]", "after_s"),
        (
            {"outages": [{"start": "2025-02-13T11:06", "duration_s": 5}]},
            "outages[0].start",
            "+09:00",
        ),
        ({"outages": [{"start": "yesterday", "duration_s": 5}]}, "outages[0].start", "ISO 8601"),
        ({"outages": [{"after_s": 1, "duration_s": 5, "classes": "card"}]}, "classes", "list"),
        ({"outages": [{"after_s": 1, "duration_s": 5, "effect": "fire"}]}, "effect", "reset"),
        ({"seed": "x"}, "seed", "integer"),
        ({"bogus": 1}, "bogus", "one of"),
        ([1, 2], "top level", "key: value"),
    ],
)
def test_bad_configs_name_the_file_the_field_and_the_fix(
    tmp_path: Path, data: Any, field: str, fix: str
) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text(json.dumps(data))
    with pytest.raises(FaultConfigError) as info:
        FaultConfig.load(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and field in text and fix in text
    assert "\n" not in text


def test_unreadable_and_malformed_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(FaultConfigError, match="cannot read"):
        FaultConfig.load(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("routes: {card: [\n")
    with pytest.raises(FaultConfigError, match=r"bad.yaml: not valid YAML/JSON at line \d"):
        FaultConfig.load(tmp_path / "bad.yaml")


# -- latency distributions ---------------------------------------------------------------------


def _samples_ms(latency: Latency, n: int = 40_000) -> list[float]:
    rng = random.Random(11)
    return sorted(latency.sample_s(rng) * 1000.0 for _ in range(n))


def test_fixed_and_uniform_latency() -> None:
    assert set(_samples_ms(Latency(LatencyKind.FIXED, ms=25), 100)) == {25.0}
    xs = _samples_ms(Latency(LatencyKind.UNIFORM, low_ms=10, high_ms=30))
    assert xs[0] >= 10 and xs[-1] <= 30
    assert statistics.mean(xs) == pytest.approx(20, rel=0.02)


@pytest.mark.parametrize(
    "latency",
    [
        Latency(LatencyKind.NORMAL, mean_ms=50, p99_ms=80),
        Latency(LatencyKind.LOGNORMAL, mean_ms=20, p99_ms=100),
    ],
)
def test_mean_and_p99_latencies_hit_both_targets(latency: Latency) -> None:
    xs = _samples_ms(latency)
    assert statistics.mean(xs) == pytest.approx(latency.mean_ms, rel=0.03)
    assert xs[int(0.99 * len(xs))] == pytest.approx(latency.p99_ms, rel=0.06)


def test_lognormal_with_sigma_and_normal_clamped_at_zero() -> None:
    xs = _samples_ms(Latency(LatencyKind.LOGNORMAL, mean_ms=10, sigma=1.0))
    assert statistics.mean(xs) == pytest.approx(10, rel=0.05)
    assert statistics.median(xs) == pytest.approx(10 * math.exp(-0.5), rel=0.05)
    assert min(_samples_ms(Latency(LatencyKind.NORMAL, mean_ms=1, sigma_ms=5))) == 0.0


# -- routing and decisions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/challenges", RouteClass.CARD),
        ("/v1/eligibility/card", RouteClass.CARD),
        ("/v1/eligibility/numbers", RouteClass.NUMBERS),
        ("/v1/eligibility/xml", RouteClass.NUMBERS),
        ("/v1/eligibility/demographics", RouteClass.NUMBERS),
        ("/v1/consents", RouteClass.CONSENT),
        ("/v1/records/medication", RouteClass.RECORDS),
        ("/v1/batches", RouteClass.BATCH),
        ("/v1/batches/20251202000001", RouteClass.BATCH),
        ("/v1/eligibility/public-subsidy", RouteClass.NUMBERS),
        ("/v1/something-new", RouteClass.OTHER),
        ("/healthz", None),
        ("/openapi.json", None),
        ("/admin/faults", None),
    ],
)
def test_route_classes_follow_the_api_paths(path: str, expected: RouteClass | None) -> None:
    assert classify_route(path) is expected


def test_wall_clock_outage_window_of_2025_02_13() -> None:
    config = FaultConfig.from_dict(
        {"outages": [{"start": "2025-02-13T11:06:00+09:00", "duration_s": 29 * 60}]}
    )
    rng = random.Random(0)

    def at(h: int, m: int, s: int = 0) -> FaultKind | None:
        now = dt.datetime(2025, 2, 13, h, m, s, tzinfo=JST).timestamp()
        return decide(config, RouteClass.NUMBERS, now, 0.0, rng).fault

    assert at(11, 5, 59) is None
    assert at(11, 6) is FaultKind.RESET
    assert at(11, 34, 59) is FaultKind.RESET
    assert at(11, 35) is None


def test_relative_outage_counts_from_apply_time_and_only_hits_its_classes() -> None:
    config = FaultConfig.from_dict(
        {"outages": [{"after_s": 10, "duration_s": 5, "effect": "error", "classes": ["card"]}]}
    )
    rng = random.Random(0)
    applied = 1_000_000.0
    card = [
        decide(config, RouteClass.CARD, applied + t, applied, rng).fault for t in (9, 10, 14, 15)
    ]
    assert card == [None, FaultKind.ERROR, FaultKind.ERROR, None]
    assert decide(config, RouteClass.NUMBERS, applied + 12, applied, rng).fault is None


def test_jpki_degradation_layers_on_card_routes_only() -> None:
    config = FaultConfig.from_dict(
        {
            "default": {"latency": {"kind": "fixed", "ms": 2}},
            "jpki": {"latency": {"kind": "fixed", "ms": 300}, "error_rate": 1.0},
        }
    )
    rng = random.Random(0)
    card = decide(config, RouteClass.CARD, 0.0, 0.0, rng)
    assert card.fault is FaultKind.ERROR and card.delay_s == pytest.approx(0.302)
    numbers = decide(config, RouteClass.NUMBERS, 0.0, 0.0, rng)
    assert numbers.fault is None and numbers.delay_s == pytest.approx(0.002)


def test_decisions_are_deterministic_for_a_seed() -> None:
    config = FaultConfig.from_dict(FULL)
    runs = []
    for _ in range(2):
        rng = random.Random(config.seed)
        runs.append([decide(config, RouteClass.CARD, 0.0, 0.0, rng) for _ in range(200)])
    assert runs[0] == runs[1]
    assert any(d.fault for d in runs[0]) and not all(d.fault for d in runs[0])


# -- the middleware in process (injected clock and sleep) --------------------------------------


class Recorder:
    """An in-process ASGI harness: calls the injector and records what the client would get."""

    def __init__(self, injector: FaultInjector) -> None:
        self.injector = injector
        self.sleeps: list[float] = []
        injector.sleep = self._sleep

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def call(self, path: str) -> tuple[str, Any]:
        import asyncio

        sent: list[dict[str, Any]] = []
        aborted: list[bool] = []
        scope = {"type": "http", "path": path, "method": "POST", "headers": []}
        scope[ABORT_SCOPE_KEY] = lambda: aborted.append(True)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        asyncio.run(self.injector(scope, receive, send))
        if aborted:
            return "reset", None
        return "answer", sent[0]["status"]


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_injector_applies_outage_by_injected_clock_and_changes_take_effect_next_request() -> None:
    now = [dt.datetime(2025, 2, 13, 11, 0, tzinfo=JST).timestamp()]
    config = FaultConfig.from_dict(
        {"outages": [{"start": "2025-02-13T11:06:00+09:00", "duration_s": 1740}]}
    )
    rec = Recorder(FaultInjector(ok_app, config, clock=lambda: now[0]))
    assert rec.call("/v1/eligibility/card") == ("answer", 200)
    now[0] += 6 * 60
    assert rec.call("/v1/eligibility/card") == ("reset", None)
    assert rec.call("/healthz") == ("answer", 200)  # never faulted
    assert rec.call("/admin/stats") == ("answer", 200)
    rec.injector.set_config(FaultConfig())
    assert rec.call("/v1/eligibility/card") == ("answer", 200)
    rec.injector.set_config(
        FaultConfig.from_dict({"default": {"timeout_rate": 1.0}, "timeout_s": 9})
    )
    assert rec.call("/v1/consents") == ("reset", None)
    assert rec.sleeps == [9.0]  # held for timeout_s, then dropped
    assert rec.injector.counts == {"reset": 1, "timeout": 1}


def test_injector_delays_and_answers_the_configured_status() -> None:
    config = FaultConfig.from_dict(
        {
            "routes": {
                "batch": {
                    "latency": {"kind": "fixed", "ms": 40},
                    "error_rate": 1.0,
                    "error_status": 502,
                }
            }
        }
    )
    rec = Recorder(FaultInjector(ok_app, config))
    assert rec.call("/v1/batches") == ("answer", 502)
    assert rec.call("/v1/records/diagnosis") == ("answer", 200)
    assert rec.sleeps == [pytest.approx(0.04)]


def test_reset_without_server_hook_breaks_the_response() -> None:
    import asyncio

    sent: list[dict[str, Any]] = []
    injector = FaultInjector(ok_app, FaultConfig.from_dict({"default": {"reset_rate": 1.0}}))

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/v1/consents", "method": "POST", "headers": []}
    asyncio.run(injector(scope, receive, send))
    # A start that promises one body byte, then nothing: the server closes a short response.
    assert [m["type"] for m in sent] == ["http.response.start"]
    assert (b"content-length", b"1") in sent[0]["headers"]


# -- seen from a real client -------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_probe_server(tmp_path_factory.mktemp("faults"))
    try:
        yield srv
    finally:
        srv.stop()


def fault_counts(server: RunningServer) -> dict[str, int]:
    """What this (single-worker) server's fault injector has done so far."""
    status, _, body = request(
        server, "/admin/stats", method="GET", headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert status == 200, body
    counts: dict[str, int] = json.loads(body)["worker"]["faults"]
    return counts


def test_injected_latency_is_at_least_the_configured_amount(server: RunningServer) -> None:
    put_faults(server, {"routes": {"numbers": {"latency": {"kind": "fixed", "ms": 400}}}})
    delayed = fault_counts(server).get("delayed", 0)
    for _ in range(2):
        t0 = time.perf_counter()
        assert request(server, "/v1/eligibility/numbers")[0] == 200
        assert time.perf_counter() - t0 >= 0.400  # a lower bound: no machine beats a sleep
    assert fault_counts(server).get("delayed", 0) == delayed + 2
    assert request(server, "/v1/consents")[0] == 200  # another class: not delayed
    assert fault_counts(server).get("delayed", 0) == delayed + 2


def test_error_rate_within_binomial_tolerance(server: RunningServer) -> None:
    n, p = 400, 0.25
    put_faults(server, {"seed": 5, "default": {"error_rate": p, "error_status": 502}})
    statuses = [request(server, "/v1/consents") for _ in range(n)]
    errors = [s for s in statuses if s[0] != 200]
    assert all(s[0] == 502 and s[1]["x-onshi-fault"] == "error" for s in errors)
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(len(errors) - n * p) <= 4 * sigma, len(errors)
    # Same seed, same sequence: re-applying the config replays it.
    put_faults(server, {"seed": 5, "default": {"error_rate": p, "error_status": 502}})
    again = [request(server, "/v1/consents")[0] for _ in range(n)]
    assert again == [s[0] for s in statuses]


def test_reset_is_a_connection_error_without_any_answer(server: RunningServer) -> None:
    put_faults(server, {"routes": {"card": {"reset_rate": 1.0}}})
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        request(server, "/v1/eligibility/card", body=b"{}")
    # Raw socket: no status line at all, the read ends in ECONNRESET.
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/eligibility/card HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        try:
            data: bytes | None = sock.recv(1024)
        except ConnectionResetError:
            data = None
        assert data is None, f"expected a reset, got {data!r}"  # b"" would be a plain FIN
    assert request(server, "/v1/eligibility/numbers")[0] == 200


def test_timeout_holds_past_the_client_timeout_then_drops(server: RunningServer) -> None:
    put_faults(server, {"timeout_s": 1.0, "routes": {"consent": {"timeout_rate": 1.0}}})
    t0 = time.perf_counter()
    with pytest.raises(TimeoutError):
        request(server, "/v1/consents", timeout=0.3)  # a client that gives up first
    assert time.perf_counter() - t0 >= 0.3
    t0 = time.perf_counter()
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        request(server, "/v1/consents", timeout=5.0)  # a patient client sees the line drop
    assert time.perf_counter() - t0 >= 1.0


def outcome(server: RunningServer, path: str) -> int | str:
    """The status of a request, or "reset" when the line dropped without an answer."""
    try:
        return request(server, path)[0]
    except (ConnectionResetError, http.client.RemoteDisconnected):
        return "reset"


def test_outage_window_relative_to_apply_time(server: RunningServer) -> None:
    """The server applies the window at some instant between the PUT's start and its answer,
    on the same wall clock as ours: requests answered before ``before + duration`` were inside
    it, and from ``after + duration`` on it is certainly over. (An attempt that a stalled
    machine made inconclusive is repeated; the window's arithmetic itself is tested above with
    an injected clock.)"""
    duration = 2.0
    for _attempt in range(5):
        before = time.time()
        put_faults(server, {"outages": [{"after_s": 0, "duration_s": duration}]})
        after = time.time()
        seen = [outcome(server, p) for p in ("/v1/eligibility/numbers", "/v1/batches")]
        health = request(server, "/healthz", method="GET")[0]
        if time.time() < before + duration:
            assert seen == ["reset", "reset"] and health == 200  # health is never faulted
            break
    else:
        pytest.fail("no attempt fitted its requests inside the 2 s outage window")
    time.sleep(max(0.0, after + duration - time.time()) + 0.01)
    assert request(server, "/v1/eligibility/numbers")[0] == 200


def test_jpki_degradation_fails_card_routes_while_numbers_work(server: RunningServer) -> None:
    put_faults(server, {"jpki": {"error_rate": 1.0, "error_status": 503}})
    for path in ("/v1/challenges", "/v1/eligibility/card"):
        assert request(server, path)[0] == 503
    for path in ("/v1/eligibility/numbers", "/v1/eligibility/xml", "/v1/consents"):
        assert request(server, path)[0] == 200


def test_the_documented_example_config_is_valid() -> None:
    import textwrap

    import onshi.backend.faults as faults_module

    doc = faults_module.__doc__ or ""
    block = doc.split("every section is optional:\n\n")[1].split("\n\n")[0]
    config = FaultConfig.from_dict(yaml.safe_load(textwrap.dedent(block)), source="docstring")
    assert config.jpki is not None and len(config.outages) == 2
    assert config.layers(RouteClass.CARD)[-1] is config.jpki


# -- property: any JSON is either a valid config or one FaultConfigError -----------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["card", "numbers", "fixed", "lognormal", "reset"]),
)
_keys = st.sampled_from(
    [
        "seed",
        "routes",
        "default",
        "jpki",
        "outages",
        "timeout_s",
        "card",
        "batch",
        "latency",
        "kind",
        "ms",
        "mean_ms",
        "p99_ms",
        "sigma",
        "sigma_ms",
        "low_ms",
        "high_ms",
        "error_rate",
        "error_status",
        "timeout_rate",
        "reset_rate",
        "start",
        "after_s",
        "duration_s",
        "effect",
        "classes",
        "bogus",
    ]
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(_json)
def test_any_input_is_a_config_or_one_clear_error(data: Any) -> None:
    try:
        config = FaultConfig.from_dict(data, source="fuzz.yaml")
    except FaultConfigError as exc:
        assert str(exc).startswith("fuzz.yaml: ") and "(fix: " in str(exc)
        return
    assert FaultConfig.from_dict(json.loads(config.to_json())) == config
