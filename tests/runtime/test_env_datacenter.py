"""The daemon's Env reads the replicated datacenter settings and node capacity, over a
real one-member Raft store; the LRM's shutdown follows the replicated shutdown policy.

The daemon has no node-shutdown detection yet (Proxmox asks systemd whether a shutdown
job is queued), so a daemon stop is always an LRM restart that freezes its services,
whatever the policy. The shutdown tests below set the flag such a detection would set
(`AgentHost.shutdown_flags`) and check what the LRM then does with each policy.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from harepl.roles.lrm import LRM
from harepl.runtime.agenthost import AgentHost
from harepl.runtime.env import NodeContext, RuntimeEnv
from harepl.runtime.nodelog import NodeLog
from harepl.runtime.nodestats import local_static_stats, publish
from harepl.store import reads
from harepl.store import vocabulary as C
from harepl.store.client import Client
from tests.support.leases import take_node_lease
from tests.support.store import node_config as _cfg

pytestmark = pytest.mark.timeout(120)


def test_settings_and_capacity_come_from_the_store(client: Client, tmp_path: Path) -> None:
    stop = threading.Event()
    log = NodeLog("n1", tmp_path / "n.log")
    env = RuntimeEnv(NodeContext(_cfg("n1", tmp_path), client, None, None, stop), "crm", log.for_role("crm"))
    assert env.get_datacenter_settings() == {}
    assert env.get_static_node_stats() == {}
    assert client.submit(C.dc_options_set({"ha": {"shutdown_policy": "migrate"},
                                           "crs": {"ha": "static", "ha-rebalance-on-start": 1}}), 10)["ok"]
    assert env.get_datacenter_settings() == {"ha": {"shutdown_policy": "migrate"},
                                             "crs": {"ha": "static", "ha-rebalance-on-start": True}}
    # what each daemon does at start: its own CPUs and memory
    assert publish(client, "n1", stop, log.for_role("daemon"))
    cpus, mem_bytes = local_static_stats()
    assert env.get_static_node_stats() == {"n1": {"maxcpu": float(cpus), "maxmem": float(mem_bytes)}}
    assert cpus >= 1 and mem_bytes > 1 << 20


def test_local_static_stats_reads_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16336504 kB\nMemFree:         1000 kB\n")
    assert local_static_stats(meminfo)[1] == 16336504 * 1024
    meminfo.write_text("garbage\n")
    with pytest.raises(ValueError, match="no CPU count or MemTotal"):
        local_static_stats(meminfo)


@pytest.mark.parametrize("policy, reboot, mode", [
    ("migrate", False, "maintenance"),    # services move away, node leaves the active list
    ("migrate", True, "maintenance"),
    ("freeze", False, "restart"),         # stop and freeze
    ("failover", False, "shutdown"),      # stop; recovered elsewhere once fenced
    (None, False, "shutdown"),            # conditional: a shutdown fails over ...
    (None, True, "restart"),              # ... a reboot freezes
])
def test_lrm_node_shutdown_follows_the_replicated_policy(client: Client, tmp_path: Path, policy: str | None,
                                                         reboot: bool, mode: str) -> None:
    stop = threading.Event()
    log = NodeLog("n1", tmp_path / "n.log")
    agents = AgentHost("n1", tmp_path / "run", 2, monitor_interval_s=5.0, log=log.for_role("lrm"))
    try:
        ctx = NodeContext(_cfg("n1", tmp_path), client, agents, None, stop)
        env = RuntimeEnv(ctx, "lrm", log.for_role("lrm"))
        agents.env = env
        if policy:
            assert client.submit(C.dc_options_set({"ha": {"shutdown_policy": policy}}), 10)["ok"]
        take_node_lease(ctx, log.for_role("lrm"))
        agents.shutdown_flags = (True, reboot)   # what a node-shutdown detection would report
        lrm = LRM(env, active_round_s=0.2, wait_round_s=0.2)
        lrm.shutdown()
        assert lrm.mode == mode
        written = client.read(lambda c: reads.lrm_status(c, "n1"), linearizable=True)
        assert written is not None and written["mode"] == mode
    finally:
        agents.close()


def test_daemon_stop_without_node_shutdown_freezes_whatever_the_policy(client: Client, tmp_path: Path) -> None:
    stop = threading.Event()
    log = NodeLog("n1", tmp_path / "n.log")
    agents = AgentHost("n1", tmp_path / "run", 2, monitor_interval_s=5.0, log=log.for_role("lrm"))
    try:
        ctx = NodeContext(_cfg("n1", tmp_path), client, agents, None, stop)
        env = RuntimeEnv(ctx, "lrm", log.for_role("lrm"))
        agents.env = env
        assert client.submit(C.dc_options_set({"ha": {"shutdown_policy": "migrate"}}), 10)["ok"]
        take_node_lease(ctx, log.for_role("lrm"))
        lrm = LRM(env, active_round_s=0.2, wait_round_s=0.2)
        lrm.shutdown()   # SIGTERM of the daemon: shutdown_flags stay (False, False)
        assert lrm.mode == "restart"
    finally:
        agents.close()
