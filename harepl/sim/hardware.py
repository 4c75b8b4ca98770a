"""Simulated cluster hardware and shared state for the simulator.

Holds what Proxmox's Sim::Hardware keeps in its status directory: power/network per node,
the replicated state (manager_status, lrm_status, service config, crm command queue,
leases with epochs), watchdogs, and which services run where. Everything lives in memory;
the scenario folder is only read.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harepl.core.config import ConfigError, normalize_service, normalize_service_config
from harepl.core.types import LrmStatus, ManagerStatus, NodeInfo, ServiceConfig
from harepl.sim.store import StoreFaults


class InvariantBroken(Exception):
    """A safety invariant failed; the message says which."""


class WatchdogFired(Exception):
    """A role touched a watchdog that had already expired: on real hardware the node
    would have been reset at that moment; the simulator powers it off now."""

    def __init__(self, node: str) -> None:
        super().__init__(f"watchdog of '{node}' expired")
        self.node = node


@dataclass
class NodeHw:
    power: str = "off"
    network: str = "off"
    shutdown: str | None = None  # 'shutdown' | 'reboot' while a shutdown is in progress
    cfs: dict[str, bool] = field(default_factory=dict)  # rw / update -> works?
    version: str = ""
    maxcpu: float = 0.0
    maxmem: float = 0.0
    disk_full: bool = False  # its store member cannot persist: no write is acknowledged
    member: bool = True  # in the cluster's member list (`member NODE join|leave`)


@dataclass
class Lease:
    node: str
    time: float
    epoch: int


@dataclass
class Watchdog:
    node: str
    update_time: float


CFS_ERROR = "cfs connection refused - not mounted?"


class Hardware:
    def __init__(
        self,
        nodes: dict[str, NodeHw],
        service_config: dict[str, Any],
        manager_status: ManagerStatus,
        groups: Any,
        rules: Any,
        datacenter: dict[str, Any],
        *,
        lock_timeout_s: float,
        watchdog_timeout_s: float,
        log: Callable[[str, str, str], None],
        get_time: Callable[[], float],
    ) -> None:
        self.nodes = nodes
        self.service_config: dict[str, ServiceConfig] = normalize_service_config(service_config)
        self.raw_service_config: dict[str, dict[str, Any]] = copy.deepcopy(dict(service_config))
        self.manager_status: ManagerStatus = copy.deepcopy(manager_status)
        self.lrm_status: dict[str, LrmStatus] = {}
        self.groups = groups
        self.rules = rules
        self.datacenter = datacenter
        self.crm_commands: list[str] = []
        self.leases: dict[str, Lease] = {}
        self.epoch_counter = 0
        self.watchdogs: dict[str, Watchdog] = {}
        self.wd_counter = 0
        self.running: dict[str, dict[str, bool]] = {n: {} for n in nodes}
        self.lock_timeout_s = lock_timeout_s
        self.watchdog_timeout_s = watchdog_timeout_s
        self._log = log
        self._get_time = get_time
        self.static_stats: dict[str, dict[str, Any]] = {}
        self.dynamic_stats: dict[str, dict[str, Any]] = {}
        # per-sid try counters of failing fa: resources (VirtFail.pm keeps them globally)
        self.fail_tries: dict[str, dict[str, int]] = {"start": {}, "migrate": {}}
        # invariant bookkeeping: lease name -> when it was last taken by another node;
        # (node, sid) -> when the service last stopped running there
        self.lease_taken: dict[str, float] = {}
        self.stopped_at: dict[tuple[str, str], float] = {}
        # what a node cut off from the quorate partition still reads: the replicated state
        # as it was when it lost the partition (a Raft member reads no newer entries)
        self.stale: dict[str, tuple[ManagerStatus, dict[str, LrmStatus], dict[str, ServiceConfig]]] = {}
        # services whose monitor would find them dead (the 'service SID die' fault), by node
        self.deaths: dict[str, list[str]] = {}
        # --- faults (harepl/sim/faults.py generates them, docs/testing.md lists the verbs) ---
        # agent faults still to happen, per service: start-fail, start-hang, stop-fail,
        # stop-hang, die-after-start (each one consumed by the next matching agent call)
        self.agent_faults: dict[str, list[str]] = {}
        self.dying: list[tuple[str, str]] = []  # (node, sid) that die at the next round start
        self.lingering: dict[tuple[str, str], int] = {}  # hung stops: rounds until the service ends
        # sid -> node whose stop of it is not confirmed (a stop returned while it still ran)
        self.unconfirmed: dict[str, str] = {}
        self.strict_confirm = False  # set by the simulation: safe policy checks the above
        # partial partitions: pairs of nodes that cannot reach each other; the Raft leader
        # (only nodes reaching it are members of the quorate partition while a link is cut)
        self.links_cut: set[frozenset[str]] = set()
        self.leader: str | None = None
        self.store = StoreFaults()
        self._online_cache: tuple[frozenset[str], bool] | None = None

    # --- membership ---------------------------------------------------------------------------

    def _up(self) -> list[str]:
        return [n for n, h in sorted(self.nodes.items()) if h.power == "on" and h.network == "on" and h.member]

    def members(self) -> list[str]:
        return [n for n, h in sorted(self.nodes.items()) if h.member]

    def _online(self) -> tuple[frozenset[str], bool]:
        """(members of the quorate partition, quorate); cached until partition_changed()."""
        if self._online_cache is None:
            up = self._up()
            if self.links_cut:
                # a member reaches the leader directly (pre-vote and leader stickiness keep a
                # node that only reaches a follower from deposing the leader)
                leader = self.leader
                up = [n for n in up
                      if leader is not None and (n == leader or frozenset((n, leader)) not in self.links_cut)]
            quorate = len(up) > len(self.members()) // 2
            self._online_cache = (frozenset(up) if quorate else frozenset(), quorate)
        return self._online_cache

    def node_info(self) -> tuple[dict[str, NodeInfo], bool]:
        online, quorate = self._online()
        return {n: {"online": n in online} for n in self.members()}, quorate

    def quorate_for(self, node: str) -> bool:
        return node in self._online()[0]

    def _elect(self) -> None:
        """Keep the Raft leader while it reaches a majority, else the first node that does."""
        up = self._up()
        need = len(self.members()) // 2 + 1

        def reach(n: str) -> int:
            return sum(1 for m in up if m == n or frozenset((n, m)) not in self.links_cut)

        if self.leader in up and reach(self.leader) >= need:
            return
        self.leader = next((n for n in up if reach(n) >= need), None)

    def reads_live(self, node: str) -> bool:
        """A node reads the replicated state as it is only while it is a member of the
        quorate partition and its store member can persist (a full disk applies nothing)."""
        return self.quorate_for(node) and not self.nodes[node].disk_full

    def partition_changed(self) -> None:
        """After power, network, links or a disk changed: a node that just left the quorate
        partition keeps the state it had; one that joined it reads the live state again."""
        self._online_cache = None
        self._elect()
        self._online_cache = None
        for node in sorted(self.nodes):
            if self.reads_live(node):
                self.stale.pop(node, None)
            elif node not in self.stale:
                self.stale[node] = (copy.deepcopy(self.manager_status), copy.deepcopy(self.lrm_status),
                                    copy.deepcopy(self.service_config))

    def view_for(self, node: str) -> tuple[ManagerStatus, dict[str, LrmStatus], dict[str, ServiceConfig]]:
        """(manager_status, lrm_status, service_config) as `node` reads them (do not modify)."""
        return self.stale.get(node) or (self.manager_status, self.lrm_status, self.service_config)

    def cfs_works(self, node: str, what: str) -> bool:
        return self.nodes[node].cfs.get(what, True)

    # --- leases ----------------------------------------------------------------------------------

    def get_lock(self, name: str, node: str, now: float, log: Callable[[str, str], None]) -> int | None:
        """Acquire/renew lease `name` for `node`; returns its epoch or None."""
        if not self.quorate_for(node):
            return None
        lease = self.leases.get(name)
        if lease is not None and now - lease.time <= self.lock_timeout_s:
            if lease.node == node:
                lease.time = now
                return lease.epoch
            return None
        self.epoch_counter += 1
        if name.startswith("ha_agent_") and name != f"ha_agent_{node}_lock":
            self._check_fence(name, node)
            self.lease_taken[name] = now
        self.leases[name] = Lease(node, now, self.epoch_counter)
        log("info", f"got lock '{name}'")
        return self.epoch_counter

    def _check_fence(self, name: str, by_node: str) -> None:
        """Taking a node's lease fences it: nothing may still run there that the CRM could
        recover (frozen and 'error' services are never recovered, so they may)."""
        fenced = name[len("ha_agent_"):-len("_lock")]
        states = {sid: sd.get("state") for sid, sd in self.manager_status.get("service_status", {}).items()}
        alive = sorted(sid for sid, on in self.running.get(fenced, {}).items()
                       if on and states.get(sid) not in ("freeze", "error"))
        if alive:
            raise InvariantBroken(f"lease of '{fenced}' taken by '{by_node}' while '{fenced}' still runs "
                                  f"{', '.join(alive)} (a fence that fenced nothing)")
        # the fence confirms every stop there that the CRM may act on: nothing of those runs
        # (just checked); frozen and 'error' services stay unconfirmed, they are never moved
        for sid in [s for s, n in self.unconfirmed.items() if n == fenced]:
            if states.get(sid) not in ("freeze", "error"):
                del self.unconfirmed[sid]

    def release_lock(self, name: str, node: str, now: float) -> bool:
        if not self.quorate_for(node):
            return False
        lease = self.leases.get(name)
        if lease is None:
            return False
        if now - lease.time > self.lock_timeout_s:
            return True
        if lease.node == node:
            del self.leases[name]
            return True
        return False

    def lease_epoch(self, name: str) -> int | None:
        lease = self.leases.get(name)
        return lease.epoch if lease else None

    # --- watchdog -------------------------------------------------------------------------------

    def watchdog_open(self, node: str, now: float) -> str:
        self.wd_counter += 1
        handle = f"WD:{node}:{self.wd_counter}"
        self.watchdogs[handle] = Watchdog(node, now)
        return handle

    def watchdog_update(self, handle: str, now: float) -> None:
        wd = self.watchdogs.get(handle)
        if wd is None:
            raise RuntimeError(f"no such watchdog handle '{handle}'")
        if now - wd.update_time > self.watchdog_timeout_s:
            raise WatchdogFired(wd.node)
        wd.update_time = now

    def watchdog_close(self, handle: str, now: float) -> None:
        wd = self.watchdogs.pop(handle, None)
        if wd is None:
            raise RuntimeError(f"no such watchdog handle '{handle}'")
        if now - wd.update_time > self.watchdog_timeout_s:
            raise WatchdogFired(wd.node)

    def watchdog_check(self, node: str, now: float) -> bool:
        ok = True
        for handle in sorted(self.watchdogs):
            wd = self.watchdogs[handle]
            if wd.node == node and now - wd.update_time > self.watchdog_timeout_s:
                ok = False
                del self.watchdogs[handle]
        return ok

    def watchdog_reset(self, node: str) -> None:
        for handle in [h for h, wd in self.watchdogs.items() if wd.node == node]:
            del self.watchdogs[handle]

    # --- service config ---------------------------------------------------------------------------

    def _set_raw(self, sid: str, raw: dict[str, Any]) -> None:
        self.service_config[sid] = normalize_service(sid, raw)
        self.raw_service_config[sid] = raw

    def update_service_config(self, sid: str, changes: dict[str, object]) -> None:
        if sid not in self.raw_service_config:
            raise ConfigError(f"no such resource '{sid}'")
        raw = dict(self.raw_service_config[sid])
        raw.update(changes)
        self._set_raw(sid, raw)

    def add_service(self, sid: str, raw: dict[str, Any]) -> None:
        if sid in self.raw_service_config:
            raise ConfigError(f"resource ID '{sid}' already defined")
        self._set_raw(sid, raw)

    def delete_service(self, sid: str) -> None:
        self.raw_service_config.pop(sid, None)
        self.service_config.pop(sid, None)

    def change_service_location(self, sid: str, current: str, new: str) -> None:
        cfg = self.service_config.get(sid)
        if cfg is None:
            raise RuntimeError(f"no such service '{sid}'")
        if cfg["node"] != current:
            raise RuntimeError(f"current_node for '{sid}' does not match ({current} != {cfg['node']})")
        self.update_service_config(sid, {"node": new})

    def steal_service(self, sid: str, current: str, new: str, by_node: str, now: float) -> None:
        """Recovery of a fenced service ('fence before recovery', docs/safety.md): legal
        only if the service no longer runs on the node it is recovered from and that
        node's lease was taken by another node after the service last ran there. (The
        master need not hold that lease still: once fenced, the service's 'fence' and
        'recovery' states keep the old node's LRM from starting it again.)"""
        if current != new:
            taken = self.lease_taken.get(f"ha_agent_{current}_lock")
            if self.running[current].get(sid):
                raise InvariantBroken(f"service '{sid}' recovered from node '{current}' to '{new}' by "
                                      f"'{by_node}' while it still runs on '{current}'")
            if taken is None or taken < self.stopped_at.get((current, sid), float("-inf")):
                raise InvariantBroken(
                    f"service '{sid}' recovered from node '{current}' to '{new}' by '{by_node}' "
                    f"without a fence of '{current}' since it last ran there"
                )
        self.change_service_location(sid, current, new)

    # --- running services ---------------------------------------------------------------------

    def set_running(self, node: str, sid: str, running: bool) -> None:
        if running:
            other = self.unconfirmed.get(sid)
            if self.strict_confirm and other is not None and other != node:
                raise InvariantBroken(f"service '{sid}' started on '{node}' while the stop of its instance on "
                                      f"'{other}' is not confirmed")
            self.running[node][sid] = True
            self.check_single_instance(sid)
        elif self.running[node].pop(sid, None):
            self.stopped_at[(node, sid)] = self._get_time()
            self.lingering.pop((node, sid), None)

    def stop_not_confirmed(self, node: str, sid: str) -> None:
        if self.running[node].get(sid):
            self.unconfirmed[sid] = node

    def stop_confirmed(self, node: str, sid: str) -> None:
        """An agent on `node` found `sid` not running there."""
        if self.unconfirmed.get(sid) == node:
            del self.unconfirmed[sid]

    def power_off(self, node: str) -> None:
        """Everything running on `node` dies now."""
        for sid in sorted(self.running[node]):
            self.set_running(node, sid, False)
        for sid in [s for s, n in self.unconfirmed.items() if n == node]:
            del self.unconfirmed[sid]  # a dead node runs nothing: its stops are confirmed
        self.watchdog_reset(node)

    def kill_service(self, node: str, sid: str, why: str) -> bool:
        """`sid` ends on `node` without its LRM asking (it died, a hung stop ended): the
        monitor reports it to the LRM."""
        if not self.running[node].get(sid):
            return False
        self.set_running(node, sid, False)
        self._log("info", "hardware", f"service {sid} {why} on node '{node}'")
        self.deaths.setdefault(node, []).append(sid)
        return True

    def round_tick(self) -> bool:
        """Round start: services that die right after their start die, hung stops end.
        True if anything happened."""
        if not self.dying and not self.lingering:
            return False
        dying, self.dying = self.dying, []
        for node, sid in dying:
            self.kill_service(node, sid, "died")
        for key in sorted(self.lingering):
            self.lingering[key] -= 1
            if self.lingering[key] <= 0:
                del self.lingering[key]
                self.kill_service(key[0], key[1], "stopped late")
        return True

    def check_guarded(self, node: str, now: float) -> None:
        """A node whose lease lapsed (absent, another's or expired) has stopped every local
        service the CRM may move, or has an armed watchdog that kills it (frozen and
        'error' services are never recovered; a disarmed cluster guards nothing)."""
        on = self.running[node]
        if not on or self.nodes[node].power != "on" or "disarm" in self.manager_status:
            return
        lease = self.leases.get(f"ha_agent_{node}_lock")
        if lease is not None and lease.node == node and now - lease.time <= self.lock_timeout_s:
            return
        if any(wd.node == node for wd in self.watchdogs.values()):
            return
        states = {sid: sd.get("state") for sid, sd in self.manager_status.get("service_status", {}).items()}
        bad = sorted(sid for sid, up in on.items() if up and states.get(sid) not in (None, "freeze", "error"))
        if bad:
            raise InvariantBroken(f"lease of '{node}' lapsed with no watchdog armed while '{node}' is still running "
                                  f"{', '.join(bad)}")

    def check_single_instance(self, sid: str) -> None:
        where = sorted(n for n, r in self.running.items() if r.get(sid))
        if len(where) > 1:
            raise InvariantBroken(f"service '{sid}' running on more than one node: {', '.join(where)}")
