"""Hardware fencing for real (issue 10): `harepl lab up --fence-device ipmi` gives each lab
node a real IPMI-over-LAN BMC (OpenIPMI's `ipmi_sim` on 127.0.0.1) whose chassis power-off
kills the node's whole tree (`Lab.kill`); the CRM master drives it with Debian's real
`fence_ipmilan` through the fence-agent API. Nothing is mocked. Every service is the
witness (tests/support/witness.py): zero violations, asserted after each test.

Needs root and `scripts/install-system-deps` (fence-agents, openipmi, ipmitool).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harepl.runtime.fence.agent import agent_path
from harepl.runtime.fence.bmc import IPMI_SIM
from harepl.runtime.lab import up
from tests.cluster.labtools import Cluster, wait_for
from tests.support.witness_check import violations

pytestmark = pytest.mark.skipif(agent_path("fence_ipmilan") is None or not Path(IPMI_SIM).exists(),
                                reason="needs fence-agents and openipmi (scripts/install-system-deps)")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    lab_dir = Path(tempfile.mkdtemp(prefix="hf-", dir="/tmp"))
    wdir = tmp_path / "w"
    (wdir / "locks").mkdir(parents=True)
    lab = up(lab_dir, 3, "fast", timeout_s=60, fence_device="ipmi")
    c = Cluster(lab, wdir)
    try:
        yield c
    finally:
        lab.down()
        shutil.rmtree(lab_dir, ignore_errors=True)
        assert not violations(c.ledger), f"witness violations: {json.dumps(violations(c.ledger))}"


def master_log(c: Cluster) -> str:
    return "\n".join(c.log(n.name) for n in c.lab.nodes if n.name != "node2")


def starts(c: Cluster, sid: str) -> list[dict[str, object]]:
    return [e for e in c.events(sid) if e["event"] == "start"]


def test_a_killed_node_is_powered_off_by_its_bmc_before_its_service_starts_elsewhere(cluster: Cluster) -> None:
    c = cluster
    assert c.ha("node1", "datacenter", "show").stdout.startswith("ha: fencing=both")
    cfg = (c.lab.dir / "fence.cfg")
    assert cfg.stat().st_mode & 0o777 == 0o600
    password = re.search(r"password=(\S+)", cfg.read_text()).group(1)  # type: ignore[union-attr]
    c.add_exec("node1", "exec:w", "node2")
    c.wait_running("exec:w", node="node2")
    t_kill = time.time()
    c.lab.kill("node2")  # the failure; the BMC's off is the fence
    c.wait_running("exec:w", not_on="node2")
    bmc = next(b for b in c.lab.bmcs() if b.node == "node2")
    offs = [(wall, text) for _up, wall, text in bmc.power_log() if text.startswith("power off done")]
    assert offs and offs[0][0] > t_kill, bmc.power_log()
    elsewhere = [e for e in starts(c, "exec:w") if e["node"] != "node2"]
    assert elsewhere and float(elsewhere[0]["wall"]) > offs[0][0]  # type: ignore[arg-type]
    log = master_log(c)
    assert "fencing node 'node2' level 1: confirmed off in" in log
    assert "took its lease at once" in log and "fencing: acknowledged - got agent lock for node 'node2'" in log
    assert password not in log and "password=***" in log  # credentials never logged
    # the fence is recorded in the manager status (written with the master's epoch)
    assert re.search(r"fence device level 1 of node 'node2': confirmed off", log)


def test_both_falls_back_to_the_watchdog_when_the_device_fails(cluster: Cluster) -> None:
    c = cluster
    c.add_exec("node1", "exec:f", "node2")
    c.wait_running("exec:f", node="node2")
    next(b for b in c.lab.bmcs() if b.node == "node2").stop()  # its BMC is unreachable
    c.lab.kill("node2")
    c.wait_running("exec:f", not_on="node2")
    log = master_log(c)
    assert "fencing node 'node2' level 1: FAILED" in log
    assert "took its lease at once" not in log  # recovered through the lease wait (watchdog)


def test_hardware_alone_blocks_while_the_device_fails_and_recovers_once_it_works(cluster: Cluster) -> None:
    c = cluster
    c.ha("node1", "datacenter", "set", "--ha", "fencing=hardware")
    c.add_exec("node1", "exec:h", "node2")
    c.wait_running("exec:h", node="node2")
    bmc = next(b for b in c.lab.bmcs() if b.node == "node2")
    bmc.stop()
    c.lab.kill("node2")
    wait_for(lambda: "every fence device failed" in json.dumps(c.manager_status("node1")), "the fence status", 60)
    assert "fence node2 (every fence device failed" in c.ha("node1", "status").stdout
    time.sleep(8.0)  # beyond lease_timeout_s (7 s): the lease alone does not recover it
    assert c.running_on("exec:h") is None
    assert c.service("node1", "exec:h").get("state") == "fence"
    bmc.start()
    c.wait_running("exec:h", not_on="node2")
    assert "took its lease at once" in master_log(c)
