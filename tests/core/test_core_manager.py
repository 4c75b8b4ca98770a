"""The CRM master's decisions, driven round by round with explicit views.

`Ports` here is the manager's port to the world (log, mail, taking a failed node's
lease); the tests decide whether a lease can be taken, as the store would.
"""

from __future__ import annotations

from typing import Any

import pytest

from harepl.core.config import parse_groups
from harepl.core.manager import Manager, ManagerView
from harepl.core.policy import PVE
from harepl.core.types import ERROR, SUCCESS, ServiceConfig, StealService, UpdateServiceConfig

NODES = ("node1", "node2", "node3")


class Ports:
    def __init__(self, fence_ok: bool = False) -> None:
        self.lines: list[str] = []
        self.fence_ok = fence_ok
        self.fence_tries: list[str] = []

    def log(self, level: str, msg: str) -> None:
        self.lines.append(msg)

    def sendmail(self, subject: str, text: str) -> None:
        self.lines.append("MAIL " + subject)

    def fence_lock(self, node: str) -> bool:
        self.fence_tries.append(node)
        return self.fence_ok

    def remove_locks(self, sid: str, locks: list[str], fenced_node: str) -> str | None:
        return None


def svc(node: str, state: str = "started", **kw: Any) -> ServiceConfig:
    base: dict[str, Any] = {"type": kw.pop("type", "vm"), "state": state, "node": node,
                            "max_restart": 1, "max_relocate": 1, "failback": True}
    base.update(kw)
    return base  # type: ignore[return-value]


def view(now: float, sc: dict[str, ServiceConfig], online: tuple[str, ...] = NODES,
         lrm: dict[str, Any] | None = None, cmds: tuple[str, ...] = ()) -> ManagerView:
    return ManagerView(
        now=now,
        node_info={n: {"online": n in online} for n in NODES},
        lrm_status=lrm or {},
        service_config=sc,
        crm_commands=cmds,
    )


def result_for(m: Manager, sid: str, code: int, node: str) -> dict[str, Any]:
    uid = m.ss[sid]["uid"]
    return {node: {"mode": "active", "results": {uid: {"sid": sid, "state": m.ss[sid]["state"], "exit_code": code}}}}


def test_new_started_service_goes_request_start_then_started() -> None:
    m, p = Manager("node1", {}), Ports()
    res = m.manage(view(0, {"vm:101": svc("node1")}), p)
    assert res.manager_status is not None
    assert res.manager_status["service_status"]["vm:101"]["state"] == "started"
    assert "adding new service 'vm:101' on node 'node1'" in p.lines
    assert "service 'vm:101': state changed from 'request_start' to 'started'  (node = node1)" in p.lines
    assert res.manager_status["node_status"] == {n: "online" for n in NODES}


@pytest.mark.parametrize("config_state, want", [("disabled", "request_stop"), ("stopped", "request_stop"),
                                                ("started", "started")])
def test_requested_state_drives_started_service(config_state: str, want: str) -> None:
    m, p = Manager("node1", {}), Ports()
    m.manage(view(0, {"vm:101": svc("node1")}), p)
    m.manage(view(10, {"vm:101": svc("node1", config_state)}), p)
    assert m.ss["vm:101"]["state"] == want


def test_stop_result_moves_request_stop_to_stopped_and_failure_to_error() -> None:
    for code, want in ((SUCCESS, "stopped"), (ERROR, "error")):
        m, p = Manager("node1", {}), Ports()
        # requested 'stopped' (with 'disabled' the error state is left again at once)
        m.manage(view(0, {"vm:101": svc("node1", "stopped")}), p)
        assert m.ss["vm:101"]["state"] == "request_stop"
        m.manage(view(10, {"vm:101": svc("node1", "stopped")}, lrm=result_for(m, "vm:101", code, "node1")), p)
        assert m.ss["vm:101"]["state"] == want


