"""The cluster resource manager loop (Proxmox's CRM.pm) over an `Env`.

States: wait_for_quorum, master (holds the manager lease and runs the Manager),
slave (quorate, another node is master), lost_manager_lock. The master needs no watchdog
of its own in harepl: its writes carry the manager epoch and are rejected once deposed
(docs/safety.md); we still keep Proxmox's state sequence.
"""

from __future__ import annotations

from harepl.core.fencing import DeviceResult
from harepl.core.manager import Manager, ManagerResult, ManagerView
from harepl.core.policy import SAFE, SafetyPolicy
from harepl.core.types import LrmStatus, ManagerStatus, StealService, UpdateServiceConfig
from harepl.roles.env import Env, StaleLeaseError, StoreUnavailableError

# ~10 s per round: 90 rounds without configured services and the master steps down
# (30 rounds longer than the LRM waits, so no LRM is left without a CRM).
MAX_ACTIVE_IDLE_ROUNDS = 90


class _Ports:
    def __init__(self, env: Env) -> None:
        self.env = env

    def log(self, level: str, msg: str) -> None:
        self.env.log(level, msg)

    def sendmail(self, subject: str, text: str) -> None:
        self.env.sendmail(subject, text)

    def fence_lock(self, node: str) -> bool:
        return self.env.get_ha_agent_lock(node)

    def remove_locks(self, sid: str, locks: list[str], fenced_node: str) -> str | None:
        agent = self.env.resource_agent(sid)
        return agent.remove_locks(sid, locks, fenced_node) if agent is not None else None

    def fence_levels(self, node: str) -> int:
        return self.env.fence_device_levels(node)

    def fence_device(self, node: str, level: int) -> DeviceResult | None:
        return self.env.fence_device(node, level)

    def take_fenced_lease(self, node: str) -> bool | None:
        return self.env.take_fenced_node_lease(node)


