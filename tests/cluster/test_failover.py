"""End to end on a real 3-node lab: ha-manager -> API -> Raft -> CRM -> LRM -> agents.

Real daemons, real pysyncobj on loopback sockets, real exec/OCF agents, the process
watchdog (no /dev/watchdog here). Timing is never asserted; only order and outcome.
"""

from __future__ import annotations

import os
import re
import time

import pytest

from tests.cluster.labtools import Cluster, _alive, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]


def test_added_service_starts_where_asked(cluster: Cluster) -> None:
    cluster.add_exec("node1", "exec:w1", "node2")
    assert cluster.wait_running("exec:w1", node="node2") == "node2"
    # node3 reads its own replica: wait until it shows the LRM's report
    def shown() -> str | None:
        out = cluster.ha("node3", "status").stdout
        return out if "service exec:w1 (node2, started)" in out else None

    out = wait_for(shown, "status on node3")
    assert re.search(r"^quorum OK$", out, re.M), out
    assert re.search(r"^master node\d \(active, ", out, re.M), out
    assert re.search(r"^lrm node2 \(active, ", out, re.M), out


def test_migrate_and_relocate_move_the_service(cluster: Cluster) -> None:
    cluster.add_exec("node1", "exec:mv", "node1")
    cluster.wait_running("exec:mv", node="node1")
    cluster.ha("node3", "migrate", "exec:mv", "node2")
    cluster.wait_running("exec:mv", node="node2")
    cluster.ha("node2", "relocate", "exec:mv", "node3")
    cluster.wait_running("exec:mv", node="node3")
    nodes = [(e["event"], e["node"]) for e in cluster.events("exec:mv")]
    # each move stops the old instance before the new one starts
    assert nodes == [("start", "node1"), ("stop", "node1"), ("start", "node2"),
                     ("stop", "node2"), ("start", "node3")], nodes
    cfg = cluster.ha("node1", "config").stdout
    assert "exec:mv" in cfg


def test_sigkill_of_the_node_recovers_the_service_elsewhere(cluster: Cluster) -> None:
    cluster.add_exec("node1", "exec:k", "node2")
    cluster.wait_running("exec:k", node="node2")
    old_pid = cluster.events("exec:k")[-1]["pid"]
    cluster.lab.kill("node2")
    assert not _alive(old_pid)
    where = cluster.wait_running("exec:k", not_on="node2", via="node1")
    assert where in ("node1", "node3")
    # the CRM fenced node2 (took its lease) before recovering
    crm_logs = cluster.log("node1") + cluster.log("node3")
    fenced = crm_logs.find("fencing: acknowledged - got agent lock for node 'node2'")
    recovered = crm_logs.find("recover service 'exec:k' from fenced node 'node2'")
    assert fenced != -1 and recovered != -1 and fenced < recovered


def test_sigstop_past_the_lease_watchdog_kills_node_before_recovery(cluster: Cluster) -> None:
    cluster.add_exec("node1", "exec:p", "node3")
    cluster.wait_running("exec:p", node="node3")
    old = cluster.events("exec:p")[-1]
    daemon_pid = cluster.lab.pid("node3")
    cluster.lab.pause("node3")
    # watch, on our monotonic clock (CLOCK_MONOTONIC, as the ledger's 'mono'), when the
    # paused node's service dies: its watchdog must kill it before anyone restarts it
    died_at = wait_for(lambda: None if _alive(old["pid"]) else time.monotonic(),
                       "the paused node's witness to be killed by its watchdog", every_s=0.02)
    # the watchdog kills the node's whole session, daemon included (in some order)
    wait_for(lambda: not _alive(daemon_pid), "the paused daemon to be killed by its watchdog")
    where = cluster.wait_running("exec:p", not_on="node3", via="node1")
    new_start = [e for e in cluster.events("exec:p") if e["event"] == "start"][-1]
    assert new_start["node"] == where
    assert died_at <= new_start["mono"], "recovered elsewhere before the old instance died"
    assert "watchdog: node node3 not fed for" in cluster.log("node3")


