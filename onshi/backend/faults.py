"""Controllable faults for the reference backend: the config model and the ASGI middleware.

Operators stress their readers and load tests against a backend that misbehaves on purpose,
the way the real system did (the 29-minute line outage of 2025-02-13 11:06-11:35 JST, JPKI
maintenance windows, slow certificate checks while number lookups still worked). A
`FaultConfig` is plain data (load from YAML/JSON, dump to JSON); `FaultInjector` applies it to
every facility request, deterministically from a seeded RNG, and picks up a new config for the
very next request (`FaultInjector.set_config`, or a `config_source` callable asked on every
request: `admin.ControlSync`, which follows the database's control row).

Route classes: faults are set per class of route, and JPKI-side degradation hits only the
`card` class (the certificate check). `classify_route` maps a path to its class by the
keywords of the API paths (see `ROUTE_KEYWORDS`); `/healthz`, `/openapi.json`, `/docs` and
`/admin/*` are never faulted, so operators can still see and repair a faulted server.

A config file (YAML; JSON is the same structure) - every section is optional:

    seed: 42                       # the RNG seed: the same config replays the same faults
    timeout_s: 15                  # how long a "timeout" holds a request before dropping it
    default:                       # route classes without their own entry
      latency: {kind: lognormal, mean_ms: 20, p99_ms: 120}
    routes:
      numbers: {latency: {kind: uniform, low_ms: 5, high_ms: 15}, error_rate: 0.01}
      batch: {error_rate: 0.05, error_status: 502, reset_rate: 0.01, timeout_rate: 0.01}
    jpki:                          # JPKI-side degradation, on top of the card routes' own faults
      latency: {kind: normal, mean_ms: 800, sigma_ms: 200}
      error_rate: 0.3
    outages:                       # the 2025-02-13 line outage, and one 60 s after applying
      - {start: "2025-02-13T11:06:00+09:00", duration_s: 1740}
      - {after_s: 60, duration_s: 300, effect: timeout, classes: [card, numbers]}

Connection resets: ASGI has no portable way to drop a connection without answering (uvicorn
answers 500 when an app returns without a response), so the server installs an abort hook in
the scope under `ABORT_SCOPE_KEY` (see `onshi.backend.server`). It closes the socket with
SO_LINGER 0, so the client sees ECONNRESET and no status line (verified: http.client raises
ConnectionResetError, httpx ReadError). A timeout is a ReadTimeout for a client that gives up
first, else the same reset once `timeout_s` has passed. Under another ASGI server without the
hook, a reset falls back to starting a response and closing the connection before its body,
which a client also sees as a broken connection (an incomplete read), never as an answer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import json
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from onshi.errors import OnshiError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ABORT_SCOPE_KEY = "onshi.abort"
"""Scope key of a zero-argument callable that resets the client connection (set by the server)."""

Z99 = 2.3263478740408408
"""The standard normal quantile at 0.99: turns a p99 into a sigma."""


class FaultConfigError(OnshiError):
    """A fault configuration that cannot be used; the message names the file and the field."""


class RouteClass(enum.StrEnum):
    """Classes of API routes that faults are set for."""

    CARD = "card"
    NUMBERS = "numbers"
    CONSENT = "consent"
    RECORDS = "records"
    BATCH = "batch"
    OTHER = "other"


# Checked in order: the first keyword found among the path's segments names the class.
ROUTE_KEYWORDS: tuple[tuple[str, RouteClass], ...] = (
    ("batch", RouteClass.BATCH),
    ("batches", RouteClass.BATCH),
    ("records", RouteClass.RECORDS),
    ("record", RouteClass.RECORDS),
    ("consent", RouteClass.CONSENT),
    ("consents", RouteClass.CONSENT),
    ("card", RouteClass.CARD),
    ("challenge", RouteClass.CARD),
    ("challenges", RouteClass.CARD),
    ("numbers", RouteClass.NUMBERS),
    ("xml", RouteClass.NUMBERS),
    ("demographics", RouteClass.NUMBERS),
    ("public-subsidy", RouteClass.NUMBERS),
)
EXEMPT_PREFIXES = ("/admin/", "/healthz", "/openapi.json", "/docs")


def classify_route(path: str) -> RouteClass | None:
    """The route class of `path`, or None for routes that are never faulted (health, admin)."""
    if path.startswith(EXEMPT_PREFIXES) or path == "/admin":
        return None
    segments = {s.lower() for s in path.split("/") if s}
    for keyword, route_class in ROUTE_KEYWORDS:
        if keyword in segments:
            return route_class
    return RouteClass.OTHER


class LatencyKind(enum.StrEnum):
    FIXED = "fixed"
    UNIFORM = "uniform"
    NORMAL = "normal"
    LOGNORMAL = "lognormal"


@dataclass(frozen=True, slots=True)
class Latency:
    """An added-delay distribution, in milliseconds.

    fixed: `ms`; uniform: `low_ms`..`high_ms`; normal: `mean_ms` with `p99_ms` or `sigma_ms`
    (clamped at 0); lognormal: `mean_ms` with `p99_ms` or `sigma` (the log-space sigma).
    """

    kind: LatencyKind
    ms: float = 0.0
    low_ms: float = 0.0
    high_ms: float = 0.0
    mean_ms: float = 0.0
    p99_ms: float | None = None
    sigma_ms: float | None = None
    sigma: float | None = None

    def log_params(self) -> tuple[float, float]:
        """(mu, sigma) of the underlying normal of a lognormal latency, in log-milliseconds."""
        if self.sigma is not None:
            s = self.sigma
        else:
            assert self.p99_ms is not None
            # mean = exp(mu + s^2/2) and p99 = exp(mu + z s) give s^2 - 2 z s + 2 ln(p99/mean) = 0.
            s = Z99 - math.sqrt(Z99 * Z99 - 2.0 * math.log(self.p99_ms / self.mean_ms))
        return math.log(self.mean_ms) - s * s / 2.0, s

    def sample_s(self, rng: random.Random) -> float:
        """One delay in seconds."""
        if self.kind is LatencyKind.FIXED:
            ms = self.ms
        elif self.kind is LatencyKind.UNIFORM:
            ms = rng.uniform(self.low_ms, self.high_ms)
        elif self.kind is LatencyKind.NORMAL:
            sd = self.sigma_ms if self.sigma_ms is not None else (self.p99_ms - self.mean_ms) / Z99  # type: ignore[operator]
            ms = max(0.0, rng.gauss(self.mean_ms, sd))
        else:
            mu, s = self.log_params()
            ms = rng.lognormvariate(mu, s)
        return ms / 1000.0


_LATENCY_FIELDS: dict[LatencyKind, frozenset[str]] = {
    LatencyKind.FIXED: frozenset({"ms"}),
    LatencyKind.UNIFORM: frozenset({"low_ms", "high_ms"}),
    LatencyKind.NORMAL: frozenset({"mean_ms", "p99_ms", "sigma_ms"}),
    LatencyKind.LOGNORMAL: frozenset({"mean_ms", "p99_ms", "sigma"}),
}
"""The fields each latency kind reads (`to_dict` writes these only)."""


class FaultKind(enum.StrEnum):
    """What an injected failure looks like to the client."""

    ERROR = "error"  # an HTTP 5xx answer
    TIMEOUT = "timeout"  # no answer for `timeout_s`, then the connection is dropped
    RESET = "reset"  # the connection is reset without an answer


@dataclass(frozen=True, slots=True)
class RouteFaults:
    """Faults for one class of routes: an added latency and the rates of each failure kind."""

    latency: Latency | None = None
    error_rate: float = 0.0
    error_status: int = 503
    timeout_rate: float = 0.0
    reset_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class Outage:
    """A window during which every request of the given classes fails like a dead line.

    `start` is wall-clock (timezone-aware); `after_s` is relative to when the config was applied.
    """

    duration_s: float
    start: dt.datetime | None = None
    after_s: float | None = None
    effect: FaultKind = FaultKind.RESET
    classes: frozenset[RouteClass] = frozenset(RouteClass)

    def window(self, applied_at: float) -> tuple[float, float]:
        """(begin, end) as epoch seconds."""
        begin = (
            self.start.timestamp() if self.start is not None else applied_at + (self.after_s or 0.0)
        )
        return begin, begin + self.duration_s


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """The whole fault set-up of a backend. The empty config injects nothing."""

    seed: int = 0
    routes: Mapping[RouteClass, RouteFaults] = field(default_factory=dict)
    default: RouteFaults | None = None
    jpki: RouteFaults | None = None
    outages: tuple[Outage, ...] = ()
    timeout_s: float = 15.0

    def layers(self, route_class: RouteClass) -> tuple[RouteFaults, ...]:
        """The fault layers that apply to a class: its own (or the default), then JPKI for cards."""
        own = self.routes.get(route_class, self.default)
        layers = () if own is None else (own,)
        if route_class is RouteClass.CARD and self.jpki is not None:
            layers += (self.jpki,)
        return layers

    @property
    def is_empty(self) -> bool:
        return not self.routes and self.default is None and self.jpki is None and not self.outages

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, accepted back by `FaultConfig.from_dict`."""

        def faults(f: RouteFaults) -> dict[str, Any]:
            d = asdict(f)
            if f.latency is not None:
                # The kind's own fields, zeros included (sigma 0 is a valid spread, and the
                # stored form must read back), without the unused defaults of other kinds.
                used = _LATENCY_FIELDS[f.latency.kind]
                d["latency"] = {
                    k: v for k, v in asdict(f.latency).items() if k in used and v is not None
                }
                d["latency"]["kind"] = str(f.latency.kind)
            return d

        out: dict[str, Any] = {"seed": self.seed, "timeout_s": self.timeout_s}
        out["routes"] = {str(k): faults(v) for k, v in self.routes.items()}
        if self.default is not None:
            out["default"] = faults(self.default)
        if self.jpki is not None:
            out["jpki"] = faults(self.jpki)
        out["outages"] = [
            {
                "duration_s": o.duration_s,
                **({"start": o.start.isoformat()} if o.start else {"after_s": o.after_s}),
                "effect": str(o.effect),
                "classes": sorted(str(c) for c in o.classes),
            }
            for o in self.outages
        ]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "fault config") -> FaultConfig:
        """Validate and build; every error names `source` and the field."""
        return _Parser(source).config(data)

    @classmethod
    def load(cls, path: str | Path) -> FaultConfig:
        """Read a YAML or JSON file (JSON is YAML)."""
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise FaultConfigError(
                f"{p}: cannot read the fault config ({exc.strerror})", fix="pass an existing file"
            ) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise FaultConfigError(
                f"{p}: not valid YAML/JSON{where}", fix="correct the syntax"
            ) from None
        return cls.from_dict(data if data is not None else {}, source=str(p))


