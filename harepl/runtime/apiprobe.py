"""JSON requests to a node's API socket for the lab, the demo, the benchmarks and the
tests' health checks: (status, data) whatever the status, `ApiUnavailable` when the
daemon cannot be reached or does not answer JSON.

A thin layer over the one API client (`harepl.runtime.api.client.ApiClient`), which
`ha-manager` and the TUI use too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harepl.runtime.api.client import ApiClient, ApiClientError


class ApiUnavailable(RuntimeError):
    pass


def request_json(sock_path: Path, method: str, path: str, body: Any = None,
                 timeout_s: float = 5.0) -> tuple[int, Any]:
    try:
        status, data = ApiClient(str(sock_path), timeout_s=timeout_s).exchange(method, path, body)
    except ApiClientError as exc:
        raise ApiUnavailable(f"{sock_path}: {exc.message}") from None
    try:
        return status, json.loads(data) if data else None
    except ValueError:
        raise ApiUnavailable(f"{sock_path}{path}: not JSON ({data[:80]!r})") from None


def get_json(sock_path: Path, path: str, timeout_s: float = 5.0) -> Any:
    status, data = request_json(sock_path, "GET", path, timeout_s=timeout_s)
    if status != 200:
        raise ApiUnavailable(f"{sock_path}{path}: HTTP {status}: {data}")
    return data
