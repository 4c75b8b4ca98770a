"""The CRM master's handling of crm commands, disarm/arm and auto-rebalance (a mixin of
`Manager`; see manager.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from harepl.core import rebalance
from harepl.core.manager_base import ManagerBase, ManagerView
from harepl.core.types import ServiceConfig, ServiceStatus


class CommandsMixin(ManagerBase):
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

