"""Fixtures: a real API server (LocalApi: the store's real apply on a real SQLite file,
served on a temporary Unix socket) with three nodes and two services, and helpers to
drive the app with Textual's pilot."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harepl.runtime.api.client import ApiClient
from harepl.runtime.api.local_backend import LocalApi


def write_cluster(api: LocalApi, service_status: dict[str, Any], node_status: dict[str, str] | None = None,
                  lrm_nodes: tuple[str, ...] = ("node1", "node2")) -> None:
    """Play the CRM master and the LRMs through the store (leases taken, epochs carried)."""
    now = time.time()   # display timestamps only, as the daemon writes them
    api.backend.write_manager_status("node1", {
        "master_node": "node1", "timestamp": now,
        "node_status": node_status or {"node1": "online", "node2": "online", "node3": "online"},
        "service_status": service_status})
    for node in lrm_nodes:
        api.backend.write_lrm_status(node, {"mode": "active", "state": "active", "results": {},
                                            "timestamp": now})


@pytest.fixture
def api() -> Iterator[LocalApi]:
    path = tempfile.mkdtemp(prefix="htui-", dir="/tmp")
    with LocalApi(path) as running:
        client = ApiClient(running.socket_path)
        client.post("/resources", {"sid": "exec:web", "node": "node2", "params": {"command": "sleep 1000"}})
        client.post("/groups", {"group": "front", "nodes": "node1:2,node2"})
        client.post("/resources", {"sid": "exec:db", "node": "node1", "group": "front",
                                   "params": {"command": "sleep 1000"}})
        write_cluster(running, {
            "exec:web": {"state": "started", "node": "node2", "uid": "u1", "running": 1},
            "exec:db": {"state": "started", "node": "node1", "uid": "u2", "running": 1}})
        yield running
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def client(api: LocalApi) -> ApiClient:
    return ApiClient(api.socket_path, timeout_s=5.0)


async def settle(pilot: Any) -> None:
    """Let every worker (refresh, action) finish and its result reach the UI."""
    app = pilot.app
    for _ in range(4):
        await app.workers.wait_for_complete()
        await pilot.pause()


async def until(pilot: Any, condition: Callable[[], bool], what: str, tries: int = 500) -> None:
    """Wait (by yielding to the app, not by a time limit) until `condition` holds."""
    for _ in range(tries):
        if condition():
            return
        await pilot.pause(0.01)
    raise AssertionError(f"never happened: {what}")
