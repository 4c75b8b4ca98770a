"""The CRM master's decisions (the semantics of Proxmox's Manager.pm).

`Manager` keeps only what the master itself remembers between rounds (node status with
the times it last saw each node, service status, pending node requests). Each call of
`manage(view, ports)` takes an immutable snapshot of the cluster (`ManagerView`), decides,
and returns the new manager_status plus the configuration changes to commit. It does no
I/O: its only ways out are `ports.log`, `ports.sendmail` and `ports.fence_lock(node)`,
which tries to take a failed node's lease (the fence acknowledgement; granted by the
store only once the lease expired).
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from harepl.core import config as cfgmod
from harepl.core import rebalance
from harepl.core.node_status import NodeStatus
from harepl.core.placement import BasicUsage, CompiledRules, NodePreference, StaticUsage, compile_rules
from harepl.core.placement import select_service_node as _select
from harepl.core.types import (
    ERROR,
    EWRONG_NODE,
    IGNORED,
    SUCCESS,
    DatacenterConfig,
    GroupConfig,
    LrmResult,
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


class Manager:
    def __init__(self, nodename: str, old_ms: ManagerStatus, fence_delay_s: float = 60.0) -> None:
        old: ManagerStatus = copy.deepcopy(old_ms)
        self.nodename = nodename
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

    def manage(self, view: ManagerView, ports: ManagerPorts) -> ManagerResult:
        self.ports = ports
        self.effects = []
        self.now = view.now
        self.view = view
        ns = self.ns

        lrm_results: dict[str, LrmResult] = {}
        lrm_modes: dict[str, str] = {}
        for node in ns.list_nodes():
            st = view.lrm_status.get(node, {})
            lrm_modes[node] = st.get("mode") or "active"
            for uid, res in st.get("results", {}).items():
                lrm_results.setdefault(uid, res)

        if self.scheduler is None:
            self._update_scheduler_mode(view.datacenter)  # first round: before anything else
        ns.update(view.node_info, lrm_modes, view.now, self._log)
        if not ns.node_is_operational(self.nodename):
            self._log("info", "master seems offline")
            return ManagerResult(None, [])

        self._update_scheduler_mode(view.datacenter)

        sc: dict[str, ServiceConfig] = copy.deepcopy(dict(view.service_config))
        sc = cfgmod.apply_group_failback(view.groups, sc)

        for sid in sorted(sc):
            if sid in self.ss:
                continue
            new_cd = sc[sid]
            if new_cd["state"] == "ignored":
                continue
            self._log("info", f"adding new service '{sid}' on node '{new_cd['node']}'")
            state = "request_start" if new_cd["state"] == "started" else "request_stop"
            self.ss[sid] = {"state": state, "node": new_cd["node"], "uid": self._uid("started")}

        for sid in sorted(self.ss):
            if sid in sc and sc[sid]["state"] != "ignored":
                continue
            reason = "ignored state requested" if sid in sc else "no config"
            self._log("info", f"removing stale service '{sid}' ({reason})")
            del self.ss[sid]

        self._recompute_usage()

        # groups are node-affinity rules in current Proxmox; compile when anything changed
        key = (repr(sorted(view.rules.items())), repr(sorted(view.groups.items())),
               repr(sorted((s, c.get("group")) for s, c in sc.items())), tuple(ns.list_nodes()))
        if key != self._compiled_key:
            rules = dict(view.rules)
            rules.update(cfgmod.groups_to_rules(view.groups, sc))
            self.compiled = compile_rules(rules, ns.list_nodes())
            self._compiled_key = key

        self.rearmed_this_round = False
        commands = list(view.crm_commands)
        if self.disarm is None:
            rebalance = self._auto_rebalance(view)
            if rebalance is not None:
                commands.insert(0, rebalance)
        self._update_crm_commands(commands, sc)

        if self.disarm is not None or self.rearmed_this_round:
            if self.disarm is not None and self.disarm.get("state") == "disarming":
                blocking = [s for s in sorted(self.ss) if self.ss[s]["state"] in ("fence", "recovery")]
                for sid in blocking:
                    self._log("warn", f"deferring disarm - service '{sid}' is in '{self.ss[sid]['state']}' state")
                for sd in self.ss.values():
                    sd.pop("cmd", None)  # disarm pre-empts pending migrate/relocate/stop commands
                if blocking:
                    self._service_rounds(sc, lrm_results, lrm_modes)  # let fencing finish first
                else:
                    self._disarm_services()
                    self._check_lrms_disarmed(view)
            return ManagerResult(self._status(view.now), self.effects)

        self._service_rounds(sc, lrm_results, lrm_modes)
        return ManagerResult(self._status(view.now), self.effects)

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

    def _disarm_services(self) -> None:
        assert self.disarm is not None
        for sid in sorted(self.ss):
            sd = self.ss[sid]
            if self.disarm.get("mode") == "ignore":
                self._log("info", f"disarm: suspending HA tracking for service '{sid}'")
            elif sd["state"] not in ("freeze", "error"):
                self._log("info", f"disarm: freezing service '{sid}' (was '{sd['state']}')")
                new: ServiceStatus = {"state": "freeze", "node": sd["node"], "uid": self._uid("freeze")}
                for keep in ("failed_nodes", "maintenance_node"):
                    if keep in sd:
                        new[keep] = sd[keep]  # type: ignore[literal-required,unused-ignore]
                self.ss[sid] = new

    def _check_lrms_disarmed(self, view: ManagerView) -> None:
        assert self.disarm is not None
        for node in self.ns.list_nodes():
            if not view.node_info.get(node, {"online": False})["online"]:
                continue
            if view.lrm_status.get(node, {}).get("state") == "active":
                return
        self._log("info", "all LRMs disarmed, HA stack is now fully disarmed")
        self._log("info", "HA stack fully disarmed, releasing CRM watchdog")
        self.disarm["state"] = "disarmed"

    def _service_rounds(self, sc: dict[str, ServiceConfig], lrm_results: dict[str, LrmResult],
                        lrm_modes: dict[str, str]) -> None:
        ns = self.ns
        ports = self.ports
        while True:
            repeat = False
            for sid in sorted(self.ss):
                if sid not in self.ss:
                    continue
                sd = self.ss[sid]
                cd: ServiceConfig = sc.get(sid) or {"state": "disabled", "node": sd["node"]}
                lrm_res = lrm_results.get(sd["uid"]) if sd.get("uid") else None
                last_state = sd["state"]
                if last_state == "stopped":
                    self._next_state_stopped(sid, cd, lrm_res)
                elif last_state == "started":
                    self._next_state_started(sid, cd, lrm_res)
                elif last_state == "request_start":
                    self._next_state_request_start(sid, cd)
                elif last_state in ("migrate", "relocate", "request_start_balance"):
                    self._next_state_migrate_relocate(sid, cd, lrm_res)
                elif last_state == "fence":
                    pass  # wait until fenced
                elif last_state == "recovery":
                    self._next_state_recovery(sid, cd, sc)
                elif last_state == "request_stop":
                    self._next_state_request_stop(sid, lrm_res)
                elif last_state == "freeze":
                    mode = lrm_modes.get(sd["node"])
                    if mode == "active":  # unfreeze
                        self._change_state(sid, "started" if cd["state"] == "started" else "request_stop")
                elif last_state == "error":
                    self._next_state_error(sid, cd)
                else:
                    raise AssertionError(f"unknown service state '{last_state}'")

                sd = self.ss[sid]
                if lrm_modes.get(sd["node"]) == "restart" and sd["state"] in (
                    "started", "stopped", "request_stop"
                ):
                    self._change_state(sid, "freeze")
                if self.ss[sid]["state"] != last_state:
                    repeat = True

            fenced: dict[str, bool] = {}
            for sid in sorted(self.ss):
                sd = self.ss[sid]
                if sd["state"] != "fence":
                    continue
                node = sd["node"]
                if node not in fenced:
                    fenced[node] = ns.fence_node(node, ports.fence_lock, self._log, ports.sendmail)
                if fenced[node]:
                    self._change_state(sid, "recovery")
                    repeat = True

            # a node in 'fence' without services to fence (removed by an admin) must not
            # stay there forever
            for node in sorted(n for n in list(ns.status) if n not in fenced):
                if ns.get_node_state(node) != "fence":
                    continue
                self._log("notice", f"node '{node}' in fence state but no services to-fence! admin interference?!")
                if ns.fence_node(node, ports.fence_lock, self._log, ports.sendmail):
                    repeat = True
            if not repeat:
                break

    def _auto_rebalance(self, view: ManagerView) -> str | None:
        """A 'migrate SID NODE' command when the cluster stayed imbalanced long enough."""
        crs: dict[str, object] = dict(view.datacenter.get("crs", {}))  # type: ignore[arg-type,unused-ignore]
        if not crs.get("ha-auto-rebalance") or self.scheduler not in ("static", "dynamic"):
            return None
        if any(sd["state"] in rebalance.IN_FLIGHT for sd in self.ss.values()):
            self.rebalance_rounds = 0  # judge the cluster only once moves have landed
            return None
        online = self.ns.list_online_nodes()
        if not online or any(not view.node_stats.get(n) for n in online):
            return None
        placed = {sid: sd["node"] for sid, sd in self.ss.items() if sd["state"] == "started"}
        static = self.scheduler == "static"
        level = rebalance.imbalance(
            rebalance.node_loads(placed, online, view.node_stats, view.service_stats, static))
        if level <= rebalance.IMBALANCE_THRESHOLD:
            self.rebalance_rounds = 0
            return None
        self.rebalance_rounds += 1
        hold = int(str(crs.get("ha-auto-rebalance-hold-duration") or rebalance.DEFAULT_HOLD_ROUNDS))
        if self.rebalance_rounds < hold:
            return None
        move = rebalance.best_migration(self.ss, online, self.compiled, view.node_stats, view.service_stats,
                                        zero_cpu_is_unlimited=static,
                                        method=str(crs.get("ha-auto-rebalance-method") or "exhaustive"))
        if move is None:
            return None
        self.rebalance_rounds = 0
        self._log("info", f"auto rebalance - migrate {move.sids[0]} to {move.target} (expected change for "
                  f"imbalance from {move.before:.2f} to {move.after:.2f})")
        return f"migrate {move.sids[0]} {move.target}"

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

    def _update_crm_commands(self, commands: Sequence[str], sc: Mapping[str, ServiceConfig]) -> None:
        ns = self.ns
        for raw in commands:
            cmd = raw.strip()
            parts = cmd.split()
            if len(parts) == 2 and parts[0] == "disarm-ha" and parts[1] in ("freeze", "ignore"):
                if self.disarm is not None:
                    self._log("notice", f"ignoring disarm-ha command - already in disarm state ({self.disarm.get('state')})")
                else:
                    self._log("info", f"got crm command: {cmd}")
                    self.disarm = {"mode": parts[1], "state": "disarming"}
            elif len(parts) == 1 and parts[0] == "arm-ha":
                if self.disarm is None:
                    self._log("notice", "ignoring arm-ha command - HA stack is not disarmed")
                else:
                    self._log("info", f"got crm command: {cmd}")
                    if self.disarm.get("mode") == "ignore":
                        for sid in sorted(self.ss):
                            cd = sc.get(sid)
                            if cd is not None and cd["node"] != self.ss[sid]["node"]:
                                self._log("info", f"service '{sid}': updating node '{self.ss[sid]['node']}' => "
                                          f"'{cd['node']}' (changed while disarmed)")
                                self.ss[sid]["node"] = cd["node"]
                    self._log("info", "re-arming HA stack")
                    self.disarm = None
                    self.rearmed_this_round = True
            elif len(parts) == 3 and parts[0] in ("migrate", "relocate"):
                task, sid, node = parts
                if sid not in self.ss:
                    self._log("err", f"crm command error - no such service: {cmd}")
                elif not ns.node_is_online(node):
                    self._log("err", f"crm command error - node not online: {cmd}")
                elif node == self.ss[sid]["node"]:
                    self._log("info", f"ignore crm command - service already on target node: {cmd}")
                else:
                    self._execute_migration(cmd, task, sid, node)
            elif len(parts) == 3 and parts[0] == "stop":
                sid, timeout = parts[1], parts[2]
                if sid in self.ss:
                    self._log("info", f"got crm command: {cmd}")
                    self.ss[sid]["cmd"] = ["stop", timeout]
                else:
                    self._log("err", f"crm command error - no such service: {cmd}")
            elif len(parts) == 2 and parts[0] == "enable-node-maintenance":
                node = parts[1]
                state = ns.get_node_state(node)
                if state == "online":
                    if self.node_request is None:
                        self.node_request = {}
                    self.node_request.setdefault(node, {})["maintenance"] = 1
                elif state == "maintenance":
                    self._log("info", f"ignoring crm command - node {node} is already in maintenance state")
                else:
                    self._log("err", f"crm command error - node not online: {cmd}")
            elif len(parts) == 2 and parts[0] == "disable-node-maintenance":
                node = parts[1]
                state = ns.get_node_state(node)
                if state != "maintenance":
                    self._log("warn", f"clearing maintenance of node {node} requested, but it's in state {state}")
                if self.node_request is not None and node in self.node_request:
                    self.node_request[node].pop("maintenance", None)
            else:
                self._log("err", f"unable to parse crm command: {cmd}")

    def _execute_migration(self, cmd: str, task: str, sid: str, target: str) -> None:
        ss = self.ss
        for csid in sorted(self.compiled.negative.get(sid, ())):
            c = ss.get(csid)
            if c is None:
                continue
            if c.get("node") and c["node"] != target:
                continue
            if c.get("target") and c.get("target") != target:
                continue
            self._log("err", f"crm command '{cmd}' error - service '{csid}' on node '{target}' in"
                      f" negative affinity with service '{sid}'")
            return
        self._log("info", f"got crm command: {cmd}")
        ss[sid]["cmd"] = [task, target]
        for csid in sorted(self.compiled.positive.get(sid, ())):
            c = ss.get(csid)
            if c is None or c.get("node") == target or c.get("target") == target:
                continue
            self._log("info", f"crm command '{cmd}' - {task} service '{csid}' to node '{target}'"
                      f" (service '{csid}' in positive affinity with service '{sid}')")
            c["cmd"] = [task, target]

    # --- per-state transitions ----------------------------------------------------------

    def _next_state_request_stop(self, sid: str, lrm_res: LrmResult | None) -> None:
        sd = self.ss[sid]
        if lrm_res is not None:
            if lrm_res["exit_code"] == SUCCESS:
                self._change_state(sid, "stopped")
            else:
                self._log("err", f"service '{sid}' stop failed (exit code {lrm_res['exit_code']})")
                self._change_state(sid, "error")
            return
        if self.ns.node_is_offline_delayed(sd["node"], self.now):
            self._change_state(sid, "fence")

    def _next_state_migrate_relocate(self, sid: str, cd: ServiceConfig, lrm_res: LrmResult | None) -> None:
        sd = self.ss[sid]
        if lrm_res is not None:
            ec = lrm_res["exit_code"]
            req_state = "started" if cd["state"] == "started" else "request_stop"
            if ec == SUCCESS:
                self._change_state(sid, req_state, node=sd.get("target", sd["node"]))
                return
            if ec == EWRONG_NODE:
                self._log("err", f"service '{sid}' - migration failed: service registered on wrong node!")
                self._change_state(sid, "error")
            elif ec == IGNORED:
                self._log("info", f"service '{sid}' - rebalance-on-start request ignored - service already running")
                self._change_state(sid, req_state, node=sd["node"])
            else:
                self._log("err", f"service '{sid}' - migration failed (exit code {ec})")
                self._change_state(sid, req_state, node=sd["node"])
                return
        sd = self.ss[sid]
        if self.ns.node_is_offline_delayed(sd["node"], self.now):
            self._change_state(sid, "fence")

    def _next_state_stopped(self, sid: str, cd: ServiceConfig, lrm_res: LrmResult | None) -> None:
        sd = self.ss[sid]
        ns = self.ns
        if sd["node"] != cd["node"]:
            # can happen if we fence a node with active migrations
            self._log("info", f"fixup service '{sid}' location ({sd['node']} => {cd['node']})")
            sd["node"] = cd["node"]
        if "cmd" in sd:
            cmd = list(sd.pop("cmd"))
            task = cmd[0] if cmd else ""
            if task in ("migrate", "relocate"):
                target = cmd[1]
                if not ns.node_is_online(target):
                    self._log("err", f"ignore service '{sid}' {task} request - node '{target}' not online")
                elif sd["node"] == target:
                    self._log("info", f"ignore service '{sid}' {task} request - service already on node '{target}'")
                else:
                    self._change_state(sid, task, node=sd["node"], target=target)
                    return
            elif task == "stop":
                self._log("info", f"ignore service '{sid}' {task} request - service already stopped")
            else:
                self._log("err", f"unknown command '{task}' for service '{sid}'")
        if cd["state"] == "disabled":
            # the LRM keeps stopping it; nothing to do (works without an active CRM too)
            return
        if ns.node_is_offline_delayed(sd["node"], self.now) and ns.get_node_state(sd["node"]) != "maintenance":
            self._change_state(sid, "fence")
            return
        if cd["state"] == "stopped":
            return  # like disabled, but recovered from a failed node
        if cd["state"] == "started":
            self._change_state(sid, "request_start", node=sd["node"])
            return
        self._log("err", f"service '{sid}' - unknown state '{cd['state']}' in service configuration")

    def _next_state_request_start(self, sid: str, cd: ServiceConfig) -> None:
        sd = self.ss[sid]
        current = sd["node"]
        if self.rebalance_on_request_start:
            selected = self.select_node(sid, cd, "best-score")
            if selected is not None:
                which = "new" if selected != current else "current"
                self._log("info", f"service {sid}: re-balance selected {which} node {selected} for startup")
                if selected != current:
                    self._change_state(sid, "request_start_balance", node=current, target=selected)
                    return
        self._change_state(sid, "started", node=current)

    rebalance_on_request_start = False

    def _record_failed(self, sid: str, node: str) -> None:
        self.ss[sid].setdefault("failed_nodes", []).append(node)

    def _next_state_started(self, sid: str, cd: ServiceConfig, lrm_res: LrmResult | None) -> None:
        ns = self.ns
        sd = self.ss[sid]
        if not ns.node_is_online(sd["node"]):
            if ns.node_is_offline_delayed(sd["node"], self.now):
                self._change_state(sid, "fence")
            if ns.get_node_state(sd["node"]) != "maintenance":
                return
            # remember where to come back to once the node leaves maintenance
            sd = self.ss[sid]
            sd["maintenance_node"] = sd["node"]
        sd = self.ss[sid]
        if cd["state"] in ("disabled", "stopped"):
            self._change_state(sid, "request_stop")
            return
        if cd["state"] != "started":
            self._log("err", f"service '{sid}' - unknown state '{cd['state']}' in service configuration")
            return

        if "cmd" in sd:
            cmd = list(sd.pop("cmd"))
            task = cmd[0] if cmd else ""
            if task in ("migrate", "relocate"):
                target = cmd[1]
                if not ns.node_is_online(target):
                    self._log("err", f"ignore service '{sid}' {task} request - node '{target}' not online")
                elif sd["node"] == target:
                    self._log("info", f"ignore service '{sid}' {task} request - service already on node '{target}'")
                else:
                    self._log("info", f"{task} service '{sid}' to node '{target}'")
                    self._change_state(sid, task, node=sd["node"], target=target)
            elif task == "stop":
                timeout = int(cmd[1])
                if timeout == 0:
                    self._log("info", f"request immediate service hard-stop for service '{sid}'")
                else:
                    self._log("info", f"request graceful stop with timeout '{timeout}' for service '{sid}'")
                self._change_state(sid, "request_stop", timeout=timeout)
                self.effects.append(Effect("update_service_config", sid, changes={"state": "stopped"}))
            else:
                self._log("err", f"unknown command '{task}' for service '{sid}'")
            return

        pref: NodePreference = "none"
        if lrm_res is not None:
            ec = lrm_res["exit_code"]
            if ec == SUCCESS:
                if "failed_nodes" in sd:
                    self._log("info", f"relocation policy successful for '{sid}' on node '{sd['node']}',"
                              f" failed nodes: {', '.join(sd['failed_nodes'])}")
                sd.pop("failed_nodes", None)
                sd["running"] = 1
            elif ec in (ERROR, EWRONG_NODE):
                sd.pop("running", None)
                self._record_failed(sid, sd["node"])
                if len(sd["failed_nodes"]) <= cd.get("max_relocate", 1):
                    pref = "try-next"
                    self._log("warning", f"starting service {sid} on node '{sd['node']}' failed, relocating service.")
                else:
                    self._log("err", f"recovery policy for service {sid} failed, entering error state."
                              f" Failed nodes: {', '.join(sd['failed_nodes'])}")
                    self._change_state(sid, "error")
                    return
            else:
                self._record_failed(sid, sd["node"])
                self._log("err", f"service '{sid}' got unrecoverable error (exit code {ec}))")
                self._change_state(sid, "error")
                return

        node = self.select_node(sid, cd, pref)
        if node is not None and sd["node"] != node:
            fallback = sd.get("maintenance_node")
            if fallback is not None:
                if node == fallback:
                    self._log("info", f"moving service '{sid}' back to '{fallback}', node came back from maintenance.")
                    sd.pop("maintenance_node", None)
                elif sd["node"] != fallback:
                    self._log("info", f"dropping maintenance fallback node '{fallback}' for '{sid}'")
                    sd.pop("maintenance_node", None)
            if cd.get("type") == "vm":
                self._log("info", f"migrate service '{sid}' to node '{node}' (running)")
                self._change_state(sid, "migrate", node=sd["node"], target=node)
            else:
                self._log("info", f"relocate service '{sid}' to node '{node}'")
                self._change_state(sid, "relocate", node=sd["node"], target=node)
            return
        if pref == "try-next" and node is None:
            self._log("warning", f"Start Error Recovery: Tried all available nodes for service '{sid}', retry"
                      f" start on current node. Tried nodes: {', '.join(sd.get('failed_nodes', []))}")
        if sd.get("maintenance_node") and sd["node"] == sd.get("maintenance_node"):
            if ns.get_node_state(sd["node"]) == "online":
                self._log("info", f"service '{sid}': clearing stale maintenance node "
                          f"'{sd['maintenance_node']}' setting (is current node)")
                sd.pop("maintenance_node", None)
        # make sure the service gets started again if it went down unexpectedly, without
        # losing an LRM result
        if lrm_res is not None:
            sd["uid"] = self._uid(sd["state"])

    def _next_state_error(self, sid: str, cd: ServiceConfig) -> None:
        if cd["state"] == "disabled":
            self.ss[sid].pop("failed_nodes", None)
            self._change_state(sid, "stopped")

    def _next_state_recovery(self, sid: str, cd: ServiceConfig, sc: dict[str, ServiceConfig]) -> None:
        sd = self.ss[sid]
        fenced_node = sd["node"]
        recovery_node = self.select_node(sid, cd, "best-score")
        if recovery_node is not None:
            if recovery_node == fenced_node:
                msg = f"recover service '{sid}' to previous failed and fenced node '{fenced_node}' again"
            else:
                msg = f"recover service '{sid}' from fenced node '{fenced_node}' to node '{recovery_node}'"
            self._log("info", msg)
            removed = self.ports.remove_locks(sid, list(REMOVABLE_LOCKS_AFTER_FENCE), fenced_node)
            if removed:
                self._log("warning", f"removed leftover lock '{removed}' from recovered service '{sid}' to allow its start.")
            self.effects.append(Effect("steal_service", sid, current_node=fenced_node, new_node=recovery_node))
            cd["node"] = recovery_node
            if sid in sc:
                sc[sid]["node"] = recovery_node
            sd["node"] = recovery_node
            self._change_state(sid, "started" if cd["state"] == "started" else "request_stop", node=recovery_node)
        else:
            self._log("err", f"recovering service '{sid}' from fenced node '{fenced_node}' failed, no recovery node found")
            if cd["state"] == "disabled":
                sd.pop("failed_nodes", None)
                self._change_state(sid, "stopped")
