"""The simulator's `Env` (one per node and role) and its simulated resource agents.

Time follows Proxmox's TestEnv: each role iteration starts at the hardware's time and
costs `role_step_s` (sleeps only count inside the iteration, they do not move the clock).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from harepl.core.config import parse_groups, parse_rules
from harepl.core.fencing import DeviceResult
from harepl.core.types import (
    DatacenterConfig,
    GroupConfig,
    LrmStatus,
    ManagerStatus,
    NodeInfo,
    RuleConfig,
    ServiceConfig,
)
from harepl.roles.env import ResourceAgent, StaleLeaseError, StoreUnavailableError
from harepl.sim.agents import FailingResource, SimResource, decode_fail_id
from harepl.sim.hardware import CFS_ERROR, InvariantBroken, Lease

if TYPE_CHECKING:
    from harepl.sim.runner import Simulation

__all__ = ["SimEnv", "decode_fail_id", "jcopy"]


def jcopy(obj: Any) -> Any:
    """A deep copy of JSON-shaped state (dicts, lists, scalars): what a read from the real
    store returns (fresh objects), several times faster than copy.deepcopy."""
    kind = type(obj)
    if kind is dict:
        return {k: jcopy(v) for k, v in obj.items()}
    if kind is list:
        return [jcopy(v) for v in obj]
    if kind in (str, int, float, bool) or obj is None:
        return obj
    return copy.deepcopy(obj)


class SimEnv:
    def __init__(self, sim: Simulation, node: str, role: str) -> None:
        self.sim = sim
        self.hw = sim.hw
        self.node = node
        self.role = role
        self.cur_time = 0.0
        self.loop_delay = 0.0
        self.manager_epoch: int | None = None
        self.agent_epoch: int | None = None
        self.lease_valid_until = float("-inf")  # LRM: t_sent of the last renewal + lease_local_s
        self._results: dict[str, int] = {}
        self._pending: dict[str, Callable[[], int]] = {}
        self._polled_once: set[str] = set()
        self._hung: dict[str, int] = {}  # handle -> polls until its (finished) job reports
        self._hang = 0
        self._worker_counter = 0

    # identity, time, log
    def nodename(self) -> str:
        return self.node

    def get_time(self) -> float:
        return self.cur_time

    def sleep(self, seconds: float) -> None:
        self.loop_delay += seconds

    def sleep_until(self, t: float) -> None:
        now = self.cur_time + self.loop_delay
        if now < t:
            self.loop_delay += t - now

    def log(self, level: str, msg: str) -> None:
        if level == "debug":
            return
        self.sim.log(level[:4], f"{self.node}/{self.role}", msg, self.cur_time)

    def sendmail(self, subject: str, text: str) -> None:
        self.log("email", subject)

    def loop_start_hook(self) -> None:
        self.loop_delay = 0.0
        start = self.sim.now
        assert start >= self.cur_time, "strange start time"
        self.cur_time = start

    def loop_end_hook(self) -> None:
        self.loop_delay = 0.0
        self.cur_time += self.sim.profile.role_step_s

    # membership
    def quorate(self) -> bool:
        return self.hw.quorate_for(self.node)

    def get_node_info(self) -> tuple[dict[str, NodeInfo], bool]:
        return self.hw.node_info()

    def cluster_state_update(self) -> bool:
        return self.hw.cfs_works(self.node, "update")

    # leases (a lease call is a write: store faults apply, docs in harepl/sim/store.py)
    def _late_log(self, level: str, msg: str) -> None:
        self.sim.log(level[:4], f"{self.node}/{self.role}", msg)

    def _lock_blocked(self) -> bool:
        return self.hw.nodes[self.node].disk_full or self.hw.store.leaderless(self.sim.rounds)

    def _get_lock(self, name: str) -> int | None:
        if self._lock_blocked():
            return None
        hw, node, sim = self.hw, self.node, self.sim
        if hw.store.defer(node, sim.rounds, f"lock {name}",
                          lambda: hw.get_lock(name, node, sim.now, self._late_log)):
            return None  # timed out for us; it may still apply later
        return hw.get_lock(name, node, self.cur_time, self.log)

    def _release_lock(self, name: str) -> bool:
        if self._lock_blocked():
            return False
        hw, node, sim = self.hw, self.node, self.sim
        if hw.store.defer(node, sim.rounds, f"release {name}", lambda: hw.release_lock(name, node, sim.now)):
            return False
        return hw.release_lock(name, node, self.cur_time)

    def get_ha_manager_lock(self) -> bool:
        epoch = self._get_lock("ha_manager_lock")
        self.loop_delay += 1
        self.manager_epoch = epoch
        return epoch is not None

    def release_ha_manager_lock(self) -> bool:
        return self._release_lock("ha_manager_lock")

    def get_ha_agent_lock(self, node: str | None = None) -> bool:
        target = node or self.node
        epoch = self._get_lock(f"ha_agent_{target}_lock")
        self.loop_delay += 1
        if target == self.node and self.role == "lrm" and epoch is not None:
            # a failed renewal changes nothing: the lease stays locally valid until
            # lease_local_s after the last committed one (as the runtime's keeper)
            self.agent_epoch = epoch
            self.lease_valid_until = self.cur_time + self.sim.profile.lease_local_s
        return epoch is not None

    def release_ha_agent_lock(self) -> bool:
        self.agent_epoch = None  # no longer a lease holder: its writes carry no epoch
        self.lease_valid_until = float("-inf")
        return self._release_lock(f"ha_agent_{self.node}_lock")

    def node_lease_valid(self) -> bool:
        lease = self.hw.leases.get(f"ha_agent_{self.node}_lock")
        return (self.agent_epoch is not None and lease is not None and lease.node == self.node
                and lease.epoch == self.agent_epoch and self.cur_time < self.lease_valid_until)

    def new_process(self) -> None:
        """A new CRM/LRM process starts on this node (power on, LRM restart): it has never
        held a lease, so it carries no epoch (a lease of the previous process is not its)."""
        self.manager_epoch = None
        self.agent_epoch = None
        self.lease_valid_until = float("-inf")
        self._results.clear()
        self._pending.clear()
        self._polled_once.clear()
        self._hung.clear()

    # watchdog
    def watchdog_open(self) -> str:
        return self.hw.watchdog_open(self.node, self.cur_time)

    def watchdog_update(self, handle: str) -> None:
        self.hw.watchdog_update(handle, self.cur_time)

    def watchdog_close(self, handle: str) -> None:
        self.hw.watchdog_close(handle, self.cur_time)

    def watchdog_expires_at(self, handle: str) -> float:
        wd = self.hw.watchdogs.get(handle)
        return wd.update_time + self.hw.watchdog_timeout_s if wd is not None else float("inf")

    # replicated state
    def _check_rw(self) -> None:
        if not self.hw.cfs_works(self.node, "rw"):
            raise StoreUnavailableError(CFS_ERROR)

    def _write_ready(self) -> None:
        """A write commits only in the quorate partition (as in Raft, and pmxcfs read-only),
        not while the node's disk is full or no leader exists."""
        self._check_rw()
        if not self.hw.quorate_for(self.node):
            raise StoreUnavailableError("not quorate: the write cannot commit")
        if self.hw.nodes[self.node].disk_full:
            raise StoreUnavailableError("disk full: the write is not acknowledged")
        if self.hw.store.leaderless(self.sim.rounds):
            raise StoreUnavailableError("leader change: no Raft leader, the write is lost")

    def _commit(self, what: str, apply: Callable[[], None]) -> None:
        """After _write_ready(): a late write times out for us and applies later (apply
        checks epochs when it runs), any other commits now."""
        if self.hw.store.defer(self.node, self.sim.rounds, what, apply):
            raise StoreUnavailableError(f"commit timed out ({what}); it may still apply")
        apply()

    def read_manager_status(self) -> ManagerStatus:
        self._check_rw()
        return jcopy(self.hw.view_for(self.node)[0])

    def _manager_epoch_check(self) -> Callable[[], None]:
        epoch, hw = self.manager_epoch, self.hw

        def check() -> None:
            if epoch is None or hw.lease_epoch("ha_manager_lock") != epoch:
                raise StaleLeaseError(f"manager epoch {epoch} is not current")
        return check

    def write_manager_status(self, status: ManagerStatus) -> None:
        self._write_ready()
        check, hw, copied = self._manager_epoch_check(), self.hw, jcopy(status)

        def apply() -> None:
            check()
            hw.manager_status = copied
        self._commit("manager status", apply)

    def read_lrm_status(self, node: str | None = None) -> LrmStatus:
        self._check_rw()
        return jcopy(self.hw.view_for(self.node)[1].get(node or self.node, {}))

    def write_lrm_status(self, status: LrmStatus) -> None:
        self._write_ready()
        hw, node, epoch, copied = self.hw, self.node, self.agent_epoch, jcopy(status)

        def apply() -> None:
            lease = hw.leases.get(f"ha_agent_{node}_lock")
            if epoch is not None and lease is not None and lease.epoch != epoch:
                raise StaleLeaseError(f"node lease epoch {epoch} of '{node}' is not current")
            hw.lrm_status[node] = copied
        self._commit("lrm status", apply)

    def read_service_config(self) -> dict[str, ServiceConfig]:
        self._check_rw()
        return jcopy(self.hw.view_for(self.node)[2])

    def update_service_config(self, sid: str, changes: Mapping[str, object]) -> None:
        self._write_ready()
        check, hw, changed = self._manager_epoch_check(), self.hw, dict(changes)

        def apply() -> None:
            check()
            hw.update_service_config(sid, changed)
        self._commit(f"config of {sid}", apply)

    def steal_service(self, sid: str, current_node: str, new_node: str) -> None:
        self._write_ready()
        check, hw, sim, node = self._manager_epoch_check(), self.hw, self.sim, self.node
        now = self.cur_time

        def apply() -> None:
            check()
            hw.steal_service(sid, current_node, new_node, node, max(now, sim.now))
        self._commit(f"recovery of {sid}", apply)

    def read_group_config(self) -> dict[str, GroupConfig]:
        return parse_groups(self.hw.groups)

    def read_rules_config(self) -> dict[str, RuleConfig]:
        return parse_rules(self.hw.rules)

    def get_datacenter_settings(self) -> DatacenterConfig:
        return copy.deepcopy(self.hw.datacenter)  # type: ignore[return-value]

    def get_static_node_stats(self) -> dict[str, dict[str, float]]:
        return {n: {"maxcpu": float(h.maxcpu), "maxmem": float(h.maxmem)}
                for n, h in self.hw.nodes.items() if h.maxcpu and h.maxmem}

    def get_service_stats(self, kind: str) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for sid in self.hw.service_config:
            st = dict(self.hw.static_stats.get(sid, {}))
            if not st:
                # like Proxmox's simulator: derive the usage from the id (vm:ABC...)
                m = re.match(r"^[a-z]+:(\d)(\d\d)", sid)
                if m:
                    st = {"maxcpu": int(m[1]) + 1, "maxmem": (int(m[2]) + 1) << 29}
            if kind == "dynamic" and sid in self.hw.dynamic_stats:
                dyn = self.hw.dynamic_stats[sid]
                st = {"maxcpu": dyn.get("cpu", st.get("maxcpu", 0)), "maxmem": dyn.get("mem", st.get("maxmem", 0))}
            out[sid] = {"maxcpu": float(st.get("maxcpu", 0)), "maxmem": float(st.get("maxmem", 0))}
        return out

    def read_crm_commands(self) -> list[str]:
        cmds, self.hw.crm_commands = self.hw.crm_commands, []
        return cmds

    def queue_crm_command(self, cmd: str) -> None:
        self.hw.crm_commands.append(cmd)

    def any_pending_crm_command(self) -> bool:
        return bool(self.hw.crm_commands)

    def is_node_shutdown(self) -> tuple[bool, bool]:
        target = self.hw.nodes[self.node].shutdown
        return (target in ("shutdown", "reboot"), target == "reboot")

    # resources
    def get_max_workers(self) -> int:
        return self.sim.profile.max_workers

    def resource_agent(self, sid: str) -> ResourceAgent | None:
        kind = sid.split(":", 1)[0]
        if kind in ("vm", "ct"):
            return SimResource(self)
        if kind == "fa":
            return FailingResource(self)
        return None

    def start_worker(self, sid: str, job: Callable[[], int]) -> str:
        # max_workers 0: run synchronously (Proxmox's test mode); otherwise the job runs at
        # the first poll after this one, i.e. it is still running during this iteration
        self._worker_counter += 1
        handle = f"{sid}#{self._worker_counter}"
        if self.sim.profile.max_workers > 0:
            self._pending[handle] = job
            return handle
        self._run_job(handle, job)
        return handle

    def hang(self, polls: int) -> None:
        """The running job's agent call exceeded its timeout: with asynchronous workers its
        result comes `polls` polls later (synchronous ones report at once)."""
        self._hang = max(self._hang, polls)

    def _run_job(self, handle: str, job: Callable[[], int]) -> None:
        self._hang = 0
        try:
            self._results[handle] = job()
        except StoreUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - a job failure is an exit code, as in a forked worker
            if isinstance(exc, InvariantBroken):
                raise
            self.log("err", str(exc))
            self._results[handle] = -1
        if self._hang and self.sim.profile.max_workers > 0:
            self._hung[handle] = self._hang
        self._hang = 0

    def stop_all_services(self, deadline: float) -> tuple[list[str], list[str]]:
        # the simulated agents act at once: every stop ends well before any deadline
        self._pending.clear()  # queued jobs die with the stop (a real node drops them too)
        self._polled_once.clear()
        self._hung.clear()
        stopped, not_stopped = [], []
        for sid in sorted(s for s, on in self.hw.running[self.node].items() if on):
            agent = self.resource_agent(sid)
            if agent is not None:
                agent.shutdown(sid, 0)
            if self.hw.running[self.node].get(sid):
                not_stopped.append(sid)
            else:
                self.hw.stop_confirmed(self.node, sid)
                self.log("info", f"service status {sid} stopped")
                stopped.append(sid)
        return stopped, not_stopped

    def take_service_deaths(self) -> list[tuple[str, str]]:
        return [(sid, "stopped") for sid in self.hw.deaths.pop(self.node, [])]

    def poll_worker(self, handle: str) -> int | None:
        if handle in self._hung:
            self._hung[handle] -= 1
            if self._hung[handle] > 0:
                return None
            del self._hung[handle]
        if handle in self._pending:
            if handle in self._polled_once:
                self._polled_once.discard(handle)
                self._run_job(handle, self._pending.pop(handle))
                if handle in self._hung:
                    return None
            else:
                self._polled_once.add(handle)
                return None
        return self._results.pop(handle, None)

    # --- simulated fence devices (issue 10; the decisions are core/fencing.py) -------------------
    # `sim.fence_devices`: node -> one behaviour per level: "ok" (powers the node off, then
    # confirms), "fail", "timeout" (answers nothing for 3 polls, then fails), "lie" (confirms
    # off and powers nothing off). An attempt answers on the poll after it started, as the
    # runtime's background agents do. Without it (every stored scenario) no node has devices.
    def fence_device_levels(self, node: str) -> int:
        return len(getattr(self.sim, "fence_devices", {}).get(node, ()))

    def fence_device(self, node: str, level: int) -> DeviceResult | None:
        kinds = getattr(self.sim, "fence_devices", {}).get(node, ())
        if level >= len(kinds):
            return DeviceResult(False, f"no fence device level {level + 1} for node '{node}'")
        attempts: dict[tuple[str, int], int] = self.sim.__dict__.setdefault("fence_attempts", {})
        polls = attempts.get((node, level), -1) + 1
        if polls == 0 and level == 0:
            lease = self.hw.leases.get(f"ha_agent_{node}_lock")
            self.sim.__dict__.setdefault("fence_seen", {})[node] = (lease.epoch, lease.time) if lease else None
        kind = kinds[level]
        if polls < (3 if kind == "timeout" else 1):
            attempts[(node, level)] = polls
            if polls == 0:
                self.log("info", f"fence device {node}:{level + 1} ({kind}): off")
            return None
        attempts.pop((node, level), None)
        if kind == "ok":
            self.sim.hardware_cmd(f"power {node} off", "fence")
            return DeviceResult(True, f"sim device {node}:{level + 1}: off confirmed")
        if kind == "lie":
            return DeviceResult(True, f"sim device {node}:{level + 1}: off confirmed (it lies)")
        return DeviceResult(False, f"sim device {node}:{level + 1}: {'timed out' if kind == 'timeout' else 'failed'}")

    def take_fenced_node_lease(self, node: str) -> bool | None:
        if self._lock_blocked() or not self.quorate():
            return None
        name = f"ha_agent_{node}_lock"
        lease = self.hw.leases.get(name)
        if getattr(self.sim, "fence_seen", {}).pop(node, "none") != ((lease.epoch, lease.time) if lease else None):
            self.log("err", f"lease '{name}' changed since its fence began - not taken")
            return False
        hw = self.hw
        hw.epoch_counter += 1
        hw._check_fence(name, self.node)
        hw.lease_taken[name] = self.cur_time
        hw.leases[name] = Lease(self.node, self.cur_time, hw.epoch_counter)
        self.log("info", f"got lock '{name}' (node '{node}' confirmed off by its fence device)")
        return True
