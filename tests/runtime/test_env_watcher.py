"""The daemon's replica watcher over a real (one-member) Raft store: it reads the replica
only after this node applied a command that may change what it looks at (status writes,
CRM commands) -- never for lease renewals, no-ops or rejections, which are all an idle
cluster commits -- and it still wakes the LRM when a transition concerns its node."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harepl.runtime.config import NodeConfig
from harepl.runtime.env import NodeContext
from harepl.store import vocabulary as C
from harepl.store.client import Client
from tests.support.store import node_config

pytestmark = pytest.mark.timeout(120)


def _cfg(node: str, tmp: Path) -> NodeConfig:
    return node_config(node, tmp, members=("n1",))


def _until(pred: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    # hang protection only: the conditions are event-driven, not timed
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _holder_epochs(client: Client) -> tuple[int, int]:
    agent = client.submit_checked(C.lease_acquire(C.agent_lease("n1"), "n1", 0, 0))["epoch"]
    manager = client.submit_checked(C.lease_acquire(C.MANAGER_LEASE, "n1", 0, 0))["epoch"]
    return int(agent), int(manager)


def test_only_relevant_applies_mark_the_replica_changed(client: Client, tmp_path: Path) -> None:
    ctx = NodeContext(_cfg("n1", tmp_path), client, None, None, threading.Event())
    agent_epoch, manager_epoch = _holder_epochs(client)
    ctx.replica_changed.clear()
    for _ in range(20):
        client.submit_checked(C.lease_renew(C.agent_lease("n1"), "n1", agent_epoch))
    client.submit_checked(C.noop())
    rejected = client.submit(C.manager_status_set({"master_node": "n1"}, manager_epoch + 7))
    assert rejected["reason"] == "stale_epoch"
    # the listener runs on the Raft thread before submit() returns: no race here
    assert not ctx.replica_changed.is_set()

    client.submit_checked(C.lrm_status_set("n1", {"mode": "active", "results": {}}, agent_epoch))
    assert ctx.replica_changed.is_set()
    ctx.replica_changed.clear()
    client.submit_checked(C.crm_command_enqueue("migrate vm:1 n2"))
    assert ctx.replica_changed.is_set()


def test_watcher_reads_only_after_a_change_and_wakes_the_lrm(client: Client, tmp_path: Path) -> None:
    stop = threading.Event()
    ctx = NodeContext(_cfg("n1", tmp_path), client, None, None, stop)
    agent_epoch, manager_epoch = _holder_epochs(client)
    th = threading.Thread(target=ctx.run_watcher, daemon=True)
    th.start()
    try:
        _until(lambda: ctx.watch_reads == 1 and not ctx.replica_changed.is_set(), "the first read")
        for _ in range(30):
            client.submit_checked(C.lease_renew(C.agent_lease("n1"), "n1", agent_epoch))
        client.submit_checked(C.noop())
        # a transition for this node: exactly one more read, and the LRM is woken
        ctx.wake["lrm"].clear()
        status = {"master_node": "n1", "service_status": {
            "vm:100": {"state": "started", "node": "n1", "uid": "u1"}}}
        client.submit_checked(C.manager_status_set(status, manager_epoch))
        _until(lambda: ctx.watch_reads >= 2, "the read after the transition")
        assert ctx.wake["lrm"].is_set()
        assert ctx.my_view == {"vm:100": ("started", "n1", None)}
        assert ctx.watch_reads == 2  # the 31 lease/no-op commits caused no read
        # an unchanged manager_status re-written: read (it was applied), but no wake-up
        ctx.wake["lrm"].clear()
        client.submit_checked(C.manager_status_set(status, manager_epoch))
        _until(lambda: ctx.watch_reads == 3, "the read after the rewrite")
        assert not ctx.wake["lrm"].is_set()
    finally:
        stop.set()
        ctx.wake_all()
        th.join(5)
    assert not th.is_alive()
