"""The simulator's `Env` (one per node and role) and its simulated resource agents.

Time follows Proxmox's TestEnv: each role iteration starts at the hardware's time and
costs `role_step_s` (sleeps only count inside the iteration, they do not move the clock).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from harepl.core.config import parse_groups, parse_rules
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
from harepl.sim.hardware import CFS_ERROR, InvariantBroken

if TYPE_CHECKING:
    from harepl.sim.runner import Simulation



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

    # leases
    def get_ha_manager_lock(self) -> bool:
        epoch = self.hw.get_lock("ha_manager_lock", self.node, self.cur_time, self.log)
        self.loop_delay += 1
        self.manager_epoch = epoch
        return epoch is not None

    def release_ha_manager_lock(self) -> bool:
        return self.hw.release_lock("ha_manager_lock", self.node, self.cur_time)

    def get_ha_agent_lock(self, node: str | None = None) -> bool:
        target = node or self.node
        epoch = self.hw.get_lock(f"ha_agent_{target}_lock", self.node, self.cur_time, self.log)
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
        return self.hw.release_lock(f"ha_agent_{self.node}_lock", self.node, self.cur_time)

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

    def _check_write(self) -> None:
        # a write commits only in the quorate partition (as in Raft, and pmxcfs read-only)
        self._check_rw()
        if not self.hw.quorate_for(self.node):
            raise StoreUnavailableError("not quorate: the write cannot commit")

    def read_manager_status(self) -> ManagerStatus:
        self._check_rw()
        return copy.deepcopy(self.hw.view_for(self.node)[0])

    def _check_manager_epoch(self) -> None:
        if self.manager_epoch is None or self.hw.lease_epoch("ha_manager_lock") != self.manager_epoch:
            raise StaleLeaseError(f"manager epoch {self.manager_epoch} is not current")

    def write_manager_status(self, status: ManagerStatus) -> None:
        self._check_write()
        self._check_manager_epoch()
        self.hw.manager_status = copy.deepcopy(status)

    def read_lrm_status(self, node: str | None = None) -> LrmStatus:
        self._check_rw()
        return copy.deepcopy(self.hw.view_for(self.node)[1].get(node or self.node, {}))

    def write_lrm_status(self, status: LrmStatus) -> None:
        self._check_write()
        lease = self.hw.leases.get(f"ha_agent_{self.node}_lock")
        if self.agent_epoch is not None and lease is not None and lease.epoch != self.agent_epoch:
            raise StaleLeaseError(f"node lease epoch {self.agent_epoch} of '{self.node}' is not current")
        self.hw.lrm_status[self.node] = copy.deepcopy(status)

    def read_service_config(self) -> dict[str, ServiceConfig]:
        self._check_rw()
        return copy.deepcopy(self.hw.view_for(self.node)[2])

    def update_service_config(self, sid: str, changes: Mapping[str, object]) -> None:
        self._check_write()
        self._check_manager_epoch()
        self.hw.update_service_config(sid, dict(changes))

    def steal_service(self, sid: str, current_node: str, new_node: str) -> None:
        self._check_write()
        self._check_manager_epoch()
        self.hw.steal_service(sid, current_node, new_node, self.node, self.cur_time)

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

    def _run_job(self, handle: str, job: Callable[[], int]) -> None:
        try:
            self._results[handle] = job()
        except StoreUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - a job failure is an exit code, as in a forked worker
            if isinstance(exc, InvariantBroken):
                raise
            self.log("err", str(exc))
            self._results[handle] = -1

    def stop_all_services(self, deadline: float) -> tuple[list[str], list[str]]:
        # the simulated agents act at once: every stop ends well before any deadline
        self._pending.clear()  # queued jobs die with the stop (a real node drops them too)
        self._polled_once.clear()
        stopped, not_stopped = [], []
        for sid in sorted(s for s, on in self.hw.running[self.node].items() if on):
            agent = self.resource_agent(sid)
            if agent is not None:
                agent.shutdown(sid, 0)
            if self.hw.running[self.node].get(sid):
                not_stopped.append(sid)
            else:
                self.log("info", f"service status {sid} stopped")
                stopped.append(sid)
        return stopped, not_stopped

    def take_service_deaths(self) -> list[tuple[str, str]]:
        return [(sid, "stopped") for sid in self.hw.deaths.pop(self.node, [])]

    def poll_worker(self, handle: str) -> int | None:
        if handle in self._pending:
            if handle in self._polled_once:
                self._polled_once.discard(handle)
                self._run_job(handle, self._pending.pop(handle))
            else:
                self._polled_once.add(handle)
                return None
        return self._results.pop(handle, None)


class SimResource:
    """vm:/ct: resources: start/stop/migrate flip the hardware's running table."""

    def __init__(self, env: SimEnv) -> None:
        self.env = env
        self.hw = env.hw

    def _lock(self, sid: str) -> str | None:
        cfg = self.hw.service_config.get(sid)
        return cfg.get("lock") if cfg else None

    def check_running(self, sid: str) -> bool:
        return bool(self.hw.running[self.env.node].get(sid))

    def start(self, sid: str) -> None:
        lock = self._lock(sid)
        if lock:
            self.env.log("err", f"service '{sid}' locked ({lock}), unable to start!")
            return
        if self.env.sim.profile.policy.start_needs_lease and not self.env.node_lease_valid():
            raise InvariantBroken(f"service '{sid}' started on '{self.env.node}' without a valid node lease")
        self.env.sleep(2)
        self.hw.set_running(self.env.node, sid, True)

    def shutdown(self, sid: str, timeout_s: float | None) -> None:
        lock = self._lock(sid)
        if lock:
            self.env.log("err", f"service '{sid}' locked ({lock}), unable to shutdown!")
            return
        self.env.sleep(2)
        self.hw.set_running(self.env.node, sid, False)

    def migrate(self, sid: str, target: str, online: bool) -> bool:
        env = self.env
        cmd = "migrate" if online else "relocate"
        env.log("info", f"service {sid} - start {cmd} to node '{target}'")
        lock = self._lock(sid)
        if lock:
            env.log("err", f"service '{sid}' locked ({lock}), unable to {cmd}!")
            return False
        if not self.hw.quorate_for(env.node):
            env.log("err", f"service '{sid}' not moved - the new location cannot be committed (not quorate)")
            return False
        if not online and self.check_running(sid):
            env.log("info", f"stopping service {sid} (relocate)")
            self.shutdown(sid, None)
            env.log("info", f"service status {sid} stopped")
        else:
            env.sleep(2)
        self.hw.change_service_location(sid, env.node, target)
        env.log("info", f"service {sid} - end {cmd} to node '{target}'")
        self.hw.set_running(env.node, sid, False)
        return True

    def remove_locks(self, sid: str, locks: list[str], fenced_node: str) -> str | None:
        cfg = self.hw.raw_service_config.get(sid)
        if cfg and cfg.get("lock") in locks:
            lock = str(cfg["lock"])
            raw = dict(cfg)
            raw.pop("lock")
            self.hw.delete_service(sid)
            self.hw.add_service(sid, raw)
            return lock
        return None


