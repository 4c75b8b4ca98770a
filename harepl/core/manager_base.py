"""State and helpers shared by the CRM master's decision modules (see manager.py)."""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from harepl.core.node_status import NodeStatus
from harepl.core.placement import BasicUsage, CompiledRules, NodePreference, StaticUsage
from harepl.core.placement import select_service_node as _select
from harepl.core.policy import SAFE, SafetyPolicy
from harepl.core.types import (
    DatacenterConfig,
    GroupConfig,
    LrmStatus,
    ManagerStatus,
    NodeInfo,
    RuleConfig,
    ServiceConfig,
    ServiceStatus,
)

VALID_SERVICE_STATES = frozenset(
    {"stopped", "request_stop", "request_start", "request_start_balance", "started", "fence",
     "recovery", "migrate", "relocate", "freeze", "error"}
)

class ManagerPorts(Protocol):
    def log(self, level: str, msg: str) -> None: ...

    def sendmail(self, subject: str, text: str) -> None: ...

    def fence_lock(self, node: str) -> bool: ...

    def remove_locks(self, sid: str, locks: list[str], fenced_node: str) -> str | None: ...


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
class Effect:
    """A configuration change the master commits with its manager_status."""

    kind: str  # 'steal_service' | 'update_service_config'
    sid: str
    current_node: str = ""
    new_node: str = ""
    changes: dict[str, object] = field(default_factory=dict)


@dataclass
class ManagerResult:
    manager_status: ManagerStatus | None  # None: nothing to write ("master seems offline")
    effects: list[Effect]


def new_uid(seed: str, state: str, counter: int) -> str:
    digest = hashlib.md5(f"{seed}|{state}|{counter}".encode()).digest()
    return base64.b64encode(digest).decode().rstrip("=")


class ManagerBase:
    def __init__(self, nodename: str, old_ms: ManagerStatus, fence_delay_s: float = 60.0,
                 policy: SafetyPolicy = SAFE) -> None:
        old: ManagerStatus = copy.deepcopy(old_ms)
        self.nodename = nodename
        self.policy = policy
        self.ns = NodeStatus(old.get("node_status", {}), fence_delay_s=fence_delay_s)
        self.ss: dict[str, ServiceStatus] = dict(old.get("service_status", {}))
        self.node_request: dict[str, dict[str, int]] | None = (
            {n: {"maintenance": int(r["maintenance"])} if "maintenance" in r else {} for n, r in old["node_request"].items()} if "node_request" in old else None
        )
        self.disarm: dict[str, str] | None = dict(old["disarm"]) if "disarm" in old else None
        self.rearmed_this_round = False
        self.rebalance_rounds = 0
        self.uid_counter = 0
        self.uid_seed = f"{nodename}|{old.get('timestamp', 0)}|{sorted(self.ss)}"
        self.usage = BasicUsage([])
        self.compiled = CompiledRules()
        self._compiled_key: object = None
        self.ports: ManagerPorts
        self.effects: list[Effect] = []
        self.now = 0.0
        self.scheduler: str | None = None
        self.view: ManagerView | None = None

    # --- helpers ----------------------------------------------------------------------------

    def _log(self, level: str, msg: str) -> None:
        self.ports.log(level, msg)

    def _uid(self, state: str) -> str:
        self.uid_counter += 1
        return new_uid(self.uid_seed, state, self.uid_counter)

    def _recompute_usage(self) -> None:
        self.usage = BasicUsage(self.ns.list_online_nodes())
        if self.scheduler in ("static", "dynamic") and self.view is not None:
            try:
                self.usage = StaticUsage(self.ns.list_online_nodes(), self.view.node_stats, self.view.service_stats)
            except ValueError as exc:
                self._log("warning", f"fallback to 'basic' scheduler mode, init for '{self.scheduler}' failed - {exc}")
        for sid in sorted(self.ss):
            self.usage.add_service_usage(sid, self.ss[sid])  # type: ignore[arg-type,unused-ignore]

    def _change_state(self, sid: str, new_state: str, **params: str | int) -> None:
        sd = self.ss[sid]
        old_state = sd["state"]
        assert old_state != new_state, "no state change"
        assert new_state in VALID_SERVICE_STATES, new_state
        new: ServiceStatus = {"state": new_state, "node": sd["node"], "uid": ""}
        if "failed_nodes" in sd:
            new["failed_nodes"] = sd["failed_nodes"]
        if "maintenance_node" in sd:
            new["maintenance_node"] = sd["maintenance_node"]
        if new_state == "error" and sd.get("stop_unconfirmed"):
            new["stop_unconfirmed"] = 1
        text = ", ".join(f"{k} = {params[k]}" for k in sorted(params))
        for k in sorted(params):
            new[k] = params[k]  # type: ignore[literal-required]
        new["uid"] = self._uid(new_state)
        self.ss[sid] = new
        self.usage.remove_service_usage(sid)
        self.usage.add_service_usage(sid, new)  # type: ignore[arg-type,unused-ignore]
        suffix = f"  ({text})" if text else ""
        self._log("info", f"service '{sid}': state changed from '{old_state}' to '{new_state}'{suffix}")

    def select_node(self, sid: str, cd: ServiceConfig, pref: NodePreference) -> str | None:
        return _select(self.compiled, self.usage, sid, cd, self.ss, pref)

    # --- the round ------------------------------------------------------------------------------

    def _status(self, now: float) -> ManagerStatus:
        ms: ManagerStatus = {
            "master_node": self.nodename,
            "node_status": dict(self.ns.status),
            "service_status": copy.deepcopy(self.ss),
            "timestamp": now,
        }
        if self.node_request is not None:
            ms["node_request"] = copy.deepcopy(self.node_request)  # type: ignore[arg-type]
        if self.disarm is not None:
            ms["disarm"] = dict(self.disarm)
        return ms

    # --- disarm (take the HA stack out of action without touching the services) -------

    def _update_scheduler_mode(self, dc: DatacenterConfig) -> None:
        crs: dict[str, object] = dict(dc.get("crs", {}))  # type: ignore[arg-type,unused-ignore]
        self.rebalance_on_request_start = bool(crs.get("ha-rebalance-on-start") or crs.get("ha_rebalance_on_start"))
        new_mode = str(crs.get("ha") or "basic")
        if self.scheduler is None:
            if new_mode != "basic":
                self._log("info", f"using scheduler mode '{new_mode}'")
        elif new_mode != self.scheduler:
            self._log("info", f"switching scheduler mode from '{self.scheduler}' to '{new_mode}'")
        self.scheduler = new_mode

    # --- crm commands -----------------------------------------------------------------------

