"""What the CRM master's `Manager` (manager.py) takes in and gives back each round, and
the pure functions that prepare a round's inputs.

`ManagerView` in (a read-only snapshot of the cluster), `ManagerPorts` out (log, mail,
fence lock, lock removal: the only calls with side effects), `ManagerResult` back (the new
manager_status and the typed effects, applied in the order documented in core/types.py).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from harepl.core import config as cfgmod
from harepl.core.fencing import DeviceResult
from harepl.core.placement import CompiledRules, compile_checked
from harepl.core.types import (
    DatacenterConfig,
    Effect,
    GroupConfig,
    LrmResult,
    LrmStatus,
    ManagerStatus,
    NodeInfo,
    RuleConfig,
    ServiceConfig,
    ServiceStatus,
)

Log = Callable[[str, str], None]


class ManagerPorts(Protocol):
    def log(self, level: str, msg: str) -> None: ...

    def sendmail(self, subject: str, text: str) -> None: ...

    def fence_lock(self, node: str) -> bool:
        """Try to take a failed node's lease (the fence acknowledgement; the store grants
        it only once the lease expired)."""
        ...

    def remove_locks(self, sid: str, locks: list[str], fenced_node: str) -> str | None: ...

    # fence devices (datacenter ha.fencing = hardware | both; core/fencing.py)
    def fence_levels(self, node: str) -> int: ...

    def fence_device(self, node: str, level: int) -> DeviceResult | None: ...

    def take_fenced_lease(self, node: str) -> bool | None: ...


# guest locks that are safe to drop once the node that held them was fenced (reset)
REMOVABLE_LOCKS_AFTER_FENCE = [
    "backup", "mounted", "migrate", "clone", "rollback", "snapshot", "snapshot-delete",
    "suspending", "suspended",
]


@dataclass(frozen=True)
class ManagerView:
    """What the master sees at the start of a round."""

    now: float
    node_info: Mapping[str, NodeInfo]
    lrm_status: Mapping[str, LrmStatus]
    service_config: Mapping[str, ServiceConfig]
    groups: Mapping[str, GroupConfig] = field(default_factory=dict)
    rules: Mapping[str, RuleConfig] = field(default_factory=dict)
    crm_commands: Sequence[str] = ()
    datacenter: DatacenterConfig = field(default_factory=lambda: DatacenterConfig())
    # for the 'static'/'dynamic' scheduler: node -> {maxcpu, maxmem}, sid -> {maxcpu, maxmem}
    node_stats: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    service_stats: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


@dataclass
class ManagerResult:
    manager_status: ManagerStatus | None  # None: nothing to write ("master seems offline")
    effects: list[Effect]


def new_uid(seed: str, state: str, counter: int) -> str:
    digest = hashlib.md5(f"{seed}|{state}|{counter}".encode()).digest()
    return base64.b64encode(digest).decode().rstrip("=")


# --- preparing a round ----------------------------------------------------------------------

@dataclass(frozen=True)
class LrmReports:
    modes: dict[str, str]  # node -> LRM mode (active, restart, shutdown, maintenance)
    states: dict[str, str]  # node -> LRM state ('' when it never wrote one)
    results: dict[str, LrmResult]  # uid -> result, whichever node reported it


def read_lrm_reports(view: ManagerView, nodes: list[str]) -> LrmReports:
    modes: dict[str, str] = {}
    states: dict[str, str] = {}
    results: dict[str, LrmResult] = {}
    for node in nodes:
        st = view.lrm_status.get(node, {})
        modes[node] = st.get("mode") or "active"
        states[node] = st.get("state") or ""
        for uid, res in st.get("results", {}).items():
            results.setdefault(uid, res)
    return LrmReports(modes, states, results)


def sync_service_list(ss: dict[str, ServiceStatus], sc: Mapping[str, ServiceConfig],
                      new_uid: Callable[[str], str], log: Log) -> None:
    """Track every configured service that is not 'ignored', and only those."""
    for sid in sorted(sc):
        if sid in ss or sc[sid]["state"] == "ignored":
            continue
        cd = sc[sid]
        log("info", f"adding new service '{sid}' on node '{cd['node']}'")
        state = "request_start" if cd["state"] == "started" else "request_stop"
        ss[sid] = {"state": state, "node": cd["node"], "uid": new_uid("started")}
    for sid in sorted(ss):
        if sid in sc and sc[sid]["state"] != "ignored":
            continue
        reason = "ignored state requested" if sid in sc else "no config"
        log("info", f"removing stale service '{sid}' ({reason})")
        del ss[sid]


def rules_key(view: ManagerView, sc: Mapping[str, ServiceConfig], nodes: list[str]) -> object:
    """Everything the compiled rules depend on."""
    return (repr(sorted(view.rules.items())), repr(sorted(view.groups.items())),
            repr(sorted((s, c.get("group")) for s, c in sc.items())), tuple(nodes))


def compile_all_rules(view: ManagerView, sc: Mapping[str, ServiceConfig], nodes: list[str],
                      log: Log | None = None) -> CompiledRules:
    """The rules and the groups (node-affinity rules in current Proxmox), checked and
    compiled; every infeasible rule is left out and logged ("Drop rule 'ID', because
    ...", as Proxmox's CRM whenever the rules, groups, services or nodes change)."""
    rules = dict(view.rules)
    rules.update(cfgmod.groups_to_rules(view.groups, dict(sc)))
    compiled, checked = compile_checked(rules, nodes)
    if log is not None:
        for message in checked.messages:
            log("info", message)
    return compiled


@dataclass(frozen=True)
class SchedulerMode:
    mode: str  # basic | static | dynamic
    rebalance_on_request_start: bool


def scheduler_mode(dc: DatacenterConfig, old: str | None, log: Log) -> SchedulerMode:
    crs: dict[str, object] = dict(dc.get("crs", {}))  # type: ignore[arg-type,unused-ignore]
    on_start = bool(crs.get("ha-rebalance-on-start") or crs.get("ha_rebalance_on_start"))
    new_mode = str(crs.get("ha") or "basic")
    if old is None:
        if new_mode != "basic":
            log("info", f"using scheduler mode '{new_mode}'")
    elif new_mode != old:
        log("info", f"switching scheduler mode from '{old}' to '{new_mode}'")
    return SchedulerMode(new_mode, on_start)
