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


def write_cluster(api: Any, service_status: dict[str, Any], node_status: dict[str, str] | None = None,
                  lrm_nodes: tuple[str, ...] = ("node1", "node2"),
                  results: dict[str, dict[str, Any]] | None = None) -> None:
    """Play the CRM master and the LRMs through the store (leases taken, epochs carried).
    `api`: a LocalApi or a Member (anything with `.backend`); `results`: node -> LRM results."""
    now = time.time()   # display timestamps only, as the daemon writes them
    api.backend.write_manager_status("node1", {
        "master_node": "node1", "timestamp": now,
        "node_status": node_status or {"node1": "online", "node2": "online", "node3": "online"},
        "service_status": service_status})
    for node in lrm_nodes:
        api.backend.write_lrm_status(node, {"mode": "active", "state": "active",
                                            "results": (results or {}).get(node, {}), "timestamp": now})


@pytest.fixture
def api() -> Iterator[LocalApi]:
    path = tempfile.mkdtemp(prefix="htui-", dir="/tmp")
    with LocalApi(path) as running:
        populate(ApiClient(running.socket_path))
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


# ---------------------------------------------------------------- apps and members

def app_for(api: LocalApi | str, read_only: bool = False, interval_s: float = 3600) -> Any:
    """The app on a live source (interval: refreshes only when the test asks ('g') or
    after an action, unless given)."""
    from tui.app import HareplApp
    from tui.source import LiveSource

    target = api if isinstance(api, str) else api.socket_path
    return HareplApp(LiveSource([target], timeout_s=5.0), interval_s=interval_s, read_only=read_only)


def populate(client: ApiClient) -> None:
    client.post("/resources", {"sid": "exec:web", "node": "node2", "params": {"command": "sleep 1000"}})
    client.post("/groups", {"group": "front", "nodes": "node1:2,node2"})
    client.post("/resources", {"sid": "exec:db", "node": "node1", "group": "front",
                               "params": {"command": "sleep 1000"}})


class Member:
    """One member of a stand-in cluster laid out as `harepl lab` does (DIR/<node>/api.sock):
    the real API server on the real store, with quorum switchable (`quorate`) and the
    server stoppable (`kill`). Each member has its own store, filled alike."""

    def __init__(self, lab_dir: str, node: str) -> None:
        import os

        from harepl.runtime.api import serve_api
        from harepl.runtime.api.backend import ClusterState
        from harepl.runtime.api.local_backend import LocalStoreBackend, cluster_state

        member = self

        class Switchable(LocalStoreBackend):
            def read_state(self, fresh: bool = False) -> ClusterState:
                with self._lock:
                    return cluster_state(self.conn, self.node, quorate=member.quorate, nodes=self._nodes)

        os.makedirs(os.path.join(lab_dir, node), exist_ok=True)
        self.node, self.quorate = node, True
        self.socket_path = os.path.join(lab_dir, node, "api.sock")
        self.backend = Switchable(os.path.join(lab_dir, node, "state.db"), node)
        for name in ("node1", "node2", "node3"):
            self.backend.submit({"op": "node_add", "node": name})
        self.handle = serve_api(self.backend, unix_path=self.socket_path)
        self.client = ApiClient(self.socket_path, timeout_s=5.0)
        self.alive = True

    def kill(self) -> None:
        if self.alive:
            self.handle.close()
            self.alive = False

    def close(self) -> None:
        self.kill()
        self.backend.close()


@pytest.fixture
def members() -> Iterator[dict[str, Member]]:
    lab_dir = tempfile.mkdtemp(prefix="htm-", dir="/tmp")
    out = {n: Member(lab_dir, n) for n in ("node1", "node2")}
    for m in out.values():
        populate(m.client)
        write_cluster(m, {"exec:web": {"state": "started", "node": "node2", "uid": "u1", "running": 1},   # type: ignore[arg-type]
                          "exec:db": {"state": "started", "node": "node1", "uid": "u2", "running": 1}})
    yield out
    for m in out.values():
        m.close()
    shutil.rmtree(lab_dir, ignore_errors=True)
