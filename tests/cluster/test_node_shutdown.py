"""A clean node shutdown or reboot on a real 3-node lab applies the datacenter's shutdown
policy (Proxmox's `ha: shutdown_policy`): `harepl lab shutdown|reboot NODE` tells the
daemon the node goes down (SIGUSR1/SIGUSR2: there is no systemd here to ask), the daemon
acts on it, exits, and the rest of the node is powered off.  The witness checks that no
service ever runs twice."""

from __future__ import annotations

import pytest

from tests.cluster.labtools import Cluster, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


def _node_state(cluster: Cluster, via: str, node: str) -> str | None:
    return cluster.manager_status(via)["manager_status"].get("node_status", {}).get(node)  # type: ignore[no-any-return]


def test_shutdown_with_migrate_policy_moves_services_away_before_the_node_goes(cluster: Cluster) -> None:
    cluster.ha("node1", "datacenter", "set", "--shutdown-policy", "migrate")
    for sid in ("exec:m1", "exec:m2"):
        cluster.add_exec("node1", sid, "node2")
    for sid in ("exec:m1", "exec:m2"):
        cluster.wait_running(sid, "node2")

    cluster.lab.shutdown("node2")  # returns once node2's daemon has exited

    log2 = cluster.log("node2")
    assert "shutdown LRM, doing maintenance, removing this node from active list" in log2
    # migrated while node2's daemon still ran: each was stopped cleanly on node2 (a
    # power-off kill writes no stop record) and then starts elsewhere, exactly once
    for sid in ("exec:m1", "exec:m2"):
        assert any(e["event"] == "stop" and e["node"] == "node2" for e in cluster.events(sid)), sid
        assert cluster.wait_running(sid, not_on="node2") in ("node1", "node3")
    assert _node_state(cluster, "node1", "node2") == "maintenance"

    # the node comes back: it leaves maintenance and, as in Proxmox (maintenance_node),
    # the services migrate back to it
    cluster.lab.start("node2")
    wait_for(lambda: _node_state(cluster, "node1", "node2") == "online", "node2 online again")
    for sid in ("exec:m1", "exec:m2"):
        cluster.wait_running(sid, "node2")


def test_shutdown_with_failover_policy_stops_then_recovers_without_waiting_out_the_lease(cluster: Cluster) -> None:
    cluster.ha("node1", "datacenter", "set", "--shutdown-policy", "failover")
    cluster.add_exec("node1", "exec:f1", "node2")
    cluster.wait_running("exec:f1", "node2")

    cluster.lab.shutdown("node2")

    log2 = cluster.log("node2")
    assert "shutdown LRM, stop all services" in log2
    assert "released lease 'agent:node2' (node shutdown, nothing left running)" in log2
    assert cluster.running_on("exec:f1") is None  # stopped before the daemon exited
    where = cluster.wait_running("exec:f1", not_on="node2")
    master = cluster.manager_status("node1")["manager_status"]["master_node"]
    assert "fencing: acknowledged - got agent lock for node 'node2'" in cluster.log(master)
    assert where in ("node1", "node3")


def test_reboot_with_conditional_policy_freezes_and_starts_again_on_the_same_node(cluster: Cluster) -> None:
    cluster.add_exec("node1", "exec:r1", "node2")  # default policy: conditional
    cluster.wait_running("exec:r1", "node2")

    cluster.lab.reboot("node2")

    log2 = cluster.log("node2")
    assert "reboot LRM, stop and freeze all services" in log2
    cluster.wait_running("exec:r1", "node2")  # back on node2 after the reboot, never elsewhere
    assert {e["node"] for e in cluster.events("exec:r1") if e["event"] == "start"} == {"node2"}
