"""The backend's access log and logging set-up: one line per request, no personal data."""

from __future__ import annotations

import collections
import logging
import time
from typing import Any

from onshi.backend.faults import ASGIApp, Message, Receive, Scope, Send, classify_route

ACCESS_LOG = logging.getLogger("onshi.backend.access")


def redact_path(path: str) -> str:
    """The path with every segment of 3+ digits or 24+ characters replaced by `{n}` (and no
    query string), so numbers (受付番号, 被保険者番号) and patient tokens never reach the log."""
    return "/".join(
        "{n}" if sum(c.isdigit() for c in seg) >= 3 or len(seg) >= 24 else seg
        for seg in path.split("/")
    )


class AccessLog:
    """ASGI middleware: one log line per request (method, redacted path, status, ms, class)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.counts: collections.Counter[str] = collections.Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.counts["requests"] += 1
            self.counts[f"status_{status // 100}xx" if status else "no_response"] += 1
            if ACCESS_LOG.isEnabledFor(logging.INFO):
                ACCESS_LOG.info(
                    '%s "%s %s" %s %.1fms %s',
                    (scope.get("client") or ("-",))[0],
                    scope["method"],
                    redact_path(scope["path"]),
                    status or "-",
                    (time.perf_counter() - started) * 1000.0,
                    classify_route(scope["path"]) or "-",
                )


def log_config(level: str) -> dict[str, Any]:
    fmt = {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    handler = {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": fmt},
        "handlers": {"stderr": handler},
        "loggers": {
            name: {"handlers": ["stderr"], "level": level.upper(), "propagate": False}
            for name in ("uvicorn", "onshi")
        },
    }
