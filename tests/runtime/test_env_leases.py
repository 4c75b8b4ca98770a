"""The runtime Env's leases over a real (one-member) Raft store: the node lease is kept,
judged expired only on the judge's own monotonic clock, taken by compare-and-swap, and
the old holder's fenced writes are then rejected."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from harepl.roles.env import Env, StaleLeaseError, StoreUnavailableError
from harepl.runtime.env import NodeContext, RuntimeEnv
from harepl.runtime.nodelog import NodeLog
from harepl.store import reads
from harepl.store import vocabulary as C
from harepl.store.client import Client
from tests.support.leases import take_node_lease
from tests.support.store import TIMING
from tests.support.store import node_config as _cfg

pytestmark = pytest.mark.timeout(120)



def test_node_lease_is_judged_on_our_clock_and_taken_by_cas(client: Client, tmp_path: Path) -> None:
    stop = threading.Event()
    log = NodeLog("n1", tmp_path / "n.log")
    ctx1 = NodeContext(_cfg("n1", tmp_path), client, None, None, stop)
    ctx2 = NodeContext(_cfg("n2", tmp_path), client, None, None, stop)
    lrm1 = RuntimeEnv(ctx1, "lrm", log.for_role("lrm"))
    crm2 = RuntimeEnv(ctx2, "crm", log.for_role("crm"))
    assert isinstance(lrm1, Env)

    take_node_lease(ctx1, log.for_role("lrm"))
    assert lrm1.get_ha_agent_lock() and ctx1.node_lease_valid()
    lrm1.write_lrm_status({"mode": "active", "state": "active", "results": {}})
    epoch1 = client.read(lambda c: reads.agent_lease_of(c, "n1"), linearizable=False)["epoch"]

    # n2 has just seen n1's lease renewed: not expired on n2's clock, so it cannot take it
    assert not crm2.get_ha_agent_lock("n1")
    # n1 stops renewing; n2 keeps looking; only lease_timeout_s of n2's own time later...
    seen_unchanged_since = time.monotonic()
    while time.monotonic() - seen_unchanged_since < TIMING.lease_timeout_s + 0.2:
        ctx2.observe()
        time.sleep(0.1)
    assert not ctx1.node_lease_valid()  # lease_local_s ran out without renewal on n1's side
    assert crm2.get_ha_agent_lock("n1")  # ...may n2 take it (new epoch)
    lease = client.read(lambda c: reads.agent_lease_of(c, "n1"), linearizable=False)
    assert lease["holder"] == "n2" and lease["epoch"] == epoch1 + 1

    # the old holder's renewal and its fenced writes are rejected
    assert not ctx1.keep_node_lease(log.for_role("lrm"))
    assert not ctx1.holds_node_lease
    with pytest.raises(StoreUnavailableError):
        lrm1.write_lrm_status({"mode": "active", "state": "active", "results": {}})
    with pytest.raises(StaleLeaseError):
        lrm1._submit_fenced(C.lrm_status_set("n1", {"mode": "active"}, epoch1))
    rejected = client.read(lambda c: reads.events(c, rejected_only=True), linearizable=False)
    assert any("stale_epoch" in e["detail"] for e in rejected)


def test_manager_lease_and_fenced_manager_writes(client: Client, tmp_path: Path) -> None:
    stop = threading.Event()
    log = NodeLog("n1", tmp_path / "n.log")
    crm1 = RuntimeEnv(NodeContext(_cfg("n1", tmp_path), client, None, None, stop), "crm", log.for_role("crm"))
    ctx2 = NodeContext(_cfg("n2", tmp_path), client, None, None, stop)
    crm2 = RuntimeEnv(ctx2, "crm", log.for_role("crm"))
    assert crm1.get_ha_manager_lock()
    crm1.write_manager_status({"master_node": "n1", "node_status": {}, "service_status": {}})
    assert not crm2.get_ha_manager_lock()  # held and fresh on n2's clock
    t0 = time.monotonic()
    while time.monotonic() - t0 < ctx2.manager_timeout_s + 0.2:
        ctx2.observe()
        time.sleep(0.1)
    assert crm2.get_ha_manager_lock()
    with pytest.raises(StaleLeaseError):  # the deposed master's write carries its old epoch
        crm1.write_manager_status({"master_node": "n1", "node_status": {}, "service_status": {}})
    crm2.write_manager_status({"master_node": "n2", "node_status": {}, "service_status": {}})
    assert client.read(reads.manager_status, linearizable=False)["master_node"] == "n2"


def test_node_marked_fence_lets_its_lease_lapse_so_the_master_can_fence_it(client: Client, tmp_path: Path) -> None:
    """Regression (Jepsen, seeds 146292294 / 2024438079): a node restarted while the master
    had it in 'fence' renewed its still-held lease, so the master never got it: the node
    hung in wait_for_agent_lock and stayed 'fence' forever.  Proxmox's LRM stops renewing
    when fencing is requested; our keeper must too."""
    stop = threading.Event()
    log = NodeLog("n1", tmp_path / "n.log")
    ctx1 = NodeContext(_cfg("n1", tmp_path), client, None, None, stop)
    ctx2 = NodeContext(_cfg("n2", tmp_path), client, None, None, stop)
    crm2 = RuntimeEnv(ctx2, "crm", log.for_role("crm"))
    take_node_lease(ctx1, log.for_role("lrm"))
    assert crm2.get_ha_manager_lock()
    crm2.write_manager_status({"master_node": "n2", "node_status": {"n1": "fence", "n2": "online"},
                               "service_status": {"vm:1": {"state": "fence", "node": "n1", "uid": "u1"}}})
    ctx1._watch_once()
    assert ctx1.fence_requested
    seq_before = client.read(lambda c: reads.agent_lease_of(c, "n1"), linearizable=False)["seq"]
    assert not ctx1.keep_node_lease(log.for_role("lrm"))  # no renewal while fencing is requested
    assert not ctx1.node_lease_valid()
    assert client.read(lambda c: reads.agent_lease_of(c, "n1"), linearizable=False)["seq"] == seq_before
    # so the master, judging on its own clock, gets the lease after lease_timeout_s
    t0 = time.monotonic()
    while not crm2.get_ha_agent_lock("n1"):
        assert not ctx1.keep_node_lease(log.for_role("lrm"))
        assert time.monotonic() - t0 < TIMING.lease_timeout_s * 5, "the master never got the fenced node's lease"
        time.sleep(0.1)
    assert time.monotonic() - t0 >= TIMING.lease_timeout_s - 0.5
    # fenced: the master clears the request, and the node may take its lease back later
    crm2.write_manager_status({"master_node": "n2", "node_status": {"n1": "unknown", "n2": "online"},
                               "service_status": {}})
    ctx1._watch_once()
    assert not ctx1.fence_requested


def test_a_master_marked_fence_does_not_count_its_own_held_lease_as_fenced(client: Client, tmp_path: Path) -> None:
    """A master whose own node an earlier master marked 'fence' may acknowledge that fence
    only once its own lease has lapsed on its clock -- never because it still holds it."""
    stop = threading.Event()
    log = NodeLog("n1", tmp_path / "n.log")
    ctx1 = NodeContext(_cfg("n1", tmp_path), client, None, None, stop)
    crm1 = RuntimeEnv(ctx1, "crm", log.for_role("crm"))
    lrm1 = RuntimeEnv(ctx1, "lrm", log.for_role("lrm"))
    take_node_lease(ctx1, log.for_role("lrm"))
    assert lrm1.get_ha_agent_lock()          # the LRM: its own lease is valid
    assert not crm1.get_ha_agent_lock("n1")  # the CRM fencing n1: fresh lease, not fenced
