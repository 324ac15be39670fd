"""A minimal ASGI layer for the API: requests, responses, exact-path routing and lifespan.

Why not a framework: the card-eligibility path has a budget of a fraction of a millisecond per
request in one process, and a general router, request object and middleware stack cost about
a fifth of it. Every route of the contract is a fixed path or a fixed prefix plus one segment,
so a dict lookup routes; headers are decoded once into a dict. Unknown paths are 404 and known
paths with another method 405 with the ``Allow`` header RFC 9110 requires, both as problem
documents (``on_error``). Any method token is routed this way (TRACE, CONNECT, custom ones).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class BodyTooLarge(Exception):
    """The body exceeds the limit the handler asked for."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body exceeds {limit} bytes")
        self.limit = limit


@dataclass(slots=True)
class Request:
    """One HTTP request: lower-case header names, path parameters, the body on demand."""

    scope: Scope
    receive: Receive
    headers: dict[str, str]
    path: str
    path_params: dict[str, str] = field(default_factory=dict)
    _query: dict[str, str] | None = None

    @property
    def query_params(self) -> dict[str, str]:
        if self._query is None:
            raw = self.scope.get("query_string", b"").decode("latin-1")
            self._query = dict(parse_qsl(raw, keep_blank_values=True))
        return self._query

    async def body(self, limit: int) -> bytes:
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class Response:
    body: bytes
    status: int = 200
    media_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    async def send(self, send: Send) -> None:
        raw = [
            (b"content-type", self.media_type.encode("latin-1")),
            (b"content-length", str(len(self.body)).encode()),
        ]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]
        await send({"type": "http.response.start", "status": self.status, "headers": raw})
        await send({"type": "http.response.body", "body": self.body})


Handler = Callable[[Request], Awaitable[Response]]
ErrorHandler = Callable[[Request, int], Response]


class Router:
    """Routes by exact path, or by a prefix plus one final segment (``/v1/records/{kind}``)."""

    def __init__(
        self,
        *,
        on_error: ErrorHandler,
        lifespan: Callable[[], contextlib.AbstractAsyncContextManager[None]] | None = None,
    ) -> None:
        self._exact: dict[str, dict[str, Handler]] = {}
        self._prefix: dict[str, tuple[str, dict[str, Handler]]] = {}
        self._on_error = on_error
        self._lifespan = lifespan
        self.state: Any = None
        """What the app builder hangs here (the ``Api`` object), for tests and tools."""

    def add(self, method: str, path: str, handler: Handler) -> None:
        if path.endswith("}"):
            prefix, _, name = path.rpartition("/")
            entry = self._prefix.setdefault(prefix + "/", (name.strip("{}"), {}))
            entry[1][method] = handler
        else:
            self._exact.setdefault(path, {})[method] = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._run_lifespan(receive, send)
            return
        if kind != "http":
            return
        path: str = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request = Request(scope, receive, headers, path)
        methods = self._exact.get(path)
        if methods is None:
            prefix, _, last = path.rpartition("/")
            entry = self._prefix.get(prefix + "/") if last else None
            if entry is not None:
                request.path_params[entry[0]] = last
                methods = entry[1]
        if methods is None:
            response = self._on_error(request, 404)
        elif (handler := methods.get(scope["method"])) is not None:
            response = await handler(request)
        else:
            response = method_not_allowed(self._on_error(request, 405), methods)
        await response.send(send)

    async def _run_lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        manager = self._lifespan() if self._lifespan else _nothing()
        try:
            await manager.__aenter__()
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": type(exc).__name__})
            return
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        await manager.__aexit__(None, None, None)
        if message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})


def method_not_allowed(response: Response, methods: Iterable[str]) -> Response:
    """``response`` with ``Allow`` listing the resource's methods (RFC 9110 §15.5.6)."""
    allow = ("Allow", ", ".join(sorted(methods)))
    return dataclasses.replace(response, headers=(*response.headers, allow))


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


def built_on_first_call(factory: Callable[[], Any]) -> Any:
    """An ASGI app that calls ``factory()`` on its first request and serves through its result.

    Why: the served stack holds SQLite connections, which belong to the thread that opened
    them; a test client or embedding host serves from its own event-loop thread, so the stack
    must be built there, as uvicorn builds it in each worker."""
    built: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if not built:
            built.append(factory())
        await built[0](scope, receive, send)

    return app
