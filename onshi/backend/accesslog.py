"""The backend's access log and logging set-up: one line per request, safe and cheap.

Safe: a request line can neither forge log lines nor carry personal data. The path is logged
segment by segment against the route table (the contract's paths): fixed segments as they are,
a path parameter only when it has its identifier's shape (a record kind from its enum, an
18-digit 受付番号), anything else as `{masked}`; the query string is never logged. Every other
log line goes through `SafeFormatter` (installed by `log_config` for uvicorn's and onshi's
loggers), which escapes control characters (CR, LF, C0, C1 with NEL, U+2028/2029, bidi and other
non-printables), so one record is always one line.

Cheap: the `logging` record machinery (a LogRecord, caller lookup, formatting, a lock and a
write per line) cost about as much as a light request. `AccessLog` builds a compact line itself
and batches lines into one record per pipe-atomic chunk (at most `PIPE_BUF` bytes, so workers
sharing a pipe never interleave inside a line), flushed when the chunk is full, by a loop timer
(`FLUSH_INTERVAL_S`), on lifespan shutdown, and at exit. An access line can therefore follow
another logger's line of a later moment; its timestamp is the request's.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import functools
import ipaddress
import logging
import os
import select
import time
import weakref
from collections.abc import Callable
from typing import Any

from onshi.backend.codes import ConsentKind
from onshi.backend.contract import openapi_document
from onshi.backend.faults import ASGIApp, Message, Receive, Scope, Send, classify_route

ACCESS_LOG = logging.getLogger("onshi.backend.access")
log = logging.getLogger("onshi.backend")

MASK = "{masked}"
"""What a path segment (or a client address) without a known identifier shape logs as."""
MAX_LOGGED_SEGMENTS = 8
"""Segments beyond this many (no route has more than 4) log as one `{+N}`."""
FLUSH_INTERVAL_S = 0.2
"""How long an access line may wait in the buffer before it is written."""
ENV_FLUSH_INTERVAL = "ONSHI_ACCESS_LOG_FLUSH_S"
"""Overrides `FLUSH_INTERVAL_S` in a server process (tests set it high to prove that the
shutdown flush, not the timer, writes the last lines)."""
CHUNK_BYTES = getattr(select, "PIPE_BUF", 4096)
"""Largest write: below PIPE_BUF, concurrent workers' writes to one pipe never interleave."""
PREFORMATTED = "onshi_preformatted"
"""LogRecord attribute marking a batch of complete, already safe access lines."""

EXTRA_ROUTES = ("/admin/stats",)
"""Routes served outside the contract (`admin.AdminApp`)."""
RECEPTION_NUMBER_DIGITS = 18
"""受付番号: the submission day `YYYYMMDD` and a 10-digit sequence (`Store.create_batch`)."""
PARAMETER_SHAPES: dict[str, Callable[[str], bool]] = {
    "kind": frozenset(k.value for k in ConsentKind).__contains__,
    "reception_number": lambda s: len(s) == RECEPTION_NUMBER_DIGITS and s.isascii() and s.isdigit(),
}
"""Path parameters logged as they are when they have this shape; any other is masked."""

# -- escaping -----------------------------------------------------------------------------------

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(c: str) -> str:
    if c.isprintable():
        return c
    if c in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[c]
    code = ord(c)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def escape_control(text: str) -> str:
    """`text` on one line: every non-printable character (CR, LF, other C0 and C1 controls,
    NEL, U+2028/2029, bidi overrides, non-ASCII spaces) as a Python-style escape, so logged input
    can never start a line of its own or hide what follows."""
    if text.isprintable():
        return text
    return "".join(map(_escape_char, text))


