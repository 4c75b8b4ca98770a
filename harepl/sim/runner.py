"""Scenario loading and the simulation loop (Proxmox's Sim::TestHardware::run).

Each round: for every node in name order, one CRM iteration then one LRM iteration (each
costs `role_step_s` of virtual time), watchdog checks after each node; then the clock
jumps to the round end; every `cmd_every_rounds` rounds the next batch of scenario
commands runs. Invariants are checked after every role step.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from harepl.core.config import ConfigError, normalize_service_config, parse_groups, parse_rules
from harepl.core.policy import PVE, SAFE, SafetyPolicy
from harepl.core.types import ManagerStatus
from harepl.roles.crm import CRM
from harepl.roles.lrm import LRM
from harepl.sim.commands import DAEMON_CMDS, FAULT_CMDS, NODE_CMDS, ScenarioError, fault_cmd, validate_command
from harepl.sim.env import SimEnv
from harepl.sim.hardware import Hardware, InvariantBroken, NodeHw, WatchdogFired


@dataclass(frozen=True)
class Profile:
    name: str
    round_s: float  # one simulation round (Proxmox: 20 s)
    role_step_s: float  # virtual time one role iteration costs (Proxmox: 1 s)
    lock_timeout_s: float  # lease expiry (Proxmox: 120 s)
    watchdog_s: float  # watchdog expiry (Proxmox: 60 s)
    fence_delay_s: float  # unknown node -> fence (Proxmox: 60 s)
    crm_round_s: float
    lrm_round_s: float
    wait_round_s: float
    end_after_s: float  # stop this long after the last command (Proxmox: 500 s)
    lease_local_s: float  # a renewed node lease is locally valid this long
    cmd_every_rounds: int = 5
    max_workers: int = 0
    time_format: str = "{:5d}"
    policy: SafetyPolicy = SAFE


PROFILES: dict[str, Profile] = {
    # Proxmox's regression-test timing and decisions: replays its scenarios decision for
    # decision, including where harepl's own policy is safer (core/policy.py)
    "pve": Profile("pve", 20, 1, 120, 60, 60, 10, 10, 5, 500, 20, policy=PVE),
    # harepl's own timings (docs/safety.md table); lease_timeout > lease_local + watchdog + margin
    "default": Profile("default", 1, 0.05, 20, 10, 5, 1, 1, 0.5, 60, 5, time_format="{:8.2f}"),
    "fast": Profile("fast", 0.5, 0.02, 7, 3, 2, 0.5, 0.5, 0.25, 30, 2, time_format="{:8.2f}"),
    # pve timings with harepl's policy, and resource actions run asynchronously (each
    # finishes one LRM round later) with at most 2 at once, as the runtime's worker pool
    "async": Profile("async", 20, 1, 120, 60, 60, 10, 10, 5, 500, 20, max_workers=2),
    # DELIBERATELY UNSAFE, for tests of the invariant checker only: the lease expires
    # (30 s) before the watchdog of a cut-off node fires (60 s), so the CRM may recover a
    # service that still runs on the isolated node. Never use it for anything else.
    "unsafe-short-lease": Profile("unsafe-short-lease", 20, 1, 30, 60, 10, 10, 10, 5, 500, 20, policy=PVE),
}
# profiles that run harepl's own policy and timing rule (the fuzz campaign's targets);
# 'pve' is Proxmox's semantics, kept to replay its scenarios
SAFE_PROFILES = ("default", "fast", "async")

__all__ = ["NODE_CMDS", "PROFILES", "SAFE_PROFILES", "Profile", "ScenarioError", "Simulation", "load_scenario",
           "validate_command"]


def _read_json(path: Path, default: Any = None, required: bool = False) -> Any:
    if not path.exists():
        if required:
            raise ScenarioError(f"{path.name}: missing (required)")
        return default
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{path.name}: bad JSON: {exc.msg} (line {exc.lineno})") from None
    except OSError as exc:
        raise ScenarioError(f"{path.name}: cannot read: {exc.strerror}") from None


DEFAULT_GROUPS = """group: prefer_node1
\tnodes node1
\tnofailback 1

group: prefer_node2
\tnodes node2
\tnofailback 1