@dataclass(frozen=True, slots=True)
class Decision:
    """What the injector does to one request."""

    delay_s: float = 0.0
    fault: FaultKind | None = None
    status: int = 503


def decide(
    config: FaultConfig, route_class: RouteClass, now: float, applied_at: float, rng: random.Random
) -> Decision:
    """Pure decision for one request: outages first, then each layer's latency and failures."""
    for outage in config.outages:
        if route_class in outage.classes:
            begin, end = outage.window(applied_at)
            if begin <= now < end:
                return Decision(fault=outage.effect, status=503)
    delay = 0.0
    for layer in config.layers(route_class):
        if layer.latency is not None:
            delay += layer.latency.sample_s(rng)
        u = rng.random()
        for rate, kind in (
            (layer.error_rate, FaultKind.ERROR),
            (layer.timeout_rate, FaultKind.TIMEOUT),
            (layer.reset_rate, FaultKind.RESET),
        ):
            if u < rate:
                return Decision(delay_s=delay, fault=kind, status=layer.error_status)
            u -= rate
    return Decision(delay_s=delay)


@dataclass(frozen=True, slots=True)
class ActiveFaults:
    """A config with the epoch its relative outage windows count from."""

    config: FaultConfig
    applied_at: float


class FaultInjector:
    """ASGI middleware that applies the active `FaultConfig` to facility requests.

    `config_source`, when given, is asked for the active faults on every request (it must be
    cheap: `ControlSync` in admin.py caches and re-reads the database at most every 100 ms);
    otherwise `self.active` is used and can be replaced at any time.
    """

    def __init__(
        self,
        app: ASGIApp,
        config: FaultConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        config_source: Callable[[], ActiveFaults] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.app = app
        self.clock = clock
        self.sleep = sleep
        self.config_source = config_source
        cfg = config or FaultConfig()
        self.active = ActiveFaults(cfg, clock())
        self.rng = rng if rng is not None else random.Random(cfg.seed)
        self._rng_for: FaultConfig | None = cfg if rng is not None else None
        self.counts: Counter[str] = Counter()

    def set_config(self, config: FaultConfig, applied_at: float | None = None) -> None:
        """Replace the active config (effective for the next request)."""
        self.active = ActiveFaults(config, self.clock() if applied_at is None else applied_at)

    def _current(self) -> ActiveFaults:
        active = self.config_source() if self.config_source is not None else self.active
        if active.config is not self._rng_for:
            # A new config reseeds, so a run with a given config is reproducible.
            self.rng = random.Random(active.config.seed)
            self._rng_for = active.config
        return active

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        active = self._current()
        route_class = None if active.config.is_empty else classify_route(scope["path"])
        if route_class is None:
            await self.app(scope, receive, send)
            return
        d = decide(active.config, route_class, self.clock(), active.applied_at, self.rng)
        if d.delay_s > 0:
            self.counts["delayed"] += 1
            await self.sleep(d.delay_s)
        if d.fault is None:
            await self.app(scope, receive, send)
            return
        self.counts[str(d.fault)] += 1
        if d.fault is FaultKind.ERROR:
            await _send_error(send, d.status)
            return
        if d.fault is FaultKind.TIMEOUT:
            await self.sleep(active.config.timeout_s)
        await _reset(scope, send)


async def _send_error(send: Send, status: int) -> None:
    body = json.dumps({"error": "injected fault", "status": status}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-onshi-fault", b"error"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _reset(scope: Scope, send: Send) -> None:
    abort = scope.get(ABORT_SCOPE_KEY)
    if abort is not None:
        abort()
        return
    # No hook: announce a body and close before sending it; the client sees a broken read.
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1")]}
    )


class _Parser:
    """Validation of the YAML/JSON form, with errors that name the source, the field and a fix."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str, fix: str) -> FaultConfigError:
        return FaultConfigError(f"{self.source}: {where}: {problem}", fix=fix)

    def mapping(self, data: Any, where: str, allowed: set[str]) -> Mapping[str, Any]:
        if not isinstance(data, Mapping):
            raise self.fail(
                where, f"expected a mapping, got {type(data).__name__}", "write key: value pairs"
            )
        unknown = sorted(set(map(str, data)) - allowed)
        if unknown:
            raise self.fail(
                f"{where}.{unknown[0]}", "unknown field", f"use one of {sorted(allowed)}"
            )
        return data

    def number(
        self,
        data: Mapping[str, Any],
        key: str,
        where: str,
        *,
        lo: float = 0.0,
        hi: float = math.inf,
        default: float | None = None,
    ) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value is None:
            raise self.fail(f"{where}.{key}", f"expected a number, got {value!r}", "give a number")
        if not lo <= value <= hi or math.isnan(value):
            raise self.fail(f"{where}.{key}", f"{value} is out of range", f"use {lo}..{hi}")
        return float(value)

    def config(self, data: Any) -> FaultConfig:
        keys = {"seed", "routes", "default", "jpki", "outages", "timeout_s"}
        d = self.mapping(data, "top level", keys)
        seed = d.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise self.fail("seed", f"expected an integer, got {seed!r}", "give an integer seed")
        raw_routes = d.get("routes")  # null is "none"; [] or 0 is not a mapping (422)
        routes_in = self.mapping(
            {} if raw_routes is None else raw_routes, "routes", {str(c) for c in RouteClass}
        )
        routes = {RouteClass(k): self.faults(v, f"routes.{k}") for k, v in routes_in.items()}
        outages = [] if d.get("outages") is None else d["outages"]
        if not isinstance(outages, list):
            raise self.fail("outages", "expected a list", "write a YAML list of outage windows")
        return FaultConfig(
            seed=seed,
            routes=routes,
            default=self.faults(d["default"], "default") if d.get("default") is not None else None,
            jpki=self.faults(d["jpki"], "jpki") if d.get("jpki") is not None else None,
            outages=tuple(self.outage(o, f"outages[{i}]") for i, o in enumerate(outages)),
            timeout_s=self.number(d, "timeout_s", "top level", lo=0.001, hi=3600, default=15.0),
        )

    def faults(self, data: Any, where: str) -> RouteFaults:
        keys = {"latency", "error_rate", "error_status", "timeout_rate", "reset_rate"}
        d = self.mapping(data, where, keys)
        rates = [
            self.number(d, k, where, hi=1.0, default=0.0)
            for k in ("error_rate", "timeout_rate", "reset_rate")
        ]
        if sum(rates) > 1.0 + 1e-9:
            raise self.fail(
                where,
                f"error, timeout and reset rates add up to {sum(rates)} > 1",
                "lower the rates",
            )
        status = d.get("error_status", 503)
        if isinstance(status, bool) or not isinstance(status, int) or not 500 <= status <= 599:
            raise self.fail(
                f"{where}.error_status", f"{status!r} is not a 5xx status", "use 500..599"
            )
        latency = d.get("latency")
        return RouteFaults(
            latency=self.latency(latency, f"{where}.latency") if latency is not None else None,
            error_rate=rates[0],
            error_status=status,
            timeout_rate=rates[1],
            reset_rate=rates[2],
        )

    def latency(self, data: Any, where: str) -> Latency:
        keys = {"kind", "ms", "low_ms", "high_ms", "mean_ms", "p99_ms", "sigma_ms", "sigma"}
        d = self.mapping(data, where, keys)
        try:
            kind = LatencyKind(d.get("kind"))
        except ValueError:
            raise self.fail(
                f"{where}.kind",
                f"unknown latency kind {d.get('kind')!r}",
                f"use one of {[str(k) for k in LatencyKind]}",
            ) from None
        num = lambda key, **kw: self.number(d, key, where, hi=3_600_000, **kw)  # noqa: E731
        if kind is LatencyKind.FIXED:
            return Latency(kind, ms=num("ms"))
        if kind is LatencyKind.UNIFORM:
            low, high = num("low_ms"), num("high_ms")
            if high < low:
                raise self.fail(
                    f"{where}.high_ms", f"{high} < low_ms {low}", "make high_ms >= low_ms"
                )
            return Latency(kind, low_ms=low, high_ms=high)
        spread = "sigma_ms" if kind is LatencyKind.NORMAL else "sigma"
        if ("p99_ms" in d) == (spread in d):
            raise self.fail(
                where,
                f"a {kind} latency needs exactly one of p99_ms and {spread}",
                f"give mean_ms and either p99_ms or {spread}",
            )
        mean = num("mean_ms", lo=0.0 if kind is LatencyKind.NORMAL else 1e-6)
        if spread in d:
            return Latency(kind, mean_ms=mean, **{spread: num(spread)})
        p99 = num("p99_ms")
        if p99 < mean:
            raise self.fail(
                f"{where}.p99_ms", f"{p99} is below mean_ms {mean}", "make p99_ms >= mean_ms"
            )
        if kind is LatencyKind.LOGNORMAL and math.log(p99 / mean) > Z99 * Z99 / 2:
            raise self.fail(
                f"{where}.p99_ms",
                f"no lognormal has mean {mean} and p99 {p99}",
                "keep p99_ms below 14.9 x mean_ms, or give sigma",
            )
        return Latency(kind, mean_ms=mean, p99_ms=p99)

    def outage(self, data: Any, where: str) -> Outage:
        keys = {"start", "after_s", "duration_s", "effect", "classes"}
        d = self.mapping(data, where, keys)
        duration = self.number(d, "duration_s", where, lo=0.0, hi=366 * 86400, default=None)
        d = {k: v for k, v in d.items() if v is not None}
        if ("start" in d) == ("after_s" in d):
            raise self.fail(
                where,
                "an outage needs exactly one of start and after_s",
                "give start (ISO 8601 with offset) or after_s (seconds after apply)",
            )
        start = None
        if "start" in d:
            raw = d["start"]
            try:
                start = raw if isinstance(raw, dt.datetime) else dt.datetime.fromisoformat(str(raw))
            except ValueError:
                raise self.fail(
                    f"{where}.start",
                    f"{raw!r} is not an ISO 8601 time",
                    "write e.g. 2025-02-13T11:06:00+09:00",
                ) from None
            if start.tzinfo is None:
                raise self.fail(
                    f"{where}.start",
                    "the time has no UTC offset",
                    "add the offset, e.g. +09:00 for JST",
                )
        after = self.number(d, "after_s", where, hi=366 * 86400) if "after_s" in d else None
        try:
            effect = FaultKind(d.get("effect", "reset"))
        except ValueError:
            raise self.fail(
                f"{where}.effect",
                f"unknown effect {d.get('effect')!r}",
                f"use one of {[str(k) for k in FaultKind]}",
            ) from None
        classes_in = d.get("classes", [str(c) for c in RouteClass])
        if isinstance(classes_in, str) or not isinstance(classes_in, list):
            raise self.fail(
                f"{where}.classes",
                "expected a list of route classes",
                f"use a list of {[str(c) for c in RouteClass]}",
            )
        try:
            classes = frozenset(RouteClass(c) for c in classes_in)
        except ValueError as exc:
            raise self.fail(
                f"{where}.classes",
                str(exc),
                f"use route classes from {[str(c) for c in RouteClass]}",
            ) from None
        return Outage(
            duration_s=duration, start=start, after_s=after, effect=effect, classes=classes
        )