def test_relocate_policy_then_error_then_recovery_by_disable() -> None:
    sc = {"fa:130": svc("node1", type="fa")}
    m, p = Manager("node1", {}), Ports()
    m.manage(view(0, sc), p)
    # first failed start: relocate to the next node (max_relocate 1)
    m.manage(view(10, sc, lrm=result_for(m, "fa:130", ERROR, "node1")), p)
    assert m.ss["fa:130"]["state"] == "relocate" and m.ss["fa:130"]["target"] == "node2"
    assert m.ss["fa:130"]["failed_nodes"] == ["node1"]
    # the relocation succeeded: started on node2
    sc = {"fa:130": svc("node2", type="fa")}
    m.manage(view(20, sc, lrm=result_for(m, "fa:130", SUCCESS, "node1")), p)
    assert (m.ss["fa:130"]["state"], m.ss["fa:130"]["node"]) == ("started", "node2")
    # start fails there too: failed_nodes exceeds max_relocate -> error
    m.manage(view(30, sc, lrm=result_for(m, "fa:130", ERROR, "node2")), p)
    assert m.ss["fa:130"]["state"] == "error"
    # only 'disabled' leads out of error; the failed nodes are kept (the seed: the relocate
    # count resets only after a successful start)
    m.manage(view(40, {"fa:130": svc("node2", "started", type="fa")}), p)
    assert m.ss["fa:130"]["state"] == "error"
    m.manage(view(50, {"fa:130": svc("node2", "disabled", type="fa")}), p)
    assert m.ss["fa:130"]["state"] == "stopped" and m.ss["fa:130"]["failed_nodes"] == ["node1", "node2"]
    # re-enabled without a fix: one more failed start (after the LRM's restart policy) -> error
    m.manage(view(60, {"fa:130": svc("node2", "started", type="fa")}), p)
    assert m.ss["fa:130"]["state"] == "started"
    m.manage(view(70, {"fa:130": svc("node2", "started", type="fa")}, lrm=result_for(m, "fa:130", ERROR, "node2")), p)
    assert m.ss["fa:130"]["state"] == "error"


def test_relocate_counter_resets_only_after_successful_start() -> None:
    sc = {"fa:130": svc("node1", type="fa", max_relocate=2)}
    m, p = Manager("node1", {}), Ports()
    m.manage(view(0, sc), p)
    m.manage(view(10, sc, lrm=result_for(m, "fa:130", ERROR, "node1")), p)
    sc = {"fa:130": svc("node2", type="fa", max_relocate=2)}
    m.manage(view(20, sc, lrm=result_for(m, "fa:130", SUCCESS, "node1")), p)  # relocation done
    assert m.ss["fa:130"]["failed_nodes"] == ["node1"]  # not reset by the move itself
    m.manage(view(30, sc, lrm=result_for(m, "fa:130", SUCCESS, "node2")), p)  # start succeeded
    assert "failed_nodes" not in m.ss["fa:130"]
    assert any("relocation policy successful for 'fa:130' on node 'node2'" in ln for ln in p.lines)


def test_fencing_waits_for_the_lease_then_recovers() -> None:
    sc = {"vm:103": svc("node3")}
    m, p = Manager("node1", {}), Ports(fence_ok=False)
    m.manage(view(0, sc), p)
    m.manage(view(10, sc, online=("node1", "node2")), p)
    assert m.ns.status["node3"] == "unknown" and m.ss["vm:103"]["state"] == "started"
    m.manage(view(40, sc, online=("node1", "node2")), p)  # fence delay (60 s) not over
    assert m.ss["vm:103"]["state"] == "started"
    m.manage(view(75, sc, online=("node1", "node2")), p)
    assert m.ss["vm:103"]["state"] == "fence" and m.ns.status["node3"] == "fence"
    assert "MAIL FENCE: Try to fence node 'node3'" in p.lines
    # lease not yet expired: no recovery, however long we wait
    res = m.manage(view(95, sc, online=("node1", "node2")), p)
    assert m.ss["vm:103"]["state"] == "fence" and res.effects == []
    p.fence_ok = True
    res = m.manage(view(115, sc, online=("node1", "node2")), p)
    assert (m.ss["vm:103"]["state"], m.ss["vm:103"]["node"]) == ("started", "node1")
    assert res.effects == [StealService("vm:103", current_node="node3", new_node="node1")]
    assert m.ns.status["node3"] == "unknown"


