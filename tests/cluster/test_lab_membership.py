"""Membership of a running lab (`harepl cluster`, `harepl lab add-node|remove-node`):
real daemons on 127.0.0.1, real pysyncobj membership changes, witness services.

No timing is asserted; each step waits for its outcome.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from typing import Any

import pytest

from tests.cluster.labtools import BIN, Cluster, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]


def harepl_cluster(c: Cluster, via: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HAREPL_API=str(c.lab.node(via).api_socket))
    return subprocess.run([str(BIN / "harepl"), "cluster", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def members(c: Cluster, via: str) -> dict[str, Any]:
    r = harepl_cluster(c, via, "members", "--output-format", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def names(view: dict[str, Any], key: str = "raft_member") -> list[str]:
    return sorted(m["node"] for m in view["members"] if m[key])


def refused(r: subprocess.CompletedProcess[str], text: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and text in r.stderr, r.stderr


def node_state(c: Cluster, via: str, node: str) -> str | None:
    return c.manager_status(via)["manager_status"].get("node_status", {}).get(node)  # type: ignore[no-any-return]


def test_grow_to_four_move_a_service_there_and_remove_a_node(cluster: Cluster) -> None:
    c = cluster
    c.add_exec("node1", "exec:grow", "node1")
    c.wait_running("exec:grow", node="node1")
    new = c.lab.add_node()
    assert new == "node4"
    def all_respond() -> dict[str, Any] | None:
        v = members(c, "node2")
        return v if all(m["responds"] for m in v["members"]) else None

    view = wait_for(all_respond, "node4 responds")
    assert names(view) == names(view, "ha_node") == ["node1", "node2", "node3", "node4"]
    # the CRM sees the new node: a service moves onto it
    wait_for(lambda: node_state(c, "node1", "node4") == "online", "node4 online for the CRM")
    c.ha("node3", "migrate", "exec:grow", "node4")
    c.wait_running("exec:grow", node="node4")
    # node4 runs a service: it cannot be removed, and nothing changes
    refused(harepl_cluster(c, "node1", "remove-node", "node4"), "still has HA services (exec:grow)")
    assert names(members(c, "node1")) == ["node1", "node2", "node3", "node4"]
    # remove node3 (idle): gone from Raft and from the CRM's node list
    c.lab.remove_node("node3")
    view = members(c, "node1")
    assert names(view) == names(view, "ha_node") == ["node1", "node2", "node4"]
    wait_for(lambda: node_state(c, "node4", "node3") in ("gone", None), "node3 gone for the CRM")
    # the three left still commit and run services: move it back
    c.ha("node1", "migrate", "exec:grow", "node2")
    c.wait_running("exec:grow", node="node2")
    # a restarted member (its [[nodes]] rewritten by the lab) rejoins the new membership
    c.lab.restart("node4")
    c.lab.wait_quorate(["node1", "node2", "node4"])
    assert names(members(c, "node4")) == ["node1", "node2", "node4"]


def _free_addr() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_refusals_leave_the_membership_unchanged(cluster: Cluster) -> None:
    c = cluster
    # bad input: one line, exit 2, before any change
    refused(harepl_cluster(c, "node1", "add-node", "bad name!", "--addr", "127.0.0.1:1"), "invalid node name")
    refused(harepl_cluster(c, "node1", "add-node", "node9", "--addr", "nowhere"), "HOST:PORT")
    refused(harepl_cluster(c, "node1", "add-node", "node9", "--addr", "host:1"), "not an IP address")
    refused(harepl_cluster(c, "node1", "remove-node", "node9"), "no such cluster node 'node9'")
    refused(harepl_cluster(c, "node1", "add-node", "node2", "--addr", _free_addr()), "already exists")
    refused(harepl_cluster(c, "node1", "remove-node", "node1"), "serves this request")
    before = members(c, "node1")
    # only 2 of 3 respond: removing a live one would leave 1 of 2 -> refused
    c.lab.kill("node3")
    def leader_sees_node3_down() -> str | None:
        v = members(c, "node1")
        if v["leader"] in ("node1", "node2"):
            w = members(c, v["leader"])
            if w["leader"] == v["leader"] and not any(m["responds"] for m in w["members"] if m["node"] == "node3"):
                return str(v["leader"])
        return None

    leader = wait_for(leader_sees_node3_down, "a leader among node1/node2 that sees node3 down")
    other = "node2" if leader == "node1" else "node1"
    refused(harepl_cluster(c, leader, "remove-node", other), "would lose quorum")
    refused(harepl_cluster(c, other, "remove-node", leader), "is the Raft leader")
    after = members(c, "node1")
    assert names(after) == names(before) and names(after, "ha_node") == names(before, "ha_node")
    # the powered-off node can go (2 of the 2 left respond)
    r = harepl_cluster(c, other, "remove-node", "node3")
    assert r.returncode == 0, r.stderr
    assert names(members(c, leader)) == sorted([leader, other])
    # two changes at once: a member added but not caught up (its daemon never started)
    # makes the next change wait; removing it undoes the first one
    r = harepl_cluster(c, leader, "add-node", "ghost", "--addr", _free_addr())
    assert r.returncode == 0, r.stderr
    view = members(c, other)
    assert [m["joining"] for m in view["members"] if m["node"] == "ghost"] == [True]
    refused(harepl_cluster(c, leader, "add-node", "ghost2", "--addr", _free_addr()),
            "membership change is in progress: node 'ghost'")
    refused(harepl_cluster(c, leader, "remove-node", other), "membership change is in progress: node 'ghost'")
    r = harepl_cluster(c, other, "remove-node", "ghost")
    assert r.returncode == 0, r.stderr
    assert names(members(c, leader)) == names(members(c, leader), "ha_node") == sorted([leader, other])
    # and the cluster still commits
    c.add_exec(leader, "exec:after", other)
    c.wait_running("exec:after", node=other, via=leader)
