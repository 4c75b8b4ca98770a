"""A tiny HTTP/JSON client over a Unix socket, for the lab and the tests' health checks.

(The operator CLI has its own client in `harepl/cli/`; this one exists so that the lab can
wait for a cluster without importing the CLI.)
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any


class ApiUnavailable(RuntimeError):
    pass


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout_s: float) -> None:
        super().__init__("localhost", timeout=timeout_s)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def request_json(sock_path: Path, method: str, path: str, body: Any = None,
                 timeout_s: float = 5.0) -> tuple[int, Any]:
    conn = _UnixHTTPConnection(str(sock_path), timeout_s)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        raise ApiUnavailable(f"{sock_path}: {exc}") from None
    finally:
        conn.close()
    try:
        return resp.status, json.loads(data) if data else None
    except ValueError:
        raise ApiUnavailable(f"{sock_path}{path}: not JSON ({data[:80]!r})") from None


def get_json(sock_path: Path, path: str, timeout_s: float = 5.0) -> Any:
    status, data = request_json(sock_path, "GET", path, timeout_s=timeout_s)
    if status != 200:
        raise ApiUnavailable(f"{sock_path}{path}: HTTP {status}: {data}")
    return data