def decode_fail_id(sid: str) -> tuple[int, int, int, str | None]:
    """fa:ABCDEF -> (start failures B, migrate failures C, cannot stop D, only on node F).

    As Proxmox's VirtFail: A tells resources apart, B/C how many tries fail before
    start/migrate work, D != 0 means stop never works, E is 'exists'; a 6th digit F != 0
    limits the failures to node F (fa:120001 fails twice to start, but only on node1).
    """
    d = [int(c) if c.isdigit() else 0 for c in sid.split(":", 1)[1]]
    get = lambda i: d[i] if len(d) > i else 0  # noqa: E731
    node = f"node{get(5)}" if get(5) else None
    return get(1), get(2), get(3), node


class FailingResource(SimResource):
    """fa: resources whose id digits encode how often start/migrate fail."""

    def start(self, sid: str) -> None:
        fails, _, _, only_on = decode_fail_id(sid)
        if only_on is not None and only_on != self.env.node:
            fails = 0
        tries = self.hw.fail_tries["start"].get(sid, 0) + 1
        self.hw.fail_tries["start"][sid] = tries
        if fails >= tries:
            return
        self.hw.fail_tries["start"][sid] = 0
        super().start(sid)

    def shutdown(self, sid: str, timeout_s: float | None) -> None:
        if decode_fail_id(sid)[2]:
            return
        super().shutdown(sid, timeout_s)

    def migrate(self, sid: str, target: str, online: bool) -> bool:
        _, fails, _, only_on = decode_fail_id(sid)
        if only_on is not None and only_on != self.env.node:
            fails = 0
        tries = self.hw.fail_tries["migrate"].get(sid, 0) + 1
        self.hw.fail_tries["migrate"][sid] = tries
        if fails >= tries:
            return False
        self.hw.fail_tries["migrate"][sid] = 0
        return super().migrate(sid, target, online)
