"""Real network partitions between real daemons (ladder step 5).

Three daemons, each in its own network namespace on a bridge; a partition takes a node's
bridge port down. Timing is never asserted: only order (from the witness ledger, whose
`mono` is CLOCK_MONOTONIC, shared by every namespace) and outcome.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from harepl.runtime.apiprobe import ApiUnavailable, get_json
from tests.cluster.labtools import _alive, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.timeout(300)]

NODES = ("node1", "node2", "node3")


def status(c: Any, node: str) -> dict[str, Any]:
    return get_json(c.lab.node(node).api_socket, "/status", timeout_s=3.0)  # type: ignore[no-any-return]


def master_seen_by(c: Any, node: str) -> str | None:
    try:
        st = status(c, node)
    except ApiUnavailable:
        return None
    return st.get("master_node") if st.get("quorate") else None


def watch_end_of(c: Any, sid: str, pid: int) -> float:
    """Monotonic time at which the witness `pid` was seen gone: its `stop` line in the
    ledger, or (SIGKILLed by a watchdog: no stop line) when we saw it die."""
    def ended() -> float | None:
        for e in c.events(sid):
            if e["event"] == "stop" and e["pid"] == pid:
                return float(e["mono"])
        return None if _alive(pid) else time.monotonic()
    return float(wait_for(ended, f"{sid} pid {pid} to end", every_s=0.02))


def rejoin(c: Any, node: str, via: str) -> None:
    """Heal `node`'s link; if its watchdog fired (whole session gone) boot it again, like a
    rebooted machine; wait until the CRM counts it online again (a command naming a node
    the CRM does not see online is dropped, as in Proxmox)."""
    c.topo.heal(node)
    if not c.lab.running_daemon(node):
        c.lab.start(node)
    c.lab.wait_quorate(timeout_s=90)

    def online() -> bool:
        try:
            return bool(c.manager_status(via)["manager_status"].get("node_status", {}).get(node) == "online")
        except ApiUnavailable:
            return False
    wait_for(online, f"the CRM to see {node} online again")


def test_partitioned_node_stops_its_service_before_the_majority_recovers_it(netcluster: Any) -> None:
    c = netcluster
    c.add_exec("node1", "exec:pa", "node2")
    c.wait_running("exec:pa", node="node2")
    old = c.events("exec:pa")[-1]
    wait_for(lambda: master_seen_by(c, "node1"), "a CRM master")
    c.topo.partition("node2")

    ended_at = watch_end_of(c, "exec:pa", old["pid"])
    where = c.wait_running("exec:pa", not_on="node2", via="node1")
    new = [e for e in c.events("exec:pa") if e["event"] == "start"][-1]
    assert new["node"] == where and new["pid"] != old["pid"]
    assert ended_at <= new["mono"], "the majority started the service before the minority's instance ended"
    # the minority's own view: no quorum (if its daemon is still up: it may also have fenced
    # itself); the majority's view: quorum, node2 not online
    if c.lab.running_daemon("node2"):
        out = c.ha("node2", "status", check=False)
        assert not re.search(r"^quorum OK$", out.stdout, re.M), out.stdout + out.stderr
    maj = c.ha("node1", "status").stdout
    assert re.search(r"^quorum OK$", maj, re.M), maj
    assert f"service exec:pa ({where}, started)" in maj or "exec:pa" in maj, maj
    # the CRM fenced node2 (took its lease) before recovering its service
    crm = c.log("node1") + c.log("node3")
    fenced = crm.find("fencing: acknowledged - got agent lock for node 'node2'")
    recovered = crm.find("recover service 'exec:pa' from fenced node 'node2'")
    assert fenced != -1 and recovered != -1 and fenced < recovered, crm[-3000:]

    # heal: node2 rejoins and runs services again
    rejoin(c, "node2", via="node1")
    c.ha("node1", "migrate", "exec:pa", "node2")
    c.wait_running("exec:pa", node="node2", via="node3")
    starts = [(e["event"], e["node"]) for e in c.events("exec:pa") if e["event"] in ("start", "stop")]
    assert starts[-1] == ("start", "node2"), starts


def test_isolated_master_is_replaced_and_cannot_act(netcluster: Any) -> None:
    c = netcluster
    # one service on every node, so the master's node has one to lose
    for i, node in enumerate(NODES, 1):
        c.add_exec("node1", f"exec:m{i}", node)
    for i, node in enumerate(NODES, 1):
        c.wait_running(f"exec:m{i}", node=node)
    old_master = wait_for(lambda: master_seen_by(c, "node1"), "a CRM master")
    majority = [n for n in NODES if n != old_master]
    on_master = f"exec:m{NODES.index(old_master) + 1}"
    old_pid = c.events(on_master)[-1]["pid"]

    c.topo.partition(old_master)
    new_master = wait_for(
        lambda: (m := master_seen_by(c, majority[0])) not in (None, old_master) and m, "a new master")
    assert new_master in majority
    # both majority nodes agree on it, through ha-manager
    for n in majority:
        out = wait_for(lambda n=n: (o := c.ha(n, "status", check=False).stdout)
                       and re.search(rf"^master {new_master} \(active, ", o, re.M) and o,
                       f"{n} to show master {new_master}")
        assert re.search(r"^quorum OK$", out, re.M), out
    # the old master cannot change anything: a command sent to it is refused, not applied
    if c.lab.running_daemon(old_master):
        side = c.ha(old_master, "status", check=False)
        assert not re.search(r"^quorum OK$", side.stdout, re.M), side.stdout + side.stderr
        moved = c.ha(old_master, "migrate", majority[0].replace("node", "exec:m"), old_master, check=False)
        assert moved.returncode != 0, moved.stdout
    ended_at = watch_end_of(c, on_master, old_pid)
    where = c.wait_running(on_master, not_on=old_master, via=majority[0])
    new = [e for e in c.events(on_master) if e["event"] == "start"][-1]
    assert new["node"] == where and ended_at <= new["mono"]

    rejoin(c, old_master, via=majority[0])
    # one master for everyone, and every service runs exactly once
    wait_for(lambda: len({master_seen_by(c, n) for n in NODES}) == 1 and master_seen_by(c, "node1"),
             "one master seen by all nodes")
    for i in range(1, 4):
        c.wait_running(f"exec:m{i}", via=majority[1])
        live = [e for e in c.events(f"exec:m{i}") if e["event"] == "start" and _alive(e["pid"])]
        assert len(live) == 1, live
    # anything the deposed master proposed after the heal was fenced by its epoch
    rejected = [ln for n in NODES for ln in c.log(n).splitlines() if "reject" in ln.lower()]
    print("rejections logged:", len(rejected), *rejected[:10], sep="\n")
