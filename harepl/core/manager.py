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

import copy

from harepl.core import config as cfgmod
from harepl.core.crm_commands import CommandsMixin
from harepl.core.manager_base import (
    REMOVABLE_LOCKS_AFTER_FENCE,
    Effect,
    ManagerPorts,
    ManagerResult,
    ManagerView,
    new_uid,
)
from harepl.core.placement import NodePreference, compile_rules, get_node_affinity
from harepl.core.types import (
    ERROR,
    EWRONG_NODE,
    IGNORED,
    SUCCESS,
    LrmResult,
    ServiceConfig,
)

__all__ = ["Effect", "Manager", "ManagerPorts", "ManagerResult", "ManagerView", "new_uid"]


class Manager(CommandsMixin):
    """The CRM master: `manage(view, ports)` once per round."""

    def manage(self, view: ManagerView, ports: ManagerPorts) -> ManagerResult:
        self.ports = ports
        self.effects = []
        self.now = view.now
        self.view = view
        ns = self.ns

        lrm_results: dict[str, LrmResult] = {}
        lrm_modes: dict[str, str] = {}
        self.lrm_states: dict[str, str] = {}
        for node in ns.list_nodes():
            st = view.lrm_status.get(node, {})
            lrm_modes[node] = st.get("mode") or "active"
            self.lrm_states[node] = st.get("state") or ""
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
                    # safe policy: only once that LRM holds its lease with the watchdog armed
                    guarded = not self.policy.guard_frozen or self.lrm_states.get(sd["node"]) == "active"
                    if mode == "active" and guarded:  # unfreeze
                        self._change_state(sid, "started" if cd["state"] == "started" else "request_stop")
                elif last_state == "error":
                    self._next_state_error(sid, cd, lrm_res)
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

    def _next_state_request_stop(self, sid: str, lrm_res: LrmResult | None) -> None:
        sd = self.ss[sid]
        if lrm_res is not None:
            if lrm_res["exit_code"] == SUCCESS:
                self._change_state(sid, "stopped")
            else:
                self._log("err", f"service '{sid}' stop failed (exit code {lrm_res['exit_code']})")
                if self.policy.confirm_stop:
                    self._log("err", f"service '{sid}': stop not confirmed - it stays in 'error' until its "
                                     "node confirms it no longer runs")
                    sd["stop_unconfirmed"] = 1
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

    def _move_allowed(self, sid: str, task: str, target: str) -> bool:
        """A queued migrate/relocate may run: its target is online and not the current node
        (otherwise the request is dropped with Proxmox's log line)."""
        if not self.ns.node_is_online(target):
            self._log("err", f"ignore service '{sid}' {task} request - node '{target}' not online")
            return False
        if self.ss[sid]["node"] == target:
            self._log("info", f"ignore service '{sid}' {task} request - service already on node '{target}'")
            return False
        return True

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
                if self._move_allowed(sid, task, target):
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
            if not self._any_allowed_node(sid):
                return  # strict node affinity, no member online: stays stopped
            self._change_state(sid, "request_start", node=sd["node"])
            return
        self._log("err", f"service '{sid}' - unknown state '{cd['state']}' in service configuration")

    def _any_allowed_node(self, sid: str) -> bool:
        """False if node affinity (a strict rule / restricted group) allows no online node."""
        online = self.ns.list_online_nodes()
        if sid not in self.compiled.node_affinity or not online:
            return True  # no rule, or nothing online at all (e.g. all in maintenance)
        allowed, _ = get_node_affinity(self.compiled, sid, online)
        return bool(allowed)

    def _next_state_request_start(self, sid: str, cd: ServiceConfig) -> None:
        sd = self.ss[sid]
        current = sd["node"]
        if not self._any_allowed_node(sid):
            # the seed: "If no group node member is available the resource will be placed
            # in the stopped state" (Proxmox would start it where it is)
            self._log("info", f"service '{sid}': no allowed node online (strict node affinity), stopping it")
            self._change_state(sid, "request_stop")
            return
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
                if self._move_allowed(sid, task, target):
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

        if pref == "none" and not self._any_allowed_node(sid):
            self._log("info", f"service '{sid}': no allowed node online (strict node affinity), stopping it")
            self._change_state(sid, "request_stop")
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

    def _next_state_error(self, sid: str, cd: ServiceConfig, lrm_res: LrmResult | None) -> None:
        sd = self.ss[sid]
        if sd.get("stop_unconfirmed"):
            # its node's LRM answers the 'error' uid: SUCCESS once it no longer runs there
            if lrm_res is None or lrm_res["exit_code"] != SUCCESS:
                if lrm_res is not None:
                    sd["uid"] = self._uid("error")  # ask again next round
                return
            self._log("info", f"service '{sid}': stop confirmed by node '{sd['node']}'")
            del sd["stop_unconfirmed"]
        if cd["state"] == "disabled":
            # Unlike Proxmox (which forgets them here) the failed nodes are kept: the seed
            # says the relocate count resets only after a successful start, so a service
            # re-enabled without a fix only repeats the restart policy.
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
                # failed nodes kept, as on error -> stopped: only a successful start resets them
                self._change_state(sid, "stopped")

