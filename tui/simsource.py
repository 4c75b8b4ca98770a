"""The simulator as a data source: the real core (harepl.roles CRM and LRM on
harepl.core) on harepl.sim's virtual hardware and clock, behind the same interface as
the live API (`tui.source.DataSource`), so the same screens and actions drive it.

The simulation advances only when asked (`step`): the app's clock runs, pauses and
steps it. One round is what `Simulation.run` does per loop (the simulator has no
single-round entry point; `step` follows its loop body). Requests take the API's routes
and bodies and become the simulator's commands (`service SID migrate NODE`, `crm NODE
enable-node-maintenance`, ...), refused as the API would (404, 409, 503 no quorum).
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from harepl.core.config import parse_groups, parse_rules
from harepl.runtime.api.client import ApiClientError
from harepl.sim.hardware import InvariantBroken
from harepl.sim.runner import PROFILES, Profile, Scenario, Simulation, load_scenario
from tui.model import Snapshot
from tui.source import DataSource

_LOG_LINE = re.compile(r"^(\w+)\s+(\S+)\s+(\S+): (.*)$")
_ROUTE = re.compile(r"^/(resources|nodes)/([^/]+)(?:/(\w+))?$")
LOG_KEPT = 5000


class SimSource(DataSource):
    kind = "sim"

    def __init__(self, scenario: Scenario, profile: Profile, folder: Path | None = None) -> None:
        self.folder = folder
        self.profile = profile
        self._log: deque[dict[str, Any]] = deque(maxlen=LOG_KEPT)
        self._seq = 0
        self._lock = threading.RLock()
        self.sim = Simulation(scenario, profile, self._emit, max_time_s=float("inf"))
        self.next_cmd_at = 0.0
        self.violation: str | None = None
        self.rounds = 0
        # nodes the scenario says are on start on (Proxmox's scenarios power them on in
        # their first command batch instead, which works too)
        for node, hw in sorted(self.sim.hw.nodes.items()):
            if hw.power == "on" and self.sim.roles[node].crm is None:
                network = hw.network
                hw.power = "off"
                self.sim.hardware_cmd(f"power {node} on", "scenario")
                if network == "off":        # powering on connects it: cut again as saved
                    self.sim.hardware_cmd(f"network {node} off", "scenario")

    @classmethod
    def from_folder(cls, folder: Path, profile: str = "default") -> SimSource:
        return cls(load_scenario(folder), PROFILES[profile], folder)

    # ------------------------------------------------------------ the clock

    @property
    def now(self) -> float:
        return self.sim.now

    def step(self, rounds: int = 1) -> str | None:
        """Advance `rounds` simulation rounds; the violated invariant, if one broke."""
        with self._lock:
            for _ in range(rounds):
                if self.violation is not None:
                    break
                try:
                    self._round()
                except InvariantBroken as exc:
                    self.violation = str(exc)
                    self.sim.violation = self.violation
                    self.sim.log("err", "invariant", f"INVARIANT BROKEN at {self.sim.now:g}: {exc}")
            return self.violation

    def _round(self) -> None:
        sim, p = self.sim, self.profile
        start = sim.now
        sim.rounds += 1
        self.rounds += 1
        if sim.hw.round_tick() | sim.hw.store.tick(sim.rounds, sim.log):
            sim._check()
        skip_now = {role: sim.skip[role] > 0 for role in ("crm", "lrm")}
        for role, skipping in skip_now.items():
            if skipping:
                sim.skip[role] -= 1
        for node in sorted(sim.roles):
            sim._step_node(node, skip_now)
        if sim.now - start < p.round_s:
            sim.now = start + p.round_s
        for r in sim.roles.values():
            r.lrm_env.loop_start_hook()
            r.crm_env.loop_start_hook()
        if sim.now < self.next_cmd_at:
            return
        if sim.round_count % p.cmd_every_rounds == 0 and sim.cmdlist:
            for cmd in sim.cmdlist.pop(0):
                m = re.fullmatch(r"delay\s+(\d+(?:\.\d+)?)\s*", cmd)
                if m:
                    self.next_cmd_at = sim.now + float(m[1])
                else:
                    sim.hardware_cmd(cmd, "cmdlist")
        sim.round_count += 1

    def save(self, folder: Path) -> list[str]:
        """Write the simulation as it is now as a scenario folder (Proxmox's format): the
        hardware switches, the services, the CRM's status, groups, rules, datacenter
        settings and the commands not run yet. `harepl tui --sim` or `harepl sim run`
        opens it. Returns the files written."""
        with self._lock:
            hw = self.sim.hw
            folder.mkdir(parents=True, exist_ok=True)
            files: dict[str, str] = {
                "hardware_status": json.dumps({n: {"power": h.power, "network": h.network}
                                               for n, h in sorted(hw.nodes.items())}, indent=1),
                "service_config": json.dumps(hw.raw_service_config, indent=1, sort_keys=True),
                "manager_status": json.dumps(hw.manager_status, indent=1, sort_keys=True),
                "datacenter.cfg": json.dumps(hw.datacenter, indent=1, sort_keys=True),
                "cmdlist": json.dumps(self.sim.cmdlist, indent=1),
            }
            for name, value in (("groups", hw.groups), ("rules_config", hw.rules)):
                if isinstance(value, str):
                    if value:
                        files[name] = value
                elif value:
                    files[name] = json.dumps(value, indent=1, sort_keys=True)
            for name, text in files.items():
                (folder / name).write_text(text + ("" if text.endswith("\n") else "\n"))
            return sorted(files)

    def hardware(self, cmd: str) -> None:
        """A hardware switch: `power NODE on|off`, `network NODE on|off`."""
        with self._lock:
            self.sim.hardware_cmd(cmd, "tui")

    # ------------------------------------------------------------ DataSource

    @property
    def target(self) -> str:
        return f"simulator ({self.folder or 'built-in scenario'}, {self.profile.name} profile)"

    def health_label(self, snap: Snapshot | None) -> str | None:
        off = [f"{n} {what} off" for n, hw in sorted(self.sim.hw.nodes.items())
               for what in ("power", "network") if getattr(hw, what) == "off"
               and not (what == "network" and hw.power == "off")]
        return (f"sim t={self.sim.now:.1f}s" + (f" ({', '.join(off)})" if off else "")
                + (" INVARIANT BROKEN" if self.violation else ""))

    def _emit(self, line: str) -> None:
        self._seq += 1
        m = _LOG_LINE.match(line)
        level, who, text = (m[1], m[3], m[4]) if m else ("info", "sim", line)
        self._log.append({"seq": self._seq, "ts": self.sim.now if hasattr(self, "sim") else 0.0,
                          "op": "simulator", "ok": level not in ("err", "crit"),
                          "detail": {"text": f"{who}: {text}"}})

    def _quorum(self) -> tuple[str, bool]:
        info, quorate = self.sim.hw.node_info()
        online = [n for n, i in info.items() if i["online"]]
        return (online[0] if online else sorted(info)[0]), quorate

    def fetch(self, on_switch: Any = None) -> Snapshot:
        with self._lock:
            hw, now = self.sim.hw, self.sim.now
            node, quorate = self._quorum()
            ms: dict[str, Any] = dict(hw.manager_status)
            master = ms.get("master_node")
            nodes = []
            for name in sorted(hw.nodes):
                lrm: dict[str, Any] = dict(hw.lrm_status.get(name) or {})
                nodes.append({"node": name, "status": (ms.get("node_status") or {}).get(name),
                              "master": name == master, "lrm_mode": lrm.get("mode"), "lrm_state": lrm.get("state"),
                              "power": hw.nodes[name].power, "network": hw.nodes[name].network})
            resources = [{"sid": sid, **cfg} for sid, cfg in sorted(hw.service_config.items())]
            leases = {name: now - lease.time for name in hw.nodes
                      if (lease := hw.leases.get(f"ha_agent_{name}_lock")) is not None and lease.node == name}
            watchdog = {name: "closed" for name in hw.nodes}
            for wd in hw.watchdogs.values():
                watchdog[wd.node] = "expired" if now - wd.update_time > hw.watchdog_timeout_s else "armed"
            restarts: dict[str, int] = {}
            for r in self.sim.roles.values():
                if r.lrm is not None:
                    restarts.update(r.lrm.workers.restart_tries)
            manager = {"manager_status": copy.deepcopy(ms), "quorum": {"node": node, "quorate": quorate},
                       "lrm_status": copy.deepcopy(dict(hw.lrm_status))}
            return Snapshot(status=[], manager=manager, nodes=nodes, resources=copy.deepcopy(resources),
                            wall_time_s=now, lease_age=leases, watchdog=watchdog, restarts=restarts,
                            via="simulator")

    def events(self, after_seq: int | None) -> list[dict[str, Any]]:
        with self._lock:
            if after_seq is None:
                return list(self._log)[-1000:]
            return [e for e in self._log if e["seq"] > after_seq]

    def request(self, method: str, path: str, body: Any = None) -> Any:
        with self._lock:
            return self._request(method, path, body or {})

    def _request(self, method: str, path: str, body: dict[str, Any]) -> Any:
        hw = self.sim.hw
        if method == "GET":
            if path == "/groups":
                return [{"group": g, **cfg} for g, cfg in sorted(parse_groups(hw.groups).items())]
            if path == "/rules":
                return [{"rule": r, **cfg} for r, cfg in sorted(parse_rules(hw.rules).items())]
            raise ApiClientError(f"no such path in simulation mode: {path}", 404)
        _node, quorate = self._quorum()
        if not quorate:
            raise ApiClientError("cluster not ready - no quorum (simulated)", 503)
        if method == "POST" and path == "/resources":
            sid, node = str(body.get("sid", "")), str(body.get("node", ""))
            if ":" not in sid:
                raise ApiClientError(f"invalid SID '{sid}'", 400)
            if sid in hw.service_config:
                raise ApiClientError(f"resource ID '{sid}' already defined", 409)
            if node not in hw.nodes:
                raise ApiClientError(f"no such node '{node}'", 400)
            self.sim.hardware_cmd(f"service {sid} add {node} {body.get('state', 'started')}", "tui")
            return {}
        m = _ROUTE.match(path)
        if m is None:
            raise ApiClientError(f"not available in simulation mode: {method} {path}", 501)
        kind, name, verb = m[1], unquote(m[2]), m[3]
        if kind == "nodes":
            if name not in hw.nodes:
                raise ApiClientError(f"no such node '{name}'", 404)
            if verb == "maintenance" and method == "POST":
                what = "enable" if body.get("enable") else "disable"
                self.sim.hardware_cmd(f"crm {name} {what}-node-maintenance", "tui")
                return {}
            raise ApiClientError(f"not available in simulation mode: {method} {path}", 501)
        if name not in hw.service_config:
            raise ApiClientError(f"no such resource '{name}'", 404)
        service_status: dict[str, Any] = dict(hw.manager_status.get("service_status") or {})
        state = (service_status.get(name) or {}).get("state")
        if verb in ("migrate", "relocate", "stop") and state == "error":
            raise ApiClientError(f"service '{name}' in error state, must be disabled and fixed first", 409)
        if verb in ("migrate", "relocate") and method == "POST":
            target = str(body.get("node", ""))
            if target not in hw.nodes:
                raise ApiClientError(f"no such node '{target}'", 400)
            self.sim.hardware_cmd(f"service {name} {verb} {target}", "tui")
        elif verb == "stop" and method == "POST":
            self.sim.hardware_cmd(f"service {name} stop {int(body.get('timeout', 0))}", "tui")
        elif verb is None and method == "PUT" and set(body) == {"state"}:
            self.sim.hardware_cmd(f"service {name} {body['state']}", "tui")
        elif verb is None and method == "DELETE":
            self.sim.hardware_cmd(f"service {name} delete", "tui")
        else:
            raise ApiClientError(f"not available in simulation mode: {method} {path}", 501)
        return {}
