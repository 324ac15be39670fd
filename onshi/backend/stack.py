"""The middleware stack every served API runs in, outermost first: an access log without
personal data, `/healthz`, the admin endpoint (`admin.AdminApp`), overload protection
(`overload.ConcurrencyLimiter`) and fault injection (`faults.FaultInjector`).

Injected latency therefore holds a concurrency slot, as a slow backend would, and the admin
endpoint and `/healthz` stay reachable when the API is overloaded. This module imports neither
`app` nor `server`: `app.create_app(stack=True)` and the server's workers both build on it, so
imports run one way (app -> stack, server -> stack).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from onshi.backend.accesslog import AccessLog
from onshi.backend.admin import AdminApp, ControlStore, ControlSync
from onshi.backend.auth import ApiProblem
from onshi.backend.faults import ASGIApp, FaultInjector, Receive, Scope, Send
from onshi.backend.overload import DEFAULT_LIMITS, ConcurrencyLimiter, Limits


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


def build_stack(
    inner: ASGIApp,
    *,
    db_path: str | os.PathLike[str],
    admin_token: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    clock: Callable[[], float] = time.time,
    admission_stats: Callable[[], dict[str, Any]] | None = None,
) -> ASGIApp:
    """Wrap an API app in the fault, overload, admin, health and access-log layers.

    The faults and the outage mode come from the database's control row (`run_server` writes
    the start-up ones); `clock` is the wall clock outage windows are judged by.
    `admission_stats` adds the server protocol's counters (requests shed before the app, read
    timeouts) to `/admin/stats` under `admission`.
    """
    store = ControlStore(db_path)
    injector = FaultInjector(inner, clock=clock)
    limiter = ConcurrencyLimiter(injector, limits)
    access: AccessLog

    def stats() -> dict[str, Any]:
        out: dict[str, Any] = {
            "requests": dict(access.counts),
            "overload": limiter.stats(),
            "faults": dict(injector.counts),
        }
        if admission_stats is not None:
            out["admission"] = admission_stats()
        return out

    control = ControlSync(store, stats=stats)
    injector.config_source = control.faults
    admin = AdminApp(limiter, control=control, token=admin_token, stats=stats)
    access = AccessLog(Health(admin, control))
    return access