group: prefer_node3
\tnodes node3
\tnofailback 1
"""


@dataclass
class Scenario:
    hardware: dict[str, NodeHw]
    cmdlist: list[list[str]]
    service_config: dict[str, Any]
    manager_status: dict[str, Any]
    groups: Any
    rules: Any
    datacenter: dict[str, Any]
    stats: dict[str, Any] = field(default_factory=dict)
    dynamic_stats: dict[str, Any] = field(default_factory=dict)


def load_scenario(folder: Path) -> Scenario:
    if not folder.is_dir():
        raise ScenarioError("not a directory")
    hw_raw = _read_json(folder / "hardware_status", required=True)
    if not isinstance(hw_raw, dict) or not hw_raw:
        raise ScenarioError("hardware_status: expected an object of node -> {power, network}")
    hardware: dict[str, NodeHw] = {}
    for node, d in hw_raw.items():
        if not isinstance(d, dict) or d.get("power") not in ("on", "off") or d.get("network") not in ("on", "off"):
            raise ScenarioError(f"hardware_status: node '{node}' needs power and network 'on' or 'off'")
        if d.get("member", True) not in (True, False):
            raise ScenarioError(f"hardware_status: node '{node}': member must be true or false")
        hardware[node] = NodeHw(power=d["power"], network=d["network"], member=d.get("member", True),
                                maxcpu=float(d.get("maxcpu", 0) or 0), maxmem=float(d.get("maxmem", 0) or 0))
    cmdlist = _read_json(folder / "cmdlist", required=True)
    if not isinstance(cmdlist, list) or not all(
        isinstance(b, list) and all(isinstance(c, str) for c in b) for b in cmdlist
    ):
        raise ScenarioError("cmdlist: expected a list of lists of command strings")
    sc = _read_json(folder / "service_config", default={})
    ms = _read_json(folder / "manager_status", default={}) or {}
    if not isinstance(ms, dict):
        raise ScenarioError("manager_status: expected an object")
    dc = _read_json(folder / "datacenter.cfg", default={}) or {}
    groups: Any = DEFAULT_GROUPS
    if (folder / "groups").exists():
        groups = (folder / "groups").read_text()
    rules: Any = ""
    if (folder / "rules_config").exists():
        rules = (folder / "rules_config").read_text()
    stats = _read_json(folder / "static_service_stats", default={}) or {}
    dyn_stats = _read_json(folder / "dynamic_service_stats", default={}) or {}
    try:
        services = normalize_service_config(sc)
        parse_groups(groups)
        parse_rules(rules)
    except ConfigError as exc:
        raise ScenarioError(str(exc)) from None
    for sid, cd in services.items():
        if cd["node"] not in hardware:
            raise ScenarioError(f"service_config: service '{sid}' on unknown node '{cd['node']}'")
    for batch in cmdlist:
        for cmd in batch:
            validate_command(cmd, hardware)
    return Scenario(hardware, cmdlist, sc, ms, groups, rules, dc, stats, dyn_stats)


@dataclass
class NodeRoles:
    crm_env: SimEnv
    lrm_env: SimEnv
    crm: CRM | None = None
    lrm: LRM | None = None
    crm_stop: bool = False
    lrm_restart: bool = False


class Simulation:
    def __init__(self, scenario: Scenario, profile: Profile, emit: Callable[[str], None],
                 max_time_s: float | None = None) -> None:
        self.profile = profile
        self.emit = emit
        self.now = 0.0
        self.round_count = 0
        self.skip: dict[str, int] = {"crm": 0, "lrm": 0}
        self.max_time_s = max_time_s if max_time_s is not None else profile.round_s * 500
        self.cmdlist = [list(b) for b in scenario.cmdlist]
        self.hw = Hardware(
            scenario.hardware, scenario.service_config, cast(ManagerStatus, scenario.manager_status), scenario.groups,
            scenario.rules, scenario.datacenter, lock_timeout_s=profile.lock_timeout_s,
            watchdog_timeout_s=profile.watchdog_s,
            log=lambda lvl, who, msg: self.log(lvl, who, msg), get_time=lambda: self.now,
        )
        self.hw.static_stats = dict(scenario.stats)
        self.hw.dynamic_stats = dict(scenario.dynamic_stats)
        self.roles: dict[str, NodeRoles] = {
            n: NodeRoles(SimEnv(self, n, "crm"), SimEnv(self, n, "lrm")) for n in sorted(scenario.hardware)
        }
        self.hw.partition_changed()
        self.hw.strict_confirm = profile.policy.confirm_stop
        self.rounds = 0  # every loop of run() (round_count skips rounds inside a delay)
        self.stalled: dict[str, int] = {}  # node -> rounds its daemon still takes no step
        self.stall_deferred: dict[str, list[str]] = {}  # daemon commands sent during a stall
        self.violation: str | None = None
        self.test_unsafe_hook: Callable[[Simulation], None] | None = None

    # --- logging -------------------------------------------------------------------------------

    def log(self, level: str, who: str, msg: str, t: float | None = None) -> None:
        t = self.now if t is None else t
        ts = self.profile.time_format.format(int(t) if "d}" in self.profile.time_format else t)
        self.emit(f"{level:<5} {ts} {who:>12}: {msg}")

    # --- the loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        self.log("info", "hardware", "starting simulation")
        for node in sorted(n for n, h in self.hw.nodes.items() if not h.member):
            self.log("info", "hardware", f"node '{node}' is not a cluster member")
        last_cmd_time = 0.0
        next_cmd_at = 0.0
        p = self.profile
        while True:
            start = self.now
            self.rounds += 1
            if self.hw.round_tick() | self.hw.store.tick(self.rounds, self.log):
                self._check()
            skip_now = {role: self.skip[role] > 0 for role in ("crm", "lrm")}
            for role, skipping in skip_now.items():
                if skipping:
                    self.skip[role] -= 1
                    self.log("info", "run-loop", f"skipping {role.upper()} round")
            for node in sorted(self.roles):
                self._step_node(node, skip_now)
            if self.now - start < p.round_s:
                self.now = start + p.round_s
            if self.now > self.max_time_s:
                raise ScenarioError(f"simulation did not end within {self.max_time_s:g} s of virtual time")
            for r in self.roles.values():
                r.lrm_env.loop_start_hook()
                r.crm_env.loop_start_hook()
            if self.now < next_cmd_at:
                continue
            if self.round_count % p.cmd_every_rounds == 0:
                if not self.cmdlist:
                    if self.now - last_cmd_time > p.end_after_s:
                        self.log("info", "hardware", "exit simulation - done")
                        return
                    batch: list[str] = []
                else:
                    batch = self.cmdlist.pop(0)
                for cmd in batch:
                    last_cmd_time = self.now
                    m = re.fullmatch(r"delay\s+(\d+(?:\.\d+)?)\s*", cmd)
                    if m:
                        next_cmd_at = self.now + float(m[1])
                    else:
                        self.hardware_cmd(cmd, "cmdlist")
            self.round_count += 1

    def _check(self) -> None:
        for sid in sorted({s for r in self.hw.running.values() for s in r}):
            self.hw.check_single_instance(sid)
        info, quorate = self.hw.node_info()
        if quorate:
            # a stalled master acts on nothing until it has stepped again (and found out)
            masters = [n for n, r in self.roles.items()
                       if r.crm is not None and r.crm.state == "master" and n in info and info[n]["online"]
                       and n not in self.stalled]
            if len(masters) > 1:
                raise InvariantBroken(f"more than one master in the quorate partition: {', '.join(masters)}")
        if self.profile.policy.stop_on_lease_loss:
            for node in self.hw.nodes:
                self.hw.check_guarded(node, self.now)
        if self.test_unsafe_hook is not None:
            self.test_unsafe_hook(self)

    def _stalled_now(self, node: str) -> bool:
        """True while `node`'s daemon is stalled (the round is skipped); on the first round
        after the stall it resumes, and the daemon commands it missed are carried out."""
        left = self.stalled.get(node)
        if left is None:
            return False
        if left > 0:
            self.stalled[node] = left - 1
            return True
        del self.stalled[node]
        self.log("info", "hardware", f"daemon of '{node}' resumes after its stall")
        for cmd in self.stall_deferred.pop(node, []):
            self.hardware_cmd(cmd, "stall")
        return False

    def _step_node(self, node: str, skip: dict[str, bool]) -> None:
        try:
            if not self._stalled_now(node):
                self._step_roles(node, skip)
        except WatchdogFired as fired:
            self.now = max(self.now, self.roles[node].lrm_env.cur_time, self.roles[node].crm_env.cur_time)
            self._watchdog_reset(fired.node)
        for n in sorted(self.roles):
            if not self.hw.watchdog_check(n, self.now):
                self._watchdog_reset(n)

    def _watchdog_reset(self, node: str) -> None:
        self.hardware_cmd(f"power {node} off", "watchdog")
        self.log("info", "hardware", f"server '{node}' stopped by poweroff (watchdog)")
        self.roles[node].crm = None
        self.roles[node].lrm = None

    def _step_roles(self, node: str, skip: dict[str, bool]) -> None:
        r = self.roles[node]
        if r.crm is not None:
            if not skip["crm"]:
                exit_crm = not r.crm.do_one_iteration()
                self.now = max(self.now, r.crm_env.cur_time)
                self._check()
                if exit_crm:
                    r.crm_env.log("info", "exit (loop end)")
                    r.crm = None
                    shutdown = self.hw.nodes[node].shutdown or ""
                    if shutdown == "reboot":
                        self.hardware_cmd(f"power {node} off", "reboot")
                        self.hardware_cmd(f"power {node} on", "reboot")
                    elif shutdown == "shutdown":
                        self.hardware_cmd(f"power {node} off", "shutdown")
                    r.crm_stop = False
        if r.lrm is not None:
            if not skip["lrm"]:
                exit_lrm = not r.lrm.do_one_iteration()
                self.now = max(self.now, r.lrm_env.cur_time)
                self._check()
                if exit_lrm:
                    r.lrm_env.log("info", "exit (loop end)")
                    r.lrm = None
                    shutdown = self.hw.nodes[node].shutdown or ""
                    if r.lrm_restart:
                        r.lrm_restart = False
                        r.lrm = self._new_lrm(r)
                    elif shutdown in ("reboot", "shutdown"):
                        if r.crm is not None:
                            # the LRM exits before the CRM, as on a real node; the CRM's
                            # exit then powers the node off
                            self.hardware_cmd(f"crm {node} stop", shutdown)
                        else:  # no CRM left to wait for: the node goes down now
                            self.hardware_cmd(f"power {node} off", shutdown)
                            if shutdown == "reboot":
                                self.hardware_cmd(f"power {node} on", shutdown)

    def _new_crm(self, r: NodeRoles) -> CRM:
        p = self.profile
        r.crm_env.new_process()
        return CRM(r.crm_env, round_s=p.crm_round_s, wait_round_s=p.wait_round_s, fence_delay_s=p.fence_delay_s,
                   policy=p.policy)

    def _new_lrm(self, r: NodeRoles) -> LRM:
        p = self.profile
        r.lrm_env.new_process()
        return LRM(r.lrm_env, active_round_s=p.lrm_round_s, wait_round_s=p.wait_round_s, policy=p.policy)

    # --- hardware commands -----------------------------------------------------------------------

    def hardware_cmd(self, cmd: str, logid: str) -> None:
        parts = cmd.split()
        head = parts[0]
        self.log("info", logid, f"execute {cmd}")
        hw = self.hw
        if head == "skip-round":
            self.skip[parts[1]] += int(parts[2]) if len(parts) > 2 else 1
            return
        if head == "service":
            self._service_cmd(parts)
            return
        if head in FAULT_CMDS:
            fault_cmd(self, parts)
            return
        node = parts[1]
        if head in DAEMON_CMDS and node in self.stalled and (head != "crm" or parts[2] in ("stop", "start")):
            self.stall_deferred.setdefault(node, []).append(cmd)
            self.log("info", logid, f"'{cmd}' waits until the stalled daemon of '{node}' resumes")
            return
        r = self.roles[node]
        nh = hw.nodes[node]
        if head == "power":
            action = parts[2]
            if nh.power != action:
                if action == "on":
                    if r.crm is None:
                        r.crm = self._new_crm(r)
                    if r.lrm is None:
                        r.lrm = self._new_lrm(r)
                    r.lrm_restart = False
                    nh.cfs = {}
                else:
                    self.stalled.pop(node, None)
                    self.stall_deferred.pop(node, None)
                    if r.crm is not None:
                        r.crm_env.log("info", "killed by poweroff")
                        r.crm = None
                    if r.lrm is not None:
                        r.lrm_env.log("info", "killed by poweroff")
                        r.lrm = None
                        r.lrm_restart = False
                    hw.power_off(node)
            if nh.power != action or action == "off":
                nh.shutdown = None  # powering an already running node on changes nothing
            nh.power = action
            nh.network = action
            hw.partition_changed()
        elif head == "network":
            nh.network = parts[2]
            hw.partition_changed()
        elif head == "cfs":
            nh.cfs[parts[2]] = parts[3] == "work"
        elif head in ("reboot", "shutdown"):
            nh.shutdown = head
            if r.lrm is not None:
                r.lrm.shutdown()
        elif head == "restart-lrm":
            if r.lrm is not None:
                r.lrm_restart = True
                r.lrm.shutdown()
        elif head == "crm":
            action = parts[2]
            if action == "stop":
                if r.crm is not None:
                    r.crm_stop = True
                    r.crm.shutdown()
            elif action == "start":
                if r.crm is None:
                    r.crm = self._new_crm(r)
            elif action in ("enable-node-maintenance", "disable-node-maintenance"):
                hw.crm_commands.append(f"{action} {node}")
            else:
                hw.crm_commands.append(" ".join([action, *parts[3:]]))
        elif head == "pve-manager-version":
            nh.version = parts[-1]

    def _service_cmd(self, parts: list[str]) -> None:
        hw = self.hw
        sid, action = parts[1], parts[2]
        try:
            if action in ("started", "stopped", "disabled", "ignored", "enabled"):
                hw.update_service_config(sid, {"state": action})
            elif action in ("migrate", "relocate"):
                hw.crm_commands.append(f"{action} {sid} {parts[3]}")
            elif action == "stop":
                hw.crm_commands.append(f"stop {sid} {parts[3]}")
            elif action == "add":
                # service SID add NODE [STATE [RUNNING]]: RUNNING=1 means it already runs there
                raw: dict[str, Any] = {"node": parts[3], "state": parts[4] if len(parts) > 4 else "started"}
                hw.add_service(sid, raw)
                if len(parts) > 5 and parts[5] == "1":
                    hw.set_running(parts[3], sid, True)
            elif action == "die":
                for node in sorted(hw.running):
                    hw.kill_service(node, sid, "died")
            elif action == "delete":
                hw.delete_service(sid)
            elif action == "lock":
                hw.update_service_config(sid, {"lock": parts[3] if len(parts) > 3 else "backup"})
            elif action == "unlock":
                raw_cfg = hw.raw_service_config.get(sid)
                if raw_cfg is not None and "lock" in raw_cfg and (len(parts) < 4 or raw_cfg["lock"] == parts[3]):
                    raw = dict(raw_cfg)
                    raw.pop("lock")
                    hw.delete_service(sid)
                    hw.add_service(sid, raw)
            elif action == "manual-migrate":
                target = parts[3]
                cfg = hw.service_config.get(sid)
                if cfg is not None:
                    source = cfg["node"]
                    was_running = bool(hw.running[source].get(sid))
                    hw.set_running(source, sid, False)
                    hw.change_service_location(sid, source, target)
                    if was_running:
                        hw.set_running(target, sid, True)
            elif action in ("set-static-stats", "set-dynamic-stats"):
                table = hw.static_stats if action == "set-static-stats" else hw.dynamic_stats
                # memory is given in MiB here (as Proxmox's simulator), bytes in the files
                table.setdefault(sid, {}).update(
                    {k: float(v) * (1 << 20 if k in ("mem", "maxmem") else 1)
                     for k, v in zip(parts[3::2], parts[4::2], strict=False)})
        except ConfigError as exc:
            self.log("err", "hardware", f"service command failed - {exc}")

    # --- status for --status-json ---------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        hw = self.hw
        return {
            "time": self.now,
            "manager_status": hw.manager_status,
            "lrm_status": hw.lrm_status,
            "service_config": hw.service_config,
            "hardware": {n: {"power": h.power, "network": h.network} for n, h in hw.nodes.items()},
            "running": {n: sorted(s for s, v in r.items() if v) for n, r in hw.running.items()},
            "crm_state": {n: (r.crm.state if r.crm else None) for n, r in self.roles.items()},
            "lrm_state": {n: (r.lrm.state if r.lrm else None) for n, r in self.roles.items()},
            "violation": self.violation,
        }