class CRM:
    def __init__(self, env: Env, round_s: float = 10.0, wait_round_s: float = 5.0,
                 fence_delay_s: float = 60.0, policy: SafetyPolicy = SAFE,
                 fence_delay_hw_s: float | None = None) -> None:
        self.env = env
        self.policy = policy
        self.round_s = round_s
        self.wait_round_s = wait_round_s
        self.fence_delay_s = fence_delay_s
        self.fence_delay_hw_s = fence_delay_hw_s  # with fence devices (core/fencing.py)
        self.state = "startup"
        self.state_change_time = 0.0
        self.manager: Manager | None = None
        self.shutdown_request = False
        self.cluster_state_ok = False
        self.active_idle_rounds = 0
        self.last_result: ManagerResult | None = None
        self._set_state("wait_for_quorum")

    def _set_state(self, new: str) -> None:
        if self.state == new:
            return
        self.env.log("info", f"status change {self.state} => {new}")
        self.state = new
        self.state_change_time = self.env.get_time()
        if new == "master":
            self.manager = Manager(self.env.nodename(), self._read_ms() or {}, self.fence_delay_s, self.policy,
                                   fence_delay_hw_s=self.fence_delay_hw_s)
        else:
            self.manager = None

    def shutdown(self) -> None:
        if not self.shutdown_request:
            self.env.log("info", "server received shutdown request")
        self.shutdown_request = True

    def _read_ms(self) -> ManagerStatus | None:
        try:
            return self.env.read_manager_status()
        except StoreUnavailableError as exc:
            self.env.log("err", f"could not read manager status: {exc}")
            return None

    def _healthy(self, ms: ManagerStatus | None) -> bool:
        env = self.env
        if not env.quorate() or not self.cluster_state_ok or ms is None:
            return False
        # there might be services to fence even if the service config is empty
        node = env.nodename()
        return not any(sd.get("node") == node and sd.get("state") == "fence"
                       for sd in ms.get("service_status", {}).values())

    def _can_get_active(self, allow_no_service: bool = False) -> bool:
        env = self.env
        ms = self._read_ms()
        if not self._healthy(ms):
            return False
        assert ms is not None
        if allow_no_service:
            return True
        try:
            conf = env.read_service_config()
        except StoreUnavailableError as exc:
            env.log("err", f"could not read service config: {exc}")
            return False
        if conf:
            return True
        master = ms.get("master_node")
        ns = ms.get("node_status", {})
        if not master or ns.get(master) != "online" or master == env.nodename():
            for node, state in ns.items():
                if state == "maintenance" and not ms.get("node_request", {}).get(node, {}).get("maintenance"):
                    return True
            if env.any_pending_crm_command():
                return True
        return False  # no services, no maintenance to finish, no commands: stay idle

    def _allowed_to_get_idle(self) -> bool:
        ms = self._read_ms()
        if not self._healthy(ms):
            return False
        try:
            return not self.env.read_service_config()
        except StoreUnavailableError:
            return False

    def _get_manager_lock(self) -> bool:
        if not self.env.get_ha_manager_lock():
            return False
        if self.state != "master":
            ms = self._read_ms()
            if ms is not None and ms.get("disarm", {}).get("state") == "disarmed":
                self.env.log("info", "taking over as disarmed master, skipping watchdog")
        return True

    def do_one_iteration(self) -> bool:
        env = self.env
        env.loop_start_hook()
        self.cluster_state_ok = env.cluster_state_update()
        try:
            return self._work()
        finally:
            env.loop_end_hook()

    def _work(self) -> bool:
        self._change_state()  # state changes first,
        return self._work_of_state()  # then the work of the (new) state; False: exit

    def _change_state(self) -> None:
        state = self.state
        if state == "wait_for_quorum":
            if self._can_get_active():
                self._set_state("master" if self._get_manager_lock() else "slave")
        elif state == "slave":
            if self._can_get_active():
                if self._get_manager_lock():
                    self._set_state("master")
            else:
                self._set_state("wait_for_quorum")
        elif state == "lost_manager_lock":
            if self._can_get_active(True) and self._get_manager_lock():
                self._set_state("master")
        elif state == "master":
            if not self._get_manager_lock():
                self._set_state("lost_manager_lock")
            elif self._allowed_to_get_idle():
                self.active_idle_rounds += 1
                if self.active_idle_rounds > MAX_ACTIVE_IDLE_ROUNDS:
                    self.active_idle_rounds = 0
                    self.env.log("info", f"cluster had no service configured for {MAX_ACTIVE_IDLE_ROUNDS} rounds, "
                                 "going idle.")
                    self.env.release_ha_manager_lock()
                    self._set_state("wait_for_quorum")
            elif self.active_idle_rounds:
                self.active_idle_rounds = 0

    def _work_of_state(self) -> bool:
        state = self.state
        if state == "master":
            return self._work_master()
        if self.shutdown_request:
            return False  # wait_for_quorum, lost_manager_lock, slave
        if state == "wait_for_quorum":
            self.env.sleep(self.wait_round_s)
        elif state == "lost_manager_lock":
            self._set_state("wait_for_quorum")
        return True

    def _work_master(self) -> bool:
        env = self.env
        start = env.get_time()
        if self.shutdown_request:
            env.log("info", "voluntary release CRM lock")
            if not env.release_ha_manager_lock():
                env.log("notice", "CRM lock release failed, let the lock timeout")
            return False
        if not self.cluster_state_ok:
            env.log("notice", "temporary inconsistent cluster state (cfs restart?), skip round")
        else:
            try:
                self._manage()
            except StaleLeaseError as exc:
                env.log("err", f"manager status write rejected - {exc}")
                self._set_state("lost_manager_lock")
            except StoreUnavailableError as exc:
                env.log("err", f"got unexpected error - {exc}")
        env.sleep_until(start + self.round_s)
        return True

    def _manage(self) -> None:
        env = self.env
        manager = self.manager
        assert manager is not None
        node_info, _quorate = env.get_node_info()
        lrm: dict[str, LrmStatus] = {}
        for node in sorted(set(manager.ns.list_nodes()) | set(node_info)):
            lrm[node] = env.read_lrm_status(node)
        datacenter = env.get_datacenter_settings()
        mode = str(dict(datacenter.get("crs", {})).get("ha") or "basic")
        node_stats: dict[str, dict[str, float]] = {}
        service_stats: dict[str, dict[str, float]] = {}
        if mode in ("static", "dynamic"):
            node_stats = env.get_static_node_stats()
            service_stats = env.get_service_stats(mode)
        view = ManagerView(
            now=env.get_time(),
            node_info=node_info,
            lrm_status=lrm,
            service_config=env.read_service_config(),
            groups=env.read_group_config(),
            rules=env.read_rules_config(),
            crm_commands=tuple(env.read_crm_commands()),
            datacenter=datacenter,
            node_stats=node_stats,
            service_stats=service_stats,
        )
        result = manager.manage(view, _Ports(env))
        self.last_result = result
        # the effects first, in the order decided, then the status (see core/types.py)
        for eff in result.effects:
            match eff:
                case StealService():
                    env.steal_service(eff.sid, eff.current_node, eff.new_node)
                case UpdateServiceConfig():
                    env.update_service_config(eff.sid, eff.changes)
        if result.manager_status is not None:
            env.write_manager_status(result.manager_status)