class SafeFormatter(logging.Formatter):
    """A `logging.Formatter` whose output is one line: the message, its arguments and any
    traceback escaped by `escape_control`. Access-log batches (already safe) pass through."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, PREFORMATTED, False):
            return record.getMessage()
        return escape_control(super().format(record))


# -- paths --------------------------------------------------------------------------------------


@functools.cache
def _route_table() -> tuple[frozenset[str], dict[tuple[str, ...], str]]:
    """The fixed segments of every route, and which parameter sits after which prefix (the
    contract's paths are the route table)."""
    literals: set[str] = set()
    parameters: dict[tuple[str, ...], str] = {}
    for template in (*openapi_document()["paths"], *EXTRA_ROUTES):
        segments = template.strip("/").split("/")
        for i, seg in enumerate(segments):
            if seg.startswith("{") and seg.endswith("}"):
                parameters[tuple(segments[:i])] = seg[1:-1]
            else:
                literals.add(seg)
    return frozenset(literals), parameters


def redact_path(path: str) -> str:
    """`path` with every segment that is not a route's fixed segment, nor a path parameter of
    its identifier's shape in its place, replaced by `{masked}`; at most `MAX_LOGGED_SEGMENTS`.

    Names, numbers (被保険者番号, 個人番号), tokens and injected control characters therefore
    never reach the log, while the route stays readable."""
    literals, parameters = _route_table()
    segments = path.split("/")
    out = segments[:1] if segments[0] in literals or not segments[0] else [MASK]
    for i, seg in enumerate(segments[1:], start=1):
        if i > MAX_LOGGED_SEGMENTS:
            out.append(f"{{+{len(segments) - i}}}")
            break
        if seg in literals or not seg:
            out.append(seg)
            continue
        name = parameters.get(tuple(segments[1:i]))
        shape = PARAMETER_SHAPES.get(name) if name else None
        out.append(seg if shape is not None and shape(seg) else MASK)
    return "/".join(out)


_CACHED_PATH_CHARS = 256


@functools.lru_cache(maxsize=1024)
def _path_fields(path: str) -> tuple[str, str]:
    """The redacted path and the route class of an access line (cached: a server sees few
    distinct paths; longer ones are computed each time rather than evict the routes)."""
    route_class = classify_route(path)
    return redact_path(path), route_class.value if route_class is not None else "-"


@functools.lru_cache(maxsize=256)
def _client_host(host: str) -> str:
    """The client's address if it is one: uvicorn takes `X-Forwarded-For` from loopback peers
    as the client, so this field is caller-controlled text too."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return MASK


_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)


# -- buffered output ----------------------------------------------------------------------------


class LineBuffer:
    """Access lines waiting to be logged: one `logging` record per chunk of whole lines, so
    levels, handlers and formatters configured for `logger` still decide where they go."""

    def __init__(
        self,
        logger: logging.Logger = ACCESS_LOG,
        *,
        flush_interval_s: float | None = None,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self.logger = logger
        self.flush_interval_s = (
            flush_interval_s if flush_interval_s is not None else _flush_interval_from_env()
        )
        self.chunk_bytes = chunk_bytes
        self._lines: list[str] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None
        _BUFFERS.add(self)

    def __len__(self) -> int:
        return len(self._lines)

    def add(self, line: str) -> None:
        """Queue one complete line (no newline); write at once when the chunk is full, else
        within `flush_interval_s` (a timer on the running loop)."""
        size = len(line) + 1
        if self._size + size > self.chunk_bytes:
            self.flush()
        self._lines.append(line)
        self._size += size
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(
                self.flush_interval_s, self._on_timer
            )

    def _on_timer(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """Hand every queued line to the logger's handlers now (one record)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        text = "\n".join(self._lines)
        self._lines = []
        self._size = 0
        record = self.logger.makeRecord(
            self.logger.name, logging.INFO, __file__, 0, text, None, None
        )
        setattr(record, PREFORMATTED, True)
        self.logger.handle(record)


_BUFFERS: weakref.WeakSet[LineBuffer] = weakref.WeakSet()


def _flush_interval_from_env() -> float:
    raw = os.environ.get(ENV_FLUSH_INTERVAL)
    if raw is None:
        return FLUSH_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 < value < float("inf"):
        log.warning(
            "%s=%r is not a positive number of seconds: using %s",
            ENV_FLUSH_INTERVAL,
            raw,
            FLUSH_INTERVAL_S,
        )
        return FLUSH_INTERVAL_S
    return value


@atexit.register
def _flush_all() -> None:
    """Backstop for apps without lifespan support (runs before `logging.shutdown`)."""
    for buffer in list(_BUFFERS):
        buffer.flush()


# -- the middleware -----------------------------------------------------------------------------


class AccessLog:
    """ASGI middleware: one line per request (client, method, redacted path, status, ms, route
    class), batched in `lines`; `counts` are the per-status counters `/admin/stats` shows."""

    def __init__(self, app: ASGIApp, *, lines: LineBuffer | None = None) -> None:
        self.app = app
        self.counts: collections.Counter[str] = collections.Counter()
        self.lines = lines if lines is not None else LineBuffer()
        self._logger = self.lines.logger
        self._second = -1
        self._stamp = ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
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
            if self._logger.isEnabledFor(logging.INFO):
                self.lines.add(self._line(scope, status, time.perf_counter() - started))

    def _line(self, scope: Scope, status: int, seconds: float) -> str:
        """The access line, in `log_config`'s format; every field is safe by construction."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        path: str = scope["path"]
        path_part, route_class = (
            _path_fields(path)
            if len(path) <= _CACHED_PATH_CHARS
            else _path_fields.__wrapped__(path)
        )
        client = scope.get("client")
        method: str = scope["method"]
        return (
            f"{self._stamp},{int((now - second) * 1000):03d} INFO {self._logger.name} "
            f"{_client_host(client[0]) if client else '-'} "
            f'"{method if method in _METHODS else MASK} {path_part}" {status or "-"} '
            f"{seconds * 1000.0:.1f}ms {route_class}"
        )

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the lifespan through, flushing the lines when shutdown completes (uvicorn
        re-raises SIGTERM after a graceful stop, so atexit handlers never run then). An app
        without lifespan support is stood in for, so the flush still happens."""
        received: list[str] = []
        answered = False

        async def receive_seen() -> Message:
            message = await receive()
            received.append(message["type"])
            return message

        async def send_flushing(message: Message) -> None:
            nonlocal answered
            if message["type"].startswith("lifespan.shutdown."):
                self.lines.flush()
            answered = answered or message["type"].startswith("lifespan.startup.")
            await send(message)

        try:
            await self.app(scope, receive_seen, send_flushing)
        except Exception as exc:
            if answered:
                raise
            log.info("the app has no lifespan support (%s): the access log stands in", exc)
        if answered:
            return
        if "lifespan.startup" not in received:
            await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        self.lines.flush()
        await send({"type": "lifespan.shutdown.complete"})


def log_config(level: str) -> dict[str, Any]:
    """The `logging.config.dictConfig` for a server process: uvicorn's and onshi's loggers (and
    anything reaching the root) to stderr, one escaped line per record."""
    fmt = {
        "class": f"{__name__}.SafeFormatter",
        "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
    }
    handler = {"class": "logging.StreamHandler", "formatter": "safe", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"safe": fmt},
        "handlers": {"stderr": handler},
        "root": {"handlers": ["stderr"], "level": "WARNING"},
        "loggers": {
            name: {"handlers": ["stderr"], "level": level.upper(), "propagate": False}
            for name in ("uvicorn", "onshi")
        },
    }
