"""The reader's HTTP backend client: what reaches the server, and how every kind of failure
becomes the event the reader judges (answers keep their status; no answer is a reason)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from onshi.errors import OnshiError
from onshi.reader import actions as act
from onshi.reader import events as ev
from onshi.reader.drivers import backend_event
from onshi.reader.http import HttpBackend


def call(path: str = "/v1/challenges", *, timeout_s: float = 30.0, **kw: Any) -> act.CallBackend:
    return act.CallBackend(
        request_id=7, method="POST", path=path, body=kw.pop("body", {}), timeout_s=timeout_s, **kw
    )


class _Scripted(BaseHTTPRequestHandler):
    """Answers ``POST /<status>/<json|text>`` with that status; records what it received."""

    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        _, status, kind = self.path.split("/")
        payload = json.dumps({"Status": int(status)}).encode() if kind == "json" else b"<html>"
        self.send_response(int(status))
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    _Scripted.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Scripted.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def test_sends_json_with_the_facility_credential_and_the_actions_headers(scripted) -> None:
    url, seen = scripted
    client = HttpBackend(url, facility_code="1310000001", facility_secret="s3cret")
    reply = client(call("/201/json", body={"A": 1}, headers={"Idempotency-Key": "k-1"}))
    assert reply == (201, {"Status": 201})
    (got,) = seen
    assert json.loads(got["body"]) == {"A": 1}
    headers = {k.lower(): v for k, v in got["headers"].items()}
    assert headers["x-facility-code"] == "1310000001"
    assert headers["authorization"] == "Bearer s3cret"
    assert headers["idempotency-key"] == "k-1"
    assert headers["content-type"] == "application/json"


@pytest.mark.parametrize(("path", "expected"), [("/503/json", (503, {"Status": 503})),
                                                ("/502/text", (502, None)),
                                                ("/401/json", (401, {"Status": 401})),
                                                ("/200/text", (200, None))])  # fmt: skip
def test_every_http_answer_keeps_its_status(scripted, path: str, expected: tuple) -> None:
    url, _ = scripted
    reply = HttpBackend(url)(call(path))
    assert reply == expected
    event = backend_event(call(path), reply)
    assert isinstance(event, ev.BackendAnswered) and event.status == expected[0]


def test_a_refused_connection_is_a_connection_failure() -> None:
    with socket.socket() as bound:  # bound, never listening: the kernel refuses at once
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        reply = HttpBackend(f"http://127.0.0.1:{port}")(call())
    assert reply == "connection"
    assert backend_event(call(), reply) == ev.BackendFailed(request_id=7, reason="connection")


def test_a_server_that_never_answers_is_a_timeout() -> None:
    """The listener accepts (in the kernel) and never answers: the call's own timeout ends it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        reply = HttpBackend(f"http://127.0.0.1:{port}")(call(timeout_s=0.2))
    assert reply == "timeout"


def test_a_proxy_in_the_environment_is_never_used(scripted, monkeypatch) -> None:
    """``http_proxy`` pointing nowhere must not divert a reader's backend calls."""
    url, seen = scripted
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{dead.getsockname()[1]}"
        for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
            monkeypatch.setenv(name, proxy)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        assert HttpBackend(url)(call("/200/json")) == (200, {"Status": 200})
    assert len(seen) == 1


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://127.0.0.1/", "http://"])
def test_a_url_that_is_not_http_is_a_user_error(url: str) -> None:
    with pytest.raises(OnshiError) as raised:
        HttpBackend(url)
    assert raised.value.fix
