"""The one HTTP/JSON client of the API: `ha-manager`, the TUI, and (through
`harepl.runtime.apiprobe`) the lab, the demo, the benchmarks and the tests.

Target: a Unix socket path (default /run/harepl/api.sock) or `http://host:port` with a
token. `request` turns every failure into ApiClientError with one line fit for the
operator; `exchange` is the bare round trip (status and body, whatever the status).
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

DEFAULT_SOCKET = "/run/harepl/api.sock"


class ApiClientError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout_s: float) -> None:
        super().__init__("localhost", timeout=timeout_s)
        self._unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def seg(value: str) -> str:
    """One path segment, percent-encoded (sids contain ':')."""
    return quote(value, safe=":@")


class ApiClient:
    def __init__(self, target: str | None = None, token: str | None = None, timeout_s: float = 30.0) -> None:
        self.target = target or DEFAULT_SOCKET
        self.token = token
        self.timeout_s = timeout_s
        if self.target.startswith(("http://", "https://")):
            url = urlsplit(self.target)
            if url.scheme != "http" or not url.hostname:
                raise ApiClientError(f"unsupported API address '{self.target}' (use http://HOST:PORT or a socket path)")
            if not token:
                raise ApiClientError("HAREPL_TOKEN is required with a TCP API address")
            self._host = url.hostname
            self._port = url.port or 80
            self._unix: str | None = None
        else:
            self._unix = self.target

    def _connection(self) -> http.client.HTTPConnection:
        if self._unix is not None:
            return _UnixConnection(self._unix, self.timeout_s)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout_s)

    def exchange(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """One request: (HTTP status, raw body). ApiClientError without a status when the
        daemon cannot be reached or the answer is no HTTP."""
        headers = {"Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        conn = self._connection()
        try:
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc) or type(exc).__name__)
            raise ApiClientError(f"cannot reach the harepl daemon at {self.target}: {reason}") from None
        finally:
            conn.close()
        return resp.status, raw

    def request(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        if query:
            path = f"{path}?{urlencode({k: v for k, v in query.items() if v is not None})}"
        status, raw = self.exchange(method, path, body)
        if path.startswith("/metrics"):
            if status != 200:
                raise ApiClientError(f"metrics: HTTP {status}", status)
            return raw.decode()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            raise ApiClientError(f"the daemon sent a non-JSON answer (HTTP {status})", status) from None
        if status >= 400:
            message = data.get("error") if isinstance(data, dict) else None
            raise ApiClientError(message or f"HTTP {status}", status)
        return data

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query=query or None)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body if body is not None else {})

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)
