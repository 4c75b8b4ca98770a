"""A full disk under one node of a real 3-node lab (issue 8 item 5).

node2's data directory (Raft journal, snapshots, agent run state) is a small tmpfs,
mounted before the lab starts (root only: skipped otherwise).  When the test fills it,
node2 must not die of SIGBUS: its store stops acknowledging, so its node lease lapses;
its LRM stops its services before its watchdog fires (or the watchdog fences it); its
log says why in one line; another node recovers the services; and once space is freed
node2 rejoins without a restart (or, fenced, after one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harepl.runtime import procs
from harepl.runtime.apiprobe import ApiUnavailable
from harepl.runtime.lab import up
from tests.cluster.labtools import Cluster, wait_for
from tests.support.disk import fill
from tests.support.witness_check import violations

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

FULL = "node2"
DISK_FULL = "disk full: cannot write"
RECOVERED = "writable again after"


def _mount(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip()}): needs root")


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def lab_with_small_disk(witness_root: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    lab_dir = Path(tempfile.mkdtemp(prefix="hl-", dir="/tmp"))
    data = lab_dir / FULL / "data"
    _mount(data, "16m")
    wdir = witness_root / request.node.name[:40]
    (wdir / "locks").mkdir(parents=True)
    try:
        lab = up(lab_dir, 3, "fast", timeout_s=60)
        c = Cluster(lab, wdir)
        try:
            yield c
        finally:
            lab.down()
    finally:
        _umount(data)
        failed = request.node.rep_call.failed if hasattr(request.node, "rep_call") else False
        if failed:
            print(f"lab kept for inspection: {lab_dir}")
        else:
            shutil.rmtree(lab_dir, ignore_errors=True)
    assert not violations(c.ledger), f"witness violations: {violations(c.ledger)}"


def store_lines(c: Cluster, node: str) -> str:
    """What node's daemon said about its store: harepl.log (the daemon routes the store's
    logging there, role 'store'), and its stdout/stderr when it does not (yet)."""
    text = c.log(node)
    if "harepl-store[" not in text:  # no store logging routed into the node log
        text += (c.lab.node(node).dir / "daemon.out").read_text(errors="replace")
    return text


def test_full_data_dir_stops_the_nodes_services_others_recover_them_and_it_rejoins(
        lab_with_small_disk: Cluster) -> None:
    c = lab_with_small_disk
    c.add_exec("node1", "exec:df", FULL)
    c.wait_running("exec:df", node=FULL)
    daemon_pid = c.lab.pid(FULL)
    assert daemon_pid is not None
    filler = fill(c.lab.node(FULL).dir / "data")

    # the store of node2 can no longer persist: one line, its lease lapses, its services stop
    wait_for(lambda: DISK_FULL in store_lines(c, FULL), "node2's disk-full line")
    where = c.wait_running("exec:df", not_on=FULL, via="node1")
    assert where in ("node1", "node3")
    daemon_alive = procs.alive(daemon_pid)
    print(f"node2 daemon alive through the full disk: {daemon_alive}")
    log2 = c.log(FULL)
    if daemon_alive:
        # the lease-lost path: every local service stopped before the watchdog deadline
        assert f"lost lease 'agent:{FULL}'" in log2, log2[-4000:]
        stops = [e for e in c.events("exec:df") if e["event"] == "stop" and e["node"] == FULL]
        assert stops, "node2 did not stop its instance"
    else:
        # ...or the watchdog fenced node2: its whole session was killed
        out = (c.lab.node(FULL).dir / "daemon.out").read_text(errors="replace")
        assert "Bus error" not in out and "SIGBUS" not in out, out[-3000:]
    assert store_lines(c, FULL).count(DISK_FULL) == 1
    # the CRM recovered only after taking node2's lease (fence before recovery)
    crm = c.log("node1") + c.log("node3")
    assert f"got agent lock for node '{FULL}'" in crm, crm[-4000:]

    # space returns: node2 takes part again (a fenced node2 is started again first)
    os.unlink(filler)
    if not daemon_alive:
        c.lab.start(FULL)
    else:
        wait_for(lambda: RECOVERED in store_lines(c, FULL), "node2's recovery line")
        assert procs.alive(daemon_pid) and c.lab.pid(FULL) == daemon_pid  # no restart
    c.lab.wait_quorate([FULL], timeout_s=90)

    def online() -> bool:  # the master sees node2 online again (its LRM renews its lease)
        try:
            ms = c.manager_status("node1")["manager_status"]
        except ApiUnavailable:
            return False
        return bool(ms.get("node_status", {}).get(FULL) == "online")

    wait_for(online, "node2 online again at the master")
    c.ha("node1", "migrate", "exec:df", FULL)
    c.wait_running("exec:df", node=FULL)
    assert os.path.exists(c.lab.node(FULL).dir / "data" / "store" / "raft.journal")
