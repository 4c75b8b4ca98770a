"""The CRM master's state machine (the semantics of Proxmox's Manager.pm).

`Manager.manage(view, ports)` runs one round: it reads an immutable snapshot of the
cluster (`ManagerView`), moves every service through its state machine, and returns the
new manager_status plus the configuration changes to commit (`ManagerResult`). It does no
I/O: its only ways out are the `ports` (log, mail, taking a failed node's lease, removing
guest locks) and the typed effects it returns.

Glossary (Proxmox's names, kept because every HA reader knows them)
    view        ManagerView: what the master sees at the start of a round (read only)
    ms          manager_status: what the master writes (node and service status, requests)
    ns          NodeStatus: the master's view of each node (online, maintenance, unknown,
                fence, gone) with the time it last saw it
    ss / sd     service status: all services / one of them (state, node, uid, target, ...)
    sc / cd     service configuration: all services / one of them (the requested state)
    uid         a fresh id for every state change; the LRM answers a uid at most once
    lrm_res     the LRM's result for the service's current uid (None: no answer yet)
    effect      a configuration change the round asks the CRM role to commit (types.py)
    cmd         a CRM command queued on sd['cmd'] until the service's transition runs it

Rules
    1. One master: only the holder of the manager lease runs this; the CRM role writes its
       result with the manager epoch, so a deposed master's writes are rejected.
    2. Every state change gives the service a new uid, and the master acts only on the
       result reported for the current uid: a late answer to an earlier command is never
       taken for the current one.
    3. Fence before recovery: a service leaves a node that went offline only through
       'fence', and leaves 'fence' for 'recovery' only once that node's lease was taken
       from it (`NodeStatus.fence_node` -> `ports.fence_lock`, which the store grants only
       after the lease expired), so after the service last ran there. The master need not
       still hold that lease when it recovers (docs/safety.md: the one rule the simulator's
       checker applies too).
    4. Frozen means untouched, not unguarded: a service on an LRM in 'restart' mode is
       frozen; it thaws only once that LRM is 'active' again — under the safe policy only
       when it holds its lease with the watchdog armed.
    5. The configuration's requested state wins over placement: disabled/stopped services
       are stopped wherever they are; 'error' is left only by disabling the service (and,
       after a failed stop under the safe policy, only once its node confirms it stopped).
    6. Commands do not change state themselves: they are queued on the service (sd['cmd'])
       and run by its 'stopped' or 'started' transition, in that service's turn.
    7. Disarm pre-empts queued commands and waits for fence/recovery to finish first.
    8. A round repeats the transitions until no service changes state (a fixpoint), so one
       round can take a service from 'fence' through 'recovery' to 'started'.

Service states and where they lead (the transitions below, one method per state)
    request_start          -> started | request_start_balance | request_stop
    started                -> request_stop | migrate | relocate | fence | error
    request_start_balance  -> (as migrate: moves before its first start)
    migrate, relocate      -> started | request_stop (on target, or on source if it failed)
                              | error | fence
    request_stop           -> stopped | error | fence
    stopped                -> request_start | migrate | relocate | fence
    fence                  -> recovery (by the fence pass, never by its own transition)
    recovery               -> started | request_stop (on the recovery node) | stopped
    freeze                 -> started | request_stop
    error                  -> stopped
    started, stopped and request_stop also -> freeze when their LRM restarts.

A round, in order: read the LRMs' modes and results; update node status; stop if this
master is not operational; add new services, drop unconfigured ones; recompute usage and
the compiled rules; apply CRM commands (auto-rebalance first); then either the disarm
round or the service rounds (transitions, then the fence pass, until a fixpoint).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from harepl.core import config as cfgmod
from harepl.core import crm_commands, fencing, manager_io
from harepl.core.crm_commands import HaRequests
from harepl.core.manager_io import (
    REMOVABLE_LOCKS_AFTER_FENCE,
    ManagerPorts,
    ManagerResult,
    ManagerView,
    new_uid,
)
from harepl.core.node_status import NodeStatus
from harepl.core.placement import (
    CompiledRules,
    NodePreference,
    get_node_affinity,
    select_service_node,
)
from harepl.core.policy import SAFE, SafetyPolicy
from harepl.core.service_status import ServiceTable
from harepl.core.types import (
    ERROR,
    EWRONG_NODE,
    IGNORED,
    SERVICE_STATES,
    SUCCESS,
    DatacenterConfig,
    Effect,
    LrmResult,
    ManagerStatus,
    ServiceConfig,
    StealService,
    UpdateServiceConfig,
)

__all__ = ["Effect", "Manager", "ManagerPorts", "ManagerResult", "ManagerView", "new_uid"]

Transition = Callable[["Manager", str, ServiceConfig, "LrmResult | None"], None]


class Manager:
    """The CRM master: `manage(view, ports)` once per round."""

    def __init__(self, nodename: str, old_ms: ManagerStatus, fence_delay_s: float = 60.0,
                 policy: SafetyPolicy = SAFE, fence_delay_hw_s: float | None = None) -> None:
        old: ManagerStatus = copy.deepcopy(old_ms)
        self.nodename = nodename
        self.policy = policy
        # what the master remembers between rounds (and a new master takes over from ms)
        self.ns = NodeStatus(old.get("node_status", {}), fence_delay_s=fence_delay_s)
        ss = old.get("service_status", {})
        self.services = ServiceTable(ss, uid_seed=f"{nodename}|{old.get('timestamp', 0)}|{sorted(ss)}")
        self.ss = self.services.ss  # the same dict: sid -> sd
        self.requests = HaRequests(
            node_request={n: {"maintenance": int(r["maintenance"])} if "maintenance" in r else {}
                          for n, r in old["node_request"].items()} if "node_request" in old else None,
            disarm=dict(old["disarm"]) if "disarm" in old else None,
        )
        # what only this master remembers (lost on failover, like Proxmox's)
        self.rebalance_rounds = 0
        # fence devices (core/fencing.py): progress per node, and the fence delay while
        # hardware fencing is on (a confirmed power-off needs no lease wait)
        self.fence_delay_s = fence_delay_s
        self.fence_delay_hw_s = fence_delay_s if fence_delay_hw_s is None else fence_delay_hw_s
        self.hw_fence: dict[str, fencing.NodeFence] = {}
        self.fence_status: dict[str, str] = {}
        self.scheduler: str | None = None
        self.rebalance_on_request_start = False
        self.compiled = CompiledRules()
        self._compiled_key: object = None
        # the current round
        self.ports: ManagerPorts
        self.view: ManagerView | None = None
        self.now = 0.0
        self.effects: list[Effect] = []
        self.sc: dict[str, ServiceConfig] = {}
        self.lrm_modes: dict[str, str] = {}
        self.lrm_states: dict[str, str] = {}

    # --- the round ------------------------------------------------------------------------

    def manage(self, view: ManagerView, ports: ManagerPorts) -> ManagerResult:
        self.ports = ports
        self.effects = []
        self.now = view.now
        self.view = view
        lrms = manager_io.read_lrm_reports(view, self.ns.list_nodes())
        self.lrm_modes, self.lrm_states = lrms.modes, lrms.states
        if self.scheduler is None:
            self._update_scheduler_mode(view.datacenter)  # first round: before anything else
        self.ns.fence_delay_s = self.fence_delay_hw_s if self._fencing_mode() != "watchdog" else self.fence_delay_s
        self.ns.update(view.node_info, self.lrm_modes, view.now, self._log)
        if not self.ns.node_is_operational(self.nodename):
            self._log("info", "master seems offline")
            return ManagerResult(None, [])
        self._update_scheduler_mode(view.datacenter)
        self.sc = cfgmod.apply_group_failback(view.groups, copy.deepcopy(dict(view.service_config)))
        manager_io.sync_service_list(self.ss, self.sc, self._uid, self._log)
        self.services.recompute_usage(self.ns.list_online_nodes(), self.scheduler, self.view, self._log)
        key = manager_io.rules_key(view, self.sc, self.ns.list_nodes())
        if key != self._compiled_key:
            self.compiled = manager_io.compile_all_rules(view, self.sc, self.ns.list_nodes(), self._log)
            self._compiled_key = key
        self._apply_commands(view)
        if self.requests.disarm is None and not self.requests.rearmed_this_round:
            self._service_rounds(lrms.results)
        elif crm_commands.disarm_round(self.requests, self.ss, view, self.ns.list_nodes(), self._uid, self._log):
            self._service_rounds(lrms.results)  # disarm deferred: let fencing finish first
        status = self._status(view.now)
        for node in [n for n in self.hw_fence if self.ns.get_node_state(n) != "fence"]:
            del self.hw_fence[node]  # fenced, or back online: a later fence starts afresh
            self.fence_status.pop(node, None)
        if self.fence_status:
            status["fence_status"] = dict(self.fence_status)
        return ManagerResult(status, self.effects)

    def _service_rounds(self, lrm_results: dict[str, LrmResult]) -> None:
        """Transitions, then the fence pass, until no service changes state (rule 8)."""
        while True:
            changed = False
            for sid in sorted(self.ss):
                if sid in self.ss:
                    changed |= self._step_service(sid, lrm_results)
            changed |= self._fence_pass()
            if not changed:
                break

    def _step_service(self, sid: str, lrm_results: dict[str, LrmResult]) -> bool:
        """Run `sid`'s transition for its state; True if its state changed."""
        sd = self.ss[sid]
        cd: ServiceConfig = self.sc.get(sid) or {"state": "disabled", "node": sd["node"]}
        lrm_res = lrm_results.get(sd["uid"]) if sd.get("uid") else None
        last_state = sd["state"]
        transition = _TRANSITIONS.get(last_state)
        if transition is None:
            raise AssertionError(f"unknown service state '{last_state}'")
        transition(self, sid, cd, lrm_res)
        sd = self.ss[sid]
        if self.lrm_modes.get(sd["node"]) == "restart" and sd["state"] in ("started", "stopped", "request_stop"):
            self._change_state(sid, "freeze")
        return self.ss[sid]["state"] != last_state

    def _fence_pass(self) -> bool:
        """Fence the nodes of services in 'fence'; move those services to 'recovery' once
        their node is fenced (rule 3). A node in 'fence' without services (removed by an
        admin) is fenced too, so it does not stay there forever. True if anything moved."""
        ns, ports = self.ns, self.ports
        changed = False
        fenced: dict[str, bool] = {}
        for sid in sorted(self.ss):
            sd = self.ss[sid]
            if sd["state"] != "fence":
                continue
            node = sd["node"]
            if node not in fenced:
                fenced[node] = ns.fence_node(node, self._fence_lock, self._log, ports.sendmail)
            if fenced[node]:
                self._change_state(sid, "recovery")
                changed = True
        for node in sorted(n for n in list(ns.status) if n not in fenced):
            if ns.get_node_state(node) != "fence":
                continue
            self._log("notice", f"node '{node}' in fence state but no services to-fence! admin interference?!")
            if ns.fence_node(node, self._fence_lock, self._log, ports.sendmail):
                changed = True
        return changed

    def _fencing_mode(self) -> str:
        assert self.view is not None
        mode = self.view.datacenter.get("ha", {}).get("fencing", "watchdog")
        return mode if mode in fencing.FENCING_MODES else "watchdog"

    def _fence_lock(self, node: str) -> bool:
        """Rule 3's acknowledgement: take `node`'s lease. With fence devices
        (`fencing = hardware | both`) a device's confirmed power-off lets the master take it
        at once, by compare-and-swap on the lease as seen when the fence began
        (core/fencing.py; docs/safety.md). True once fenced."""
        mode = self._fencing_mode()
        if mode == "watchdog":
            return self.ports.fence_lock(node)
        ports = self.ports
        n_levels = ports.fence_levels(node)
        st = self.hw_fence.setdefault(node, fencing.NodeFence())
        step = fencing.fence_step(mode, n_levels, st, self.now)
        if step.run_level is not None:
            res = ports.fence_device(node, step.run_level)
            if res is not None:
                self._log("info" if res.off else "err", f"fence device level {step.run_level + 1} of node '{node}': "
                          f"{'confirmed off' if res.off else 'failed'} - {res.detail}")
                fencing.after_result(st, n_levels, res)
                step = fencing.fence_step(mode, n_levels, st, self.now)
        if step.status:
            self.fence_status[node] = step.status
        if step.record:
            if st.recorded_at is None:
                st.recorded_at = self.now  # this round's status records it; the lease next round
            return False
        if step.take_lease_now:
            took = ports.take_fenced_lease(node)
            if took:
                self._log("info", f"node '{node}' powered off by its fence device - took its lease at once")
                return True
            if took is None:
                return False  # not committed now (no quorum, timeout): again next round
            self._log("err", f"node '{node}' renewed its lease although its fence device confirmed it off (the "
                             "device lied, or powers another machine) - not recovering on that fence")
            st.confirmed, st.recorded_at = False, None
            fencing.after_result(st, n_levels, fencing.DeviceResult(False, "lease renewed after a confirmed off"))
            return False
        if step.lease_wait:
            return ports.fence_lock(node)
        return False

    # --- transitions, one per service state (dispatched by _TRANSITIONS) ---------------------

    def _next_state_request_start(self, sid: str, cd: ServiceConfig, lrm_res: LrmResult | None) -> None:
        current = self.ss[sid]["node"]
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

    def _next_state_started(self, sid: str, cd: ServiceConfig, lrm_res: LrmResult | None) -> None:
        if not self._started_node_usable(sid):
            return
        if cd["state"] in ("disabled", "stopped"):
            self._change_state(sid, "request_stop")
            return
        if cd["state"] != "started":
            self._log("err", f"service '{sid}' - unknown state '{cd['state']}' in service configuration")
            return
        if "cmd" in self.ss[sid]:
            self._started_run_command(sid)
            return
        pref = self._started_take_result(sid, cd, lrm_res)
        if pref is None:
            return  # the result put it in 'error'
        if pref == "none" and not self._any_allowed_node(sid):
            self._log("info", f"service '{sid}': no allowed node online (strict node affinity), stopping it")
            self._change_state(sid, "request_stop")
            return
        node = self.select_node(sid, cd, pref)
        if node is not None and self.ss[sid]["node"] != node:
            self._started_move(sid, cd, node)
            return
        self._started_stay(sid, pref, node, lrm_res)

    def _next_state_migrate_relocate(self, sid: str, cd: ServiceConfig, lrm_res: LrmResult | None) -> None:
        """migrate, relocate and request_start_balance: wait for the source LRM's result."""
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

    def _next_state_request_stop(self, sid: str, cd: ServiceConfig, lrm_res: LrmResult | None) -> None:
        sd = self.ss[sid]
        if lrm_res is None:
            if self.ns.node_is_offline_delayed(sd["node"], self.now):
                self._change_state(sid, "fence")
            return
        if lrm_res["exit_code"] == SUCCESS:
            self._change_state(sid, "stopped")
            return
        self._log("err", f"service '{sid}' stop failed (exit code {lrm_res['exit_code']})")
        if self.policy.confirm_stop:
            self._log("err", f"service '{sid}': stop not confirmed - it stays in 'error' until its "
                             "node confirms it no longer runs")
            sd["stop_unconfirmed"] = 1
        self._change_state(sid, "error")

    def _next_state_stopped(self, sid: str, cd: ServiceConfig, lrm_res: LrmResult | None) -> None:
        sd = self.ss[sid]
        ns = self.ns
        if sd["node"] != cd["node"]:
            # can happen if we fence a node with active migrations
            self._log("info", f"fixup service '{sid}' location ({sd['node']} => {cd['node']})")
            sd["node"] = cd["node"]
        if "cmd" in sd:
            task, arg = self._pop_command(sid)
            if task in ("migrate", "relocate"):
                if self._move_allowed(sid, task, arg):
                    self._change_state(sid, task, node=sd["node"], target=arg)
                    return
            elif task == "stop":
                self._log("info", f"ignore service '{sid}' {task} request - service already stopped")
            else:
                self._log("err", f"unknown command '{task}' for service '{sid}'")
        if cd["state"] == "disabled":
            return  # the LRM keeps stopping it; nothing to do (works without an active CRM too)
        if ns.node_is_offline_delayed(sd["node"], self.now) and ns.get_node_state(sd["node"]) != "maintenance":
            self._change_state(sid, "fence")
            return
        if cd["state"] == "stopped":
            return  # like disabled, but recovered from a failed node
        if cd["state"] == "started":
            if self._any_allowed_node(sid):  # else strict node affinity, no member online
                self._change_state(sid, "request_start", node=sd["node"])
            return
        self._log("err", f"service '{sid}' - unknown state '{cd['state']}' in service configuration")

    def _next_state_fence(self, sid: str, cd: ServiceConfig, lrm_res: LrmResult | None) -> None:
        pass  # left only by the fence pass, once the node is fenced (rule 3)

    def _next_state_recovery(self, sid: str, cd: ServiceConfig, lrm_res: LrmResult | None) -> None:
        sd = self.ss[sid]
        fenced_node = sd["node"]
        recovery_node = self.select_node(sid, cd, "best-score")
        if recovery_node is None:
            self._log("err", f"recovering service '{sid}' from fenced node '{fenced_node}' failed, no recovery node found")
            if cd["state"] == "disabled":
                # failed nodes kept, as on error -> stopped: only a successful start resets them
                self._change_state(sid, "stopped")
            return
        if recovery_node == fenced_node:
            msg = f"recover service '{sid}' to previous failed and fenced node '{fenced_node}' again"
        else:
            msg = f"recover service '{sid}' from fenced node '{fenced_node}' to node '{recovery_node}'"
        self._log("info", msg)
        removed = self.ports.remove_locks(sid, list(REMOVABLE_LOCKS_AFTER_FENCE), fenced_node)
        if removed:
            self._log("warning", f"removed leftover lock '{removed}' from recovered service '{sid}' to allow its start.")
        self.effects.append(StealService(sid, current_node=fenced_node, new_node=recovery_node))
        cd["node"] = recovery_node
        if sid in self.sc:
            self.sc[sid]["node"] = recovery_node
        sd["node"] = recovery_node
        self._change_state(sid, "started" if cd["state"] == "started" else "request_stop", node=recovery_node)

    def _next_state_freeze(self, sid: str, cd: ServiceConfig, lrm_res: LrmResult | None) -> None:
        node = self.ss[sid]["node"]
        # rule 4: under the safe policy only once that LRM holds its lease, watchdog armed
        guarded = not self.policy.guard_frozen or self.lrm_states.get(node) == "active"
        if self.lrm_modes.get(node) == "active" and guarded:
            self._change_state(sid, "started" if cd["state"] == "started" else "request_stop")

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

    # --- the steps of 'started' ---------------------------------------------------------------

    def _started_node_usable(self, sid: str) -> bool:
        """Its node is online, or in maintenance (remembered to come back to). A node gone
        long enough is fenced."""
        sd = self.ss[sid]
        node = sd["node"]
        if self.ns.node_is_online(node):
            return True
        if self.ns.node_is_offline_delayed(node, self.now):
            self._change_state(sid, "fence")
        if self.ns.get_node_state(node) != "maintenance":
            return False
        self.ss[sid]["maintenance_node"] = node
        return True

    def _started_run_command(self, sid: str) -> None:
        sd = self.ss[sid]
        task, arg = self._pop_command(sid)
        if task in ("migrate", "relocate"):
            if self._move_allowed(sid, task, arg):
                self._log("info", f"{task} service '{sid}' to node '{arg}'")
                self._change_state(sid, task, node=sd["node"], target=arg)
        elif task == "stop":
            timeout = int(arg)
            if timeout == 0:
                self._log("info", f"request immediate service hard-stop for service '{sid}'")
            else:
                self._log("info", f"request graceful stop with timeout '{timeout}' for service '{sid}'")
            self._change_state(sid, "request_stop", timeout=timeout)
            self.effects.append(UpdateServiceConfig(sid, {"state": "stopped"}))
        else:
            self._log("err", f"unknown command '{task}' for service '{sid}'")

    def _started_take_result(self, sid: str, cd: ServiceConfig, lrm_res: LrmResult | None) -> NodePreference | None:
        """Apply the LRM's start result: the node preference for placement ('try-next'
        after a failed start within max_relocate), or None once it went to 'error'."""
        if lrm_res is None:
            return "none"
        sd = self.ss[sid]
        ec = lrm_res["exit_code"]
        if ec == SUCCESS:
            if "failed_nodes" in sd:
                self._log("info", f"relocation policy successful for '{sid}' on node '{sd['node']}',"
                          f" failed nodes: {', '.join(sd['failed_nodes'])}")
            sd.pop("failed_nodes", None)
            sd["running"] = 1
            return "none"
        sd.setdefault("failed_nodes", []).append(sd["node"])
        if ec in (ERROR, EWRONG_NODE):
            sd.pop("running", None)
            if len(sd["failed_nodes"]) <= cd.get("max_relocate", 1):
                self._log("warning", f"starting service {sid} on node '{sd['node']}' failed, relocating service.")
                return "try-next"
            self._log("err", f"recovery policy for service {sid} failed, entering error state."
                      f" Failed nodes: {', '.join(sd['failed_nodes'])}")
        else:
            self._log("err", f"service '{sid}' got unrecoverable error (exit code {ec}))")
        self._change_state(sid, "error")
        return None

    def _started_move(self, sid: str, cd: ServiceConfig, node: str) -> None:
        """Placement chose another node: migrate a VM online, relocate anything else."""
        sd = self.ss[sid]
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

    def _started_stay(self, sid: str, pref: NodePreference, node: str | None, lrm_res: LrmResult | None) -> None:
        sd = self.ss[sid]
        if pref == "try-next" and node is None:
            self._log("warning", f"Start Error Recovery: Tried all available nodes for service '{sid}', retry"
                      f" start on current node. Tried nodes: {', '.join(sd.get('failed_nodes', []))}")
        if sd.get("maintenance_node") and sd["node"] == sd.get("maintenance_node"):
            if self.ns.get_node_state(sd["node"]) == "online":
                self._log("info", f"service '{sid}': clearing stale maintenance node "
                          f"'{sd['maintenance_node']}' setting (is current node)")
                sd.pop("maintenance_node", None)
        # make sure the service gets started again if it went down unexpectedly, without
        # losing an LRM result
        if lrm_res is not None:
            sd["uid"] = self._uid(sd["state"])

    # --- CRM commands (crm_commands.py; rule 6) -----------------------------------------------

    def _apply_commands(self, view: ManagerView) -> None:
        self.requests.rearmed_this_round = False
        commands = list(view.crm_commands)
        if self.requests.disarm is None:
            move, self.rebalance_rounds = crm_commands.auto_rebalance(
                view, self.scheduler, self.ss, self.ns.list_online_nodes(), self.compiled, self.rebalance_rounds,
                self._log)
            if move is not None:
                commands.insert(0, move)
        for raw in commands:
            crm_commands.apply_crm_command(crm_commands.parse_crm_command(raw), self.requests, self.ss, self.sc,
                                           self.ns, self.compiled, self._log)

    # --- helpers ------------------------------------------------------------------------------

    def _log(self, level: str, msg: str) -> None:
        self.ports.log(level, msg)

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

    def _any_allowed_node(self, sid: str) -> bool:
        """False if node affinity (a strict rule / restricted group) allows no online node."""
        online = self.ns.list_online_nodes()
        if sid not in self.compiled.node_affinity or not online:
            return True  # no rule, or nothing online at all (e.g. all in maintenance)
        allowed, _ = get_node_affinity(self.compiled, sid, online)
        return bool(allowed)

    def select_node(self, sid: str, cd: ServiceConfig, pref: NodePreference) -> str | None:
        return select_service_node(self.compiled, self.services.usage, sid, cd, self.ss, pref)

    def _uid(self, state: str) -> str:
        return self.services.new_uid(state)

    def _change_state(self, sid: str, new_state: str, **params: str | int) -> None:
        """The only way a service changes state (rule 2; service_status.py)."""
        self.services.change_state(sid, new_state, self._log, **params)

    def _pop_command(self, sid: str) -> tuple[str, str]:
        return self.services.pop_command(sid)

    def _update_scheduler_mode(self, dc: DatacenterConfig) -> None:
        mode = manager_io.scheduler_mode(dc, self.scheduler, self._log)
        self.scheduler, self.rebalance_on_request_start = mode.mode, mode.rebalance_on_request_start

    def _status(self, now: float) -> ManagerStatus:
        ms: ManagerStatus = {
            "master_node": self.nodename,
            "node_status": dict(self.ns.status),
            "service_status": copy.deepcopy(self.ss),
            "timestamp": now,
        }
        if self.requests.node_request is not None:
            ms["node_request"] = copy.deepcopy(self.requests.node_request)  # type: ignore[arg-type]
        if self.requests.disarm is not None:
            ms["disarm"] = dict(self.requests.disarm)
        return ms


_TRANSITIONS: dict[str, Transition] = {
    "request_start": Manager._next_state_request_start,
    "started": Manager._next_state_started,
    "migrate": Manager._next_state_migrate_relocate,
    "relocate": Manager._next_state_migrate_relocate,
    "request_start_balance": Manager._next_state_migrate_relocate,
    "request_stop": Manager._next_state_request_stop,
    "stopped": Manager._next_state_stopped,
    "fence": Manager._next_state_fence,
    "recovery": Manager._next_state_recovery,
    "freeze": Manager._next_state_freeze,
    "error": Manager._next_state_error,
}
assert set(_TRANSITIONS) == set(SERVICE_STATES)