def test_ocf_dummy_and_ocf_witness_fail_over(cluster: Cluster) -> None:
    cluster.ha("node1", "add", "ocf:dummy", "--node", "node2", "--agent", "heartbeat/Dummy")
    cluster.ha("node1", "add", "ocf:wit", "--node", "node2", "--agent", "harepl/process",
               "--param", f"command={cluster.witness_command('ocf:wit')}")
    cluster.wait_running("ocf:wit", node="node2")

    def dummy_started_on(node: str) -> bool:
        sd = cluster.service("node1", "ocf:dummy")
        # 'running' is set once that node's LRM reported the start
        return sd.get("node") == node and sd.get("state") == "started" and bool(sd.get("running"))

    wait_for(lambda: dummy_started_on("node2"), "ocf:dummy started")
    state_dirs = {n.name: n.dir / "data" / "run" / "ocf" for n in cluster.lab.nodes}

    def dummy_on() -> list[str]:
        # Dummy's whole state is its state file, kept per node (HA_RSCTMP = the node's run dir)
        return sorted(node for node, d in state_dirs.items()
                      if d.is_dir() and any(p.name.startswith("Dummy-") and p.name.endswith(".state")
                                            for p in d.iterdir()))

    assert dummy_on() == ["node2"]
    cluster.ha("node1", "migrate", "ocf:dummy", "node3")
    wait_for(lambda: dummy_started_on("node3"), "ocf:dummy on node3")
    assert dummy_on() == ["node3"]
    cluster.ha("node1", "migrate", "ocf:dummy", "node2")
    wait_for(lambda: dummy_started_on("node2"), "ocf:dummy back on node2")
    assert dummy_on() == ["node2"]
    cluster.lab.kill("node2")  # both OCF resources ran there
    where = cluster.wait_running("ocf:wit", not_on="node2", via="node1")
    wait_for(lambda: dummy_started_on("node1") or dummy_started_on("node3"), "ocf:dummy recovered")
    # node2's state file stays behind (it lost power); exactly one live node runs Dummy
    assert len([n for n in dummy_on() if n != "node2"]) == 1
    assert where in ("node1", "node3")


def test_a_service_whose_process_dies_is_started_again(cluster: Cluster) -> None:
    cluster.add_exec("node1", "exec:d", "node1")
    cluster.wait_running("exec:d", node="node1")
    first = cluster.events("exec:d")[-1]
    os.kill(first["pid"], 9)  # the service dies; the daemon did not ask for it
    wait_for(lambda: len([e for e in cluster.events("exec:d") if e["event"] == "start"]) >= 2,
             "the dead service to be started again")
    again = cluster.wait_running("exec:d", node="node1")
    assert again == "node1"


# 2 + 6 + 1 < 10: time enough between the lease lapsing and the watchdog firing to stop
@pytest.mark.timing(watchdog_s=6.0, lease_timeout_s=10.0)
def test_quorum_loss_stops_services_and_closes_the_watchdog_cleanly(cluster: Cluster) -> None:
    cluster.add_exec("node1", "exec:q", "node1")
    cluster.wait_running("exec:q", node="node1")
    pid = cluster.lab.pid("node1")
    cluster.lab.kill("node2")
    cluster.lab.kill("node3")  # node1 alone: no quorum, its lease cannot be renewed
    stop = wait_for(lambda: next((e for e in cluster.events("exec:q") if e["event"] == "stop"), None),
                    "node1 to stop its service on quorum loss")
    assert stop["node"] == "node1" and stop["signal"] == 15  # stopped by us, not killed
    wait_for(lambda: "watchdog closed cleanly, no self-fence" in cluster.log("node1"), "a clean close")
    # well past the time the watchdog would have fired: the node is still up
    time.sleep(6.0 + 1.0)
    assert _alive(pid), "node1 fenced itself although every service was stopped in time"
    assert "not fed for" not in cluster.log("node1")
    assert cluster.running_on("exec:q") is None
