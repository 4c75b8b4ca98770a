"""Rolling upgrades: a command is written at the lowest vocabulary version that has it;
a node that meets a command newer than it knows stops instead of diverging; and newer
commands are not proposed while a running node is older.

Why: during this session's Jepsen runs a node restarted on newer code proposed version-2
commands that the two older nodes recorded as 'invalid' while it applied them: the
replicas split (two CRM masters with the same manager epoch) and a service ran twice."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from harepl.store import reads
from harepl.store import vocabulary as C
from harepl.store.apply import StoreFault, TooNew, apply
from harepl.store.client import Client
from harepl.store.schema import connect
from tests.support.store import one_member_store

pytestmark = pytest.mark.timeout(60)

NEXT = max(C.SUPPORTED_VERSIONS) + 1


def test_commands_are_written_at_the_lowest_version_that_has_them() -> None:
    assert C.lease_renew("manager", "n1", 1)["v"] == 1
    assert C.group_set("g", {"nodes": {"n1": 1}})["v"] == 1
    assert C.group_set("g", {"nodes": {"n1": 1}}, digest="0" * 40)["v"] == 2  # digest: a v2 field
    assert C.dc_options_set({"ha": {"shutdown_policy": "migrate"}})["v"] == 2
    assert C.node_stats_set("n1", 2, 1 << 30)["v"] == 2
    for cmd in (C.lease_renew("manager", "n1", 1), C.dc_options_set({"ha": {"shutdown_policy": "freeze"}})):
        assert C.validate(C.decode(C.encode(cmd)))["v"] == cmd["v"]


def test_a_command_newer_than_this_node_stops_it_and_changes_nothing() -> None:
    conn = connect(":memory:")
    apply(conn, C.encode(C.noop(ts=1.0)))
    before = list(conn.iterdump())
    newer = dict(C.noop(ts=2.0), v=NEXT)
    with pytest.raises(TooNew, match="upgrade harepl on this node"):
        apply(conn, C.encode(newer))
    assert isinstance(TooNew("x"), StoreFault)  # the Raft layer stops the member on it
    assert list(conn.iterdump()) == before
    # garbage of a known version is still an ordinary recorded rejection
    r = apply(conn, C.encode(dict(C.noop(ts=3.0), op="bogus")))
    assert r["ok"] is False and r["reason"] == "invalid"


def test_newer_commands_wait_until_every_running_node_knows_them(tmp_path: Path) -> None:
    node = one_member_store(tmp_path)
    try:
        client = Client(node)
        # node 'old' runs a harepl that writes no 'vocab' into its LRM status: version 1
        assert client.submit(C.lrm_status_set("old", {"mode": "active", "state": "wait_for_agent_lock"}, None),
                             10)["ok"]
        applied = client.read(reads.applied_count, linearizable=True)
        refused = client.submit(C.dc_options_set({"ha": {"shutdown_policy": "migrate"}}), 10)
        assert refused["ok"] is False and refused["reason"] == "unsupported"
        assert "old (v1) run an older harepl: upgrade every node first" in refused["error"]
        assert client.read(reads.applied_count, linearizable=True) == applied + 1  # only the barrier
        assert client.submit(C.group_set("g", {"nodes": {"old": 1}}), 10)["ok"]  # version 1 still works
        # once upgraded, its status says so, and the new command goes through
        assert client.submit(C.lrm_status_set("old", {"mode": "active", "state": "wait_for_agent_lock",
                                                      "vocab": max(C.SUPPORTED_VERSIONS)}, None), 10)["ok"]
        assert client.submit(C.dc_options_set({"ha": {"shutdown_policy": "migrate"}}), 10)["ok"]
    finally:
        node.stop()


def test_a_raft_member_meeting_a_newer_command_stops_with_one_clear_reason(tmp_path: Path) -> None:
    faults: list[str] = []
    stopped = threading.Event()

    def on_fault(why: str) -> None:
        faults.append(why)
        stopped.set()

    node = one_member_store(tmp_path, on_fault=on_fault)
    try:
        newer = dict(C.noop(), v=NEXT)
        node.submit_async(C.encode(newer), lambda res, err: None)  # as a newer peer would
        assert stopped.wait(20), "the member kept going"
        assert "upgrade harepl on this node" in faults[0]
    finally:
        node.stop()