def test_crm_commands() -> None:
    sc = {"vm:101": svc("node1"), "ct:102": svc("node2", type="ct")}
    m, p = Manager("node1", {}), Ports()
    m.manage(view(0, sc), p)
    m.manage(view(10, sc, cmds=("migrate vm:101 node2", "relocate ct:102 node3", "migrate vm:999 node2",
                               "bogus", "stop vm:101 30")), p)
    assert m.ss["ct:102"]["state"] == "relocate" and m.ss["ct:102"]["target"] == "node3"
    assert "crm command error - no such service: migrate vm:999 node2" in p.lines
    assert "unable to parse crm command: bogus" in p.lines
    # the later 'stop' replaced the pending migrate of vm:101
    assert m.ss["vm:101"]["state"] == "request_stop" and m.ss["vm:101"]["timeout"] == 30
    res = m.manage(view(20, sc, online=("node1", "node2"), cmds=("migrate ct:102 node3",)), p)
    assert "crm command error - node not online: migrate ct:102 node3" in p.lines
    assert res.manager_status is not None


def test_stop_command_changes_the_requested_state() -> None:
    sc = {"vm:101": svc("node1")}
    m, p = Manager("node1", {}), Ports()
    m.manage(view(0, sc), p)
    res = m.manage(view(10, sc, cmds=("stop vm:101 0",)), p)
    assert "request immediate service hard-stop for service 'vm:101'" in p.lines
    assert res.effects == [UpdateServiceConfig("vm:101", {"state": "stopped"})]


def test_node_maintenance_request_and_lrm_modes() -> None:
    sc = {"vm:101": svc("node2")}
    m, p = Manager("node1", {}), Ports()
    m.manage(view(0, sc), p)
    res = m.manage(view(10, sc, cmds=("enable-node-maintenance node2",)), p)
    assert res.manager_status is not None
    assert res.manager_status["node_request"] == {"node2": {"maintenance": 1}}
    # the LRM answers with mode maintenance: node maintenance, service moves away
    m.manage(view(20, sc, lrm={"node2": {"mode": "maintenance"}}), p)
    assert m.ns.status["node2"] == "maintenance"
    assert m.ss["vm:101"]["state"] == "migrate" and m.ss["vm:101"]["maintenance_node"] == "node2"
    # LRM restart mode freezes its services; the restarted LRM unfreezes them only once it
    # holds its lease with the watchdog armed (state 'active'), not on mode 'active' alone
    m2, p2 = Manager("node1", {}), Ports()
    m2.manage(view(0, sc), p2)
    m2.manage(view(10, sc, lrm={"node2": {"mode": "restart"}}), p2)
    assert m2.ss["vm:101"]["state"] == "freeze"
    m2.manage(view(20, sc, lrm={"node2": {"mode": "active", "state": "wait_for_agent_lock"}}), p2)
    assert m2.ss["vm:101"]["state"] == "freeze"
    m2.manage(view(30, sc, lrm={"node2": {"mode": "active", "state": "active"}}), p2)
    assert m2.ss["vm:101"]["state"] == "started"
    # Proxmox's policy (the pve profile) unfreezes on mode 'active' alone
    m3, p3 = Manager("node1", {}, policy=PVE), Ports()
    m3.manage(view(0, sc), p3)
    m3.manage(view(10, sc, lrm={"node2": {"mode": "restart"}}), p3)
    m3.manage(view(20, sc, lrm={"node2": {"mode": "active", "state": "wait_for_agent_lock"}}), p3)
    assert m3.ss["vm:101"]["state"] == "started"


def test_ignored_and_deleted_services_leave_the_manager_status() -> None:
    m, p = Manager("node1", {}), Ports()
    m.manage(view(0, {"vm:1": svc("node1"), "vm:2": svc("node2")}), p)
    m.manage(view(10, {"vm:1": svc("node1", "ignored")}), p)
    assert m.ss == {}
    assert "removing stale service 'vm:1' (ignored state requested)" in p.lines
    assert "removing stale service 'vm:2' (no config)" in p.lines


def test_master_outside_quorum_writes_nothing() -> None:
    m, p = Manager("node1", {}), Ports()
    res = m.manage(view(0, {"vm:1": svc("node1")}, online=("node2", "node3")), p)
    assert res.manager_status is None and "master seems offline" in p.lines


def test_inputs_are_not_mutated() -> None:
    sc = {"vm:103": svc("node3")}
    old = {"service_status": {"vm:103": {"state": "fence", "node": "node3", "uid": "x"}},
           "node_status": {"node1": "online", "node2": "online", "node3": "fence"}}
    m, p = Manager("node1", old), Ports(fence_ok=True)  # type: ignore[arg-type]
    m.manage(view(0, sc, online=("node1", "node2")), p)
    assert old["service_status"]["vm:103"]["state"] == "fence"
    assert sc["vm:103"]["node"] == "node3"


