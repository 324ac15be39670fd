"""The reader's HTTP client for the backend contract (``openapi.yaml``), on ``urllib``.

Why ``urllib`` and this small: a reader makes one request at a time, so the standard library
is enough and keeps the drivers free of extra dependencies. What matters is the mapping to the
events the reader judges (:func:`~onshi.reader.drivers.backend_event`): any HTTP answer,
2xx to 5xx, is ``(status, json_or_None)`` and the reader fails closed on what it cannot use;
a timeout is ``"timeout"`` and a refused, reset or unreachable connection is ``"connection"``
(``BackendFailed``). Each call is bounded by the action's own ``timeout_s``. No proxy is ever
used: a reader talks to its backend directly, and ``http_proxy`` in the environment must not
send a loopback backend's requests elsewhere.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from onshi.errors import OnshiError
from onshi.reader.actions import CallBackend
from onshi.reader.drivers import BackendReply, json_body

__all__ = ["HttpBackend"]


class HttpBackend:
    """A :data:`~onshi.reader.drivers.BackendCall` over HTTP with the facility's credential.

    ``base_url`` is the backend's root (``http://127.0.0.1:8000``); ``facility_code`` and
    ``facility_secret`` are sent on every call (``X-Facility-Code`` and a bearer token).
    """

    def __init__(
        self,
        base_url: str,
        *,
        facility_code: str | None = None,
        facility_secret: str | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise OnshiError(
                f"backend URL {base_url!r} is not an http(s) URL",
                fix="give the backend's root, e.g. http://127.0.0.1:8000",
            )
        self.base_url = base_url.rstrip("/")
        self.headers = {"Accept": "application/json"}
        if facility_code is not None:
            self.headers["X-Facility-Code"] = facility_code
        if facility_secret is not None:
            self.headers["Authorization"] = f"Bearer {facility_secret}"
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __call__(self, action: CallBackend) -> BackendReply:
        data = None if action.body is None else json.dumps(action.body).encode("utf-8")
        headers = {**self.headers, **action.headers}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            self.base_url + action.path, data=data, headers=headers, method=action.method
        )
        try:
            with self._opener.open(request, timeout=action.timeout_s) as response:
                return response.status, json_body(response.read())
        except urllib.error.HTTPError as exc:  # 4xx / 5xx: an answer the reader judges
            with exc:
                try:
                    raw = exc.read()
                except (TimeoutError, OSError, http.client.HTTPException):
                    raw = b""
            return exc.code, json_body(raw)
        except urllib.error.URLError as exc:
            return "timeout" if isinstance(exc.reason, TimeoutError) else "connection"
        except TimeoutError:
            return "timeout"
        except (OSError, http.client.HTTPException):
            return "connection"
