"""The guarded admin endpoint and the control state every worker process shares.

Operators change faults and enable the 緊急時医療情報・資格確認機能 (system-outage mode) while a
load test runs. A server has several worker processes, so the state cannot live in one of them:
`ControlStore` keeps it in the backend's SQLite database (table `control`, one row, with a
version number), and `ControlSync` gives each worker a cached copy that re-reads the row when
its version changes, checking at most every 100 ms, so a change made through any worker reaches
all of them within about 0.1 s (and the worker that took the change at once).

Endpoints (all need `Authorization: Bearer <admin token>`: 401 without it, 403 when wrong):
  GET/PUT/DELETE /admin/faults   the active `FaultConfig` (PUT a JSON body; DELETE clears it)
  GET/PUT        /admin/outage-mode   {"enabled": bool}
  GET            /admin/stats   this worker's counters and every worker's last published ones
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from onshi.backend.auth import ApiProblem
from onshi.backend.faults import (
    ActiveFaults,
    ASGIApp,
    FaultConfig,
    FaultConfigError,
    Receive,
    Scope,
    Send,
)
from onshi.errors import OnshiError

OUTAGE_MODE_SCOPE_KEY = "onshi.outage_mode"
"""Scope key set on every request: True while the system-outage (demographic) lookup is enabled."""

MAX_BODY = 1 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS control (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    version     INTEGER NOT NULL,
    faults      TEXT    NOT NULL,   -- FaultConfig.to_json()
    applied_at  REAL    NOT NULL,   -- epoch s; relative outage windows count from here
    outage_mode INTEGER NOT NULL,
    updated_at  REAL    NOT NULL
);
CREATE TABLE IF NOT EXISTS control_worker_stats (
    pid         INTEGER PRIMARY KEY,
    stats       TEXT    NOT NULL,
    updated_at  REAL    NOT NULL
);
"""


def outage_mode_enabled(scope: Mapping[str, Any]) -> bool:
    """Whether the operator has enabled the system-outage lookup (for the API handlers)."""
    return bool(scope.get(OUTAGE_MODE_SCOPE_KEY, False))


@dataclasses.dataclass(frozen=True, slots=True)
class ControlState:
    """One version of the shared control row."""

    version: int
    faults: ActiveFaults
    outage_mode: bool
    updated_at: float