def test_disarm_freeze_waits_for_lrms_and_rearm_unfreezes() -> None:
    sc = {"vm:101": svc("node1"), "vm:102": svc("node2", "stopped")}
    m, p = Manager("node1", {}), Ports()
    m.manage(view(0, sc), p)
    active = {"node1": {"mode": "active", "state": "active"}}
    res = m.manage(view(10, sc, lrm=active, cmds=("migrate vm:101 node2", "disarm-ha freeze")), p)
    assert {s: sd["state"] for s, sd in m.ss.items()} == {"vm:101": "freeze", "vm:102": "freeze"}
    assert "cmd" not in m.ss["vm:101"]  # the pending migrate was pre-empted
    assert res.manager_status is not None and res.manager_status["disarm"]["state"] == "disarming"
    # node1's LRM has not let go yet; once it has, the stack is disarmed
    idle = {"node1": {"mode": "active", "state": "wait_for_agent_lock"}}
    res = m.manage(view(20, sc, lrm=idle), p)
    assert res.manager_status is not None and res.manager_status["disarm"]["state"] == "disarmed"
    m.manage(view(30, sc, lrm=idle, cmds=("disarm-ha ignore",)), p)
    assert "ignoring disarm-ha command - already in disarm state (disarmed)" in p.lines
    m.manage(view(40, sc, lrm=idle, cmds=("arm-ha",)), p)
    assert m.ss["vm:101"]["state"] == "freeze"  # unfrozen only in the next round
    res = m.manage(view(50, sc, lrm=idle), p)
    assert m.ss["vm:101"]["state"] == "freeze"  # ... and only once each LRM is guarding again
    both = {n: {"mode": "active", "state": "active"} for n in ("node1", "node2")}
    res = m.manage(view(60, sc, lrm=both), p)
    assert m.ss["vm:101"]["state"] == "started" and m.ss["vm:102"]["state"] == "request_stop"
    assert res.manager_status is not None and "disarm" not in res.manager_status


def test_restricted_group_without_online_member_keeps_the_service_stopped() -> None:
    from harepl.core.config import parse_groups

    groups = parse_groups("group: only3\n\tnodes node3\n\trestricted 1\n")
    sc = {"vm:101": svc("node1", group="only3")}
    m, p = Manager("node1", {}), Ports()

    def v(now: float, online: tuple[str, ...], lrm: dict[str, Any] | None = None) -> ManagerView:
        return ManagerView(now=now, node_info={n: {"online": n in online} for n in NODES},
                           lrm_status=lrm or {}, service_config=sc, groups=groups)

    m.manage(v(0, ("node1", "node2")), p)
    assert m.ss["vm:101"]["state"] == "request_stop"
    m.manage(v(10, ("node1", "node2"), result_for(m, "vm:101", SUCCESS, "node1")), p)
    m.manage(v(20, ("node1", "node2")), p)
    assert m.ss["vm:101"]["state"] == "stopped"  # and it stays so: no member online
    m.manage(v(30, NODES), p)  # node3 is back: started there (moved from node1)
    assert m.ss["vm:101"]["state"] == "migrate" and m.ss["vm:101"]["target"] == "node3"


def test_disabled_service_without_recovery_node_keeps_its_failed_nodes() -> None:
    # seed, RECOVERY POLICY: the relocate count resets only after a successful start - also
    # when a service whose recovery finds no node is disabled (Proxmox forgets it there)
    groups = parse_groups("group: only3\n\tnodes node3\n\trestricted 1\n")
    old = {"service_status": {"vm:103": {"state": "recovery", "node": "node3", "uid": "x",
                                         "failed_nodes": ["node1"]}},
           "node_status": {"node1": "online", "node2": "online", "node3": "unknown"}}
    m, p = Manager("node1", old), Ports(fence_ok=True)  # type: ignore[arg-type]
    sc = {"vm:103": svc("node3", "disabled", group="only3")}
    m.manage(ManagerView(now=0, node_info={n: {"online": n != "node3"} for n in NODES}, lrm_status={},
                         service_config=sc, groups=groups), p)
    assert "recovering service 'vm:103' from fenced node 'node3' failed, no recovery node found" in p.lines
    assert m.ss["vm:103"]["state"] == "stopped" and m.ss["vm:103"]["failed_nodes"] == ["node1"]
