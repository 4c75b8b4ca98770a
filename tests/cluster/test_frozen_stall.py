"""Issue 8, item 1, on real daemons: a clean daemon restart (SIGTERM, Proxmox's LRM
restart: services frozen and left running), then the restarted daemon stalls right after
its LRM's first `mode active` status is committed.

On 3355e09 nothing guarded the frozen service at that moment (the LRM counted frozen
services as nothing to protect, so it armed no watchdog): the master waited out the lease,
took it — a fence that fenced nothing — and started the service elsewhere while the old
instance still ran (`../shared/repro/frozen_stall.py` hit it in 2 runs of 3). The stall
here is the `stall-after-active-status` failpoint (harepl/runtime/failpoints.py): the
daemon SIGSTOPs itself at exactly that point, so the test does not depend on timing.
"""

from __future__ import annotations

import os
import signal
import time

from harepl.runtime.config import PROFILES
from tests.cluster.labtools import Cluster, _alive, wait_for


def _process_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def _live_instances(cluster: Cluster, sid: str) -> list[tuple[str, int]]:
    ended = {e["pid"] for e in cluster.events(sid) if e["event"] == "stop"}
    return [(e["node"], e["pid"]) for e in cluster.events(sid)
            if e["event"] == "start" and e["pid"] not in ended and _alive(e["pid"])]


def test_a_restarted_daemon_that_stalls_before_rearming_never_lets_its_service_run_twice(
        cluster: Cluster) -> None:
    cluster.add_exec("node1", "exec:anchor", "node1")  # a master appears once services exist
    master = wait_for(lambda: cluster.lab.status("node1").get("master_node"), "a master")
    victim = "node3" if master != "node3" else "node2"
    sid = "exec:frozen"
    cluster.add_exec("node1", sid, victim)
    cluster.wait_running(sid, node=victim)
    first = _live_instances(cluster, sid)
    assert [n for n, _ in first] == [victim]

    # a clean restart: the daemon exits, its service is frozen and keeps running
    pid = cluster.lab.pid(victim)
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: _process_state(pid) in ("Z", "gone"), f"{victim}'s daemon to exit on SIGTERM")
    assert _live_instances(cluster, sid) == first, "a clean daemon restart must leave the service running"

    os.environ["HAREPL_FAILPOINTS"] = "stall-after-active-status"
    try:
        new_pid = cluster.lab.start(victim)
    finally:
        del os.environ["HAREPL_FAILPOINTS"]
    wait_for(lambda: _process_state(new_pid) == "T", f"{victim}'s restarted daemon to reach the failpoint")
    assert _live_instances(cluster, sid) == first

    # From here nothing of the victim's daemon runs. Whatever the others do — leave the
    # service frozen where it is, or fence the victim and recover it — one instance at
    # most may run at any moment; watch at 20 ms for as long as recovery may take.
    watch_until = time.monotonic() + 4 * PROFILES["fast"].lease_timeout_s
    seen_elsewhere = None
    while time.monotonic() < watch_until:
        live = _live_instances(cluster, sid)
        assert len(live) <= 1, f"{sid} runs twice: {live}"
        if live and live[0][0] != victim:
            seen_elsewhere = live[0][0]
        time.sleep(0.02)

    if seen_elsewhere is not None:
        # recovered: only after the victim's watchdog had killed the stalled node
        assert not _alive(new_pid), "recovered elsewhere while the stalled daemon lives"
        assert "watchdog: node " + victim + " not fed for" in cluster.log(victim)
        cluster.wait_running(sid, not_on=victim, via=master)
    else:
        # left frozen on the stalled node: it still runs there, once, and resumes there
        assert [n for n, _ in _live_instances(cluster, sid)] == [victim]
        cluster.lab.resume(victim)
        cluster.wait_running(sid, node=victim, via=master)