class ControlStore:
    """The `control` table in the backend database (its own connection, WAL like the Store).

    One connection, usable from any thread (`check_same_thread=False`; Python's sqlite3 is
    built serialized): a worker uses it from its event loop only, but test clients (Starlette's,
    schemathesis's) run the app in a portal thread that can differ from the one that built it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(
                self.path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            now = time.time()
            self._db.execute(
                "INSERT OR IGNORE INTO control VALUES (1, 1, ?, ?, 0, ?)",
                (FaultConfig().to_json(), now, now),
            )
        except sqlite3.Error as exc:
            raise OnshiError(
                f"{self.path}: cannot open the control table ({exc})",
                fix="pass a writable --db path in an existing directory",
            ) from None

    def close(self) -> None:
        self._db.close()

    def version(self) -> int:
        """The cheap check workers run (one indexed row)."""
        return int(self._db.execute("SELECT version FROM control WHERE id = 1").fetchone()[0])

    def read(self) -> ControlState:
        version, faults, applied_at, outage, updated = self._db.execute(
            "SELECT version, faults, applied_at, outage_mode, updated_at FROM control WHERE id = 1"
        ).fetchone()
        config = FaultConfig.from_dict(json.loads(faults), source=f"{self.path} control.faults")
        return ControlState(version, ActiveFaults(config, applied_at), bool(outage), updated)

    def _update(self, sql: str, args: tuple[Any, ...]) -> ControlState:
        # One statement (autocommit): the version bump and the change land together.
        self._db.execute(f"UPDATE control SET version = version + 1, {sql} WHERE id = 1", args)
        return self.read()

    def set_faults(self, config: FaultConfig, *, now: float | None = None) -> ControlState:
        """Make `config` active; its relative outage windows count from `now`."""
        t = time.time() if now is None else now
        return self._update("faults = ?, applied_at = ?, updated_at = ?", (config.to_json(), t, t))

    def clear_faults(self, *, now: float | None = None) -> ControlState:
        return self.set_faults(FaultConfig(), now=now)

    def set_outage_mode(self, enabled: bool, *, now: float | None = None) -> ControlState:
        t = time.time() if now is None else now
        return self._update("outage_mode = ?, updated_at = ?", (int(enabled), t))

    def publish_stats(self, pid: int, stats: Mapping[str, Any], *, now: float) -> bool:
        """Best effort, on the request path: skip (False) rather than wait behind a writer."""
        self._db.execute("PRAGMA busy_timeout = 20")
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO control_worker_stats VALUES (?, ?, ?)",
                (pid, json.dumps(stats), now),
            )
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            self._db.execute("PRAGMA busy_timeout = 10000")

    def worker_stats(self, *, since: float) -> dict[int, dict[str, Any]]:
        rows = self._db.execute(
            "SELECT pid, stats FROM control_worker_stats WHERE updated_at >= ?", (since,)
        ).fetchall()
        return {int(pid): json.loads(stats) for pid, stats in rows}


class ControlSync:
    """A worker's cached view of the control row; re-read when the version moves.

    `stats` (optional) is published to the database at most every `publish_s`, so `/admin/stats`
    on any worker can sum all of them.
    """

    def __init__(
        self,
        store: ControlStore,
        *,
        interval_s: float = 0.1,
        publish_s: float = 1.0,
        stats: Callable[[], dict[str, Any]] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.interval_s = interval_s
        self.publish_s = publish_s
        self.stats = stats
        self.monotonic = monotonic
        self.state = store.read()
        self._checked = self._published = monotonic()

    def current(self) -> ControlState:
        t = self.monotonic()
        if t - self._checked >= self.interval_s:
            self._checked = t
            if self.store.version() != self.state.version:
                self.state = self.store.read()
            if self.stats is not None and t - self._published >= self.publish_s:
                self._published = t
                self.store.publish_stats(os.getpid(), self.stats(), now=time.time())
        return self.state

    def faults(self) -> ActiveFaults:
        """For `FaultInjector(config_source=...)`."""
        return self.current().faults

    def adopt(self, state: ControlState) -> None:
        """Take a state this worker just wrote (effective for its next request)."""
        self.state = state


def _sum_numeric(into: dict[str, Any], add: Mapping[str, Any]) -> None:
    for key, value in add.items():
        if isinstance(value, Mapping):
            _sum_numeric(into.setdefault(key, {}), value)
        elif isinstance(value, int | float) and not isinstance(value, bool) and key != "pid":
            into[key] = into.get(key, 0) + value


class AdminApp:
    """ASGI middleware: answers `/admin/*` itself and marks every other request's outage mode."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        control: ControlSync,
        token: str | None,
        stats: Callable[[], dict[str, Any]],
    ) -> None:
        self.app = app
        self.control = control
        self.token = token
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path != "/admin" and not path.startswith("/admin/"):
            scope[OUTAGE_MODE_SCOPE_KEY] = self.control.current().outage_mode
            await self.app(scope, receive, send)
            return
        status, body, extra = await self._handle(scope, receive)
        await _send_json(send, status, body, extra)

    def _auth(self, scope: Scope) -> tuple[int, dict[str, Any]] | None:
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return 401, _problem(
                401,
                "Unauthorized",
                "the admin endpoint needs a bearer token",
                "send Authorization: Bearer <admin token>",
            )
        if self.token is None or not hmac.compare_digest(
            token.strip().encode(), self.token.encode()
        ):
            return 403, _problem(
                403,
                "Forbidden",
                "this token may not use the admin endpoint",
                "use the admin token the server was started with (--admin-token "
                "or ONSHI_ADMIN_TOKEN)",
            )
        return None

    async def _handle(
        self, scope: Scope, receive: Receive
    ) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
        denied = self._auth(scope)
        if denied is not None:
            extra = (
                [(b"www-authenticate", b'Bearer realm="onshi-admin"')] if denied[0] == 401 else []
            )
            return denied[0], denied[1], extra
        method, path = scope["method"], scope["path"].rstrip("/")
        routes: dict[str, tuple[str, ...]] = {
            "/admin/faults": ("GET", "PUT", "DELETE"),
            "/admin/outage-mode": ("GET", "PUT"),
            "/admin/stats": ("GET",),
        }
        if path not in routes:
            return (
                404,
                _problem(
                    404, "Not found", f"no admin resource {path}", f"use one of {sorted(routes)}"
                ),
                [],
            )
        if method not in routes[path]:
            allow = ", ".join(routes[path]).encode()
            return (
                405,
                _problem(
                    405,
                    "Method not allowed",
                    f"{method} is not allowed on {path}",
                    "use " + allow.decode(),
                ),
                [(b"allow", allow)],
            )
        store = self.control.store
        if path == "/admin/stats":
            return 200, self._stats(), []
        if method == "GET":
            return 200, _state_body(self.control.current()), []
        if method == "DELETE":
            state = store.clear_faults()
        else:
            try:
                data = json.loads(await _read_body(receive))
            except (ValueError, OverflowError) as exc:
                return (
                    400,
                    _problem(400, "Malformed JSON", f"the body is not JSON: {exc}", "send JSON"),
                    [],
                )
            if path == "/admin/faults":
                try:
                    config = FaultConfig.from_dict(data, source="PUT /admin/faults body")
                except FaultConfigError as exc:
                    return (
                        422,
                        _problem(422, "Invalid fault configuration", exc.message, exc.fix),
                        [],
                    )
                state = store.set_faults(config)
            else:
                enabled = data.get("enabled") if isinstance(data, dict) else None
                if not isinstance(enabled, bool):
                    return (
                        422,
                        _problem(
                            422,
                            "Invalid request field",
                            "enabled must be true or false",
                            'send {"enabled": true} or {"enabled": false}',
                        ),
                        [],
                    )
                state = store.set_outage_mode(enabled)
        self.control.adopt(state)
        return 200, _state_body(state), []

    def _stats(self) -> dict[str, Any]:
        mine = {"pid": os.getpid(), **self.stats()}
        now = time.time()
        workers: dict[int, dict[str, Any]] = self.control.store.worker_stats(since=now - 10.0)
        workers[os.getpid()] = mine  # live figures beat this worker's last published ones
        total: dict[str, Any] = {}
        for stats in workers.values():
            _sum_numeric(total, stats)
        state = self.control.current()
        return {
            "worker": mine,
            "workers": {str(pid): s for pid, s in sorted(workers.items())},
            "total": total,
            "control_version": state.version,
            "outage_mode": state.outage_mode,
        }


def _state_body(state: ControlState) -> dict[str, Any]:
    return {
        "version": state.version,
        "faults": state.faults.config.to_dict(),
        "applied_at": state.faults.applied_at,
        "outage_mode": state.outage_mode,
    }


def _problem(status: int, title: str, detail: str, fix: str | None) -> dict[str, Any]:
    """The same RFC 9457 document as the API's (type, title, status, detail, fix)."""
    return ApiProblem(status, title, detail, fix=fix).body()


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise ValueError(f"body larger than {MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send_json(
    send: Send, status: int, body: Mapping[str, Any], extra: list[tuple[bytes, bytes]]
) -> None:
    payload = json.dumps(body, ensure_ascii=False).encode()
    kind = b"application/problem+json" if status >= 400 else b"application/json"
    headers = [(b"content-type", kind), (b"content-length", str(len(payload)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
