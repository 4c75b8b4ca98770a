"""Datacenter HA settings end to end on a real 3-node lab: set through ha-manager on one
node, replicated to every node, honoured by the CRM master (static scheduler fed by the
CPUs and memory each daemon published), changed live.

A daemon stop (SIGTERM) is an LRM restart (services freeze) whatever the shutdown
policy; a node shutdown or reboot applies it (tests/cluster/test_node_shutdown.py, and
each policy at the Env level in tests/runtime/test_env_datacenter.py).
"""

from __future__ import annotations

import json
import re

import pytest

from harepl.runtime.apiprobe import get_json
from tests.cluster.labtools import Cluster, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

NODES = ("node1", "node2", "node3")


def test_settings_replicate_and_drive_the_scheduler(cluster: Cluster) -> None:
    cluster.ha("node1", "datacenter", "set", "--shutdown-policy", "migrate",
               "--crs", "ha=static,ha-rebalance-on-start=1")
    want = {"ha": {"shutdown_policy": "migrate"}, "crs": {"ha": "static", "ha-rebalance-on-start": True}}

    def everywhere() -> bool:
        for node in NODES:
            shown = json.loads(cluster.ha(node, "datacenter", "show", "--output-format", "json").stdout)
            if {k: v for k, v in shown["options"].items() if k != "digest"} != want:
                return False
        return True

    wait_for(everywhere, "the settings on every node")

    # every daemon published its own capacity at start
    def capacity() -> dict[str, dict[str, int]] | None:
        nodes = get_json(cluster.lab.node("node3").api_socket, "/nodes")
        stats = {n["node"]: n for n in nodes if n.get("maxcpu") and n.get("maxmem")}
        return stats if set(stats) == set(NODES) else None

    stats = wait_for(capacity, "static stats of all three nodes")
    assert all(s["maxcpu"] >= 1 and s["maxmem"] > 1 << 20 for s in stats.values())

    # a CRM master appears with the first service, schedules with 'static' and, with
    # ha-rebalance-on-start, lets the scheduler choose the start node
    cluster.add_exec("node1", "exec:dc", "node2")
    where = cluster.wait_running("exec:dc")
    master = cluster.manager_status("node1")["manager_status"]["master_node"]
    log = cluster.log(master)
    assert "using scheduler mode 'static'" in log
    assert re.search(rf"service exec:dc: re-balance selected (new|current) node {where} for startup", log), log
    assert "fallback to 'basic' scheduler mode" not in log

    # changed live: the running master switches at its next round
    cluster.ha("node3", "datacenter", "set", "--crs", "ha=basic", "--delete", "crs.ha-rebalance-on-start")
    wait_for(lambda: "switching scheduler mode from 'static' to 'basic'" in cluster.log(master),
             "the master switching to basic")
    assert cluster.ha("node2", "datacenter", "show").stdout.splitlines()[:2] == [
        "ha: shutdown_policy=migrate", "crs: ha=basic"]
    # a bad value never reaches the store
    bad = cluster.ha("node2", "datacenter", "set", "--crs", "ha=fastest", check=False)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "Error: crs.ha: expected one of basic, static, dynamic (got 'fastest')"]
    assert cluster.running_on("exec:dc") == where
