"""Scenario generation for `harepl sim fuzz`: the classic faults and the faults of issue 8.

`generate(seed)` builds one random but reproducible scenario in Proxmox's folder format: a
cluster of K nodes with a few services, command batches mixing faults (power, network,
reboot, shutdown, restart-lrm, crm stop/start, node maintenance) with service commands
(started, stopped, disabled, migrate, relocate, stop), quiet time for shutdowns in flight
to end, a healing batch and more quiet time.

With the fault set 'all' (the default) the batches also get, from a second random stream,
the faults a real node faces beyond those (verbs in harepl/sim/commands.py): process
stalls, store faults (late commits that time out yet apply, leader changes), partial
partitions, full disks, agents that fail, hang or die after their start, services dying,
membership changes (a node that joins mid-run, a member taken out and back);
and the workload gets HA groups or rules (node and resource affinity) and a CRS mode
(basic/static, rebalance on start). The healing batch undoes them too; a service whose
agent misbehaved is stopped by hand and disabled there, and requested again two batches
later (an operator clearing an 'error' state: "stop not confirmed" needs the node to
confirm that it no longer runs first).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from harepl.sim.agents import AGENT_FAULTS

FAULT_SETS = ("all", "classic")
# batches between the healing and the operator requesting agent-faulted services again
REQUEST_AGAIN_AFTER = 2
STALL_ROUNDS = (1, 2, 3, 4, 6, 8, 12)  # watchdog: pve/async 3 rounds, fast 6, default 10


# Quiet batches after healing: each batch is one command period of the simulator; Proxmox's
# timings need ~4 periods to fence a node and recover its services.
HEAL_QUIET_BATCHES = 6
# Quiet batches before healing, so that a shutdown or reboot started by the last random
# batch has ended under every timing profile (pve: ~45 s of a 100 s batch).
SETTLE_BATCHES = 3
SERVICE_TYPES = ("vm", "ct")


@dataclass
class FuzzCase:
    """One generated scenario: its inputs in Proxmox's shapes."""

    seed: int
    nodes: list[str]
    service_config: dict[str, dict[str, object]]
    cmdlist: list[list[str]]
    requested: dict[str, str] = field(default_factory=dict)  # final requested state per service
    steps: int = 8
    faults: str = "all"
    # the workload beyond services (faults 'all'): files written as they are, node sizes
    files: dict[str, str] = field(default_factory=dict)
    node_stats: dict[str, dict[str, float]] = field(default_factory=dict)
    joining: list[str] = field(default_factory=list)  # nodes that are not members at the start

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        hardware: dict[str, dict[str, object]] = {
            n: {"power": "off", "network": "off", **self.node_stats.get(n, {})} for n in self.nodes}
        for n in self.joining:
            hardware[n]["member"] = False
        (folder / "hardware_status").write_text(json.dumps(hardware, indent=2) + "\n")
        for name, text in sorted(self.files.items()):
            (folder / name).write_text(text)
        (folder / "service_config").write_text(json.dumps(self.service_config, indent=4) + "\n")
        (folder / "manager_status").write_text("{}\n")
        (folder / "cmdlist").write_text(
            "[\n" + ",\n".join("    " + json.dumps(batch) for batch in self.cmdlist) + "\n]\n")


@dataclass
class _Model:
    """What the generator knows about the hardware, to keep commands meaningful."""

    power: dict[str, bool]
    network: dict[str, bool]
    crm: dict[str, bool]
    maintenance: set[str] = field(default_factory=set)
    down_soon: set[str] = field(default_factory=set)  # shutdown/reboot in flight this batch


def generate(seed: int, nodes: int = 3, steps: int = 8, services: int | None = None,
             faults: str = "all") -> FuzzCase:
    """The scenario of `seed`: the same seed always gives the same scenario.

    faults 'classic' is the generator as it was before the faults of issue 8 (power,
    network, reboot, shutdown, restart-lrm, crm, maintenance, service commands): the seeds
    reported then replay with it. 'all' adds, from a second random stream (so that the
    classic part of a seed stays the same), the fault verbs of harepl/sim/commands.py and
    a workload of groups or rules and a CRS mode."""
    if faults not in FAULT_SETS:
        raise ValueError(f"unknown fault set '{faults}' ({', '.join(FAULT_SETS)})")
    rng = random.Random(seed)
    names = [f"node{i}" for i in range(1, nodes + 1)]
    count = services if services is not None else rng.randint(1, 2 * nodes)
    config: dict[str, dict[str, object]] = {}
    requested: dict[str, str] = {}
    for index in range(count):
        sid = f"{rng.choice(SERVICE_TYPES)}:{101 + index}"
        state = rng.choices(["started", "stopped", "disabled"], weights=[6, 1, 1])[0]
        config[sid] = {"node": rng.choice(names), "state": state}
        requested[sid] = state

    model = _Model(power={n: True for n in names}, network={n: True for n in names}, crm={n: True for n in names})
    cmdlist: list[list[str]] = [[f"power {n} on" for n in names]]
    for _ in range(steps):
        batch: list[str] = []
        model.down_soon = set()
        for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
            cmd = _random_command(rng, names, config, requested, model)
            if cmd:
                batch.append(cmd)
        cmdlist.append(batch or ["delay 0"])

    extra = _Faults(random.Random(f"harepl-faults-{seed}"), names, config) if faults == "all" else None
    if extra is not None:
        extra.membership(cmdlist)
        for batch in cmdlist[1:]:
            extra.add_to(batch)

    # Let shutdowns and reboots still in flight finish first (a power-on of a node that is
    # still shutting down would be a no-op, and the healing would not heal it).
    cmdlist += [["delay 0"]] * SETTLE_BATCHES
    # Heal every fault, then give the cluster time to converge.
    heal: list[str] = []
    for n in names:
        heal += [f"power {n} on", f"network {n} on"]
    heal += [f"crm {n} start" for n in names if not model.crm[n]]
    heal += [f"crm {n} disable-node-maintenance" for n in sorted(model.maintenance)]
    cmdlist.append(heal)
    if extra is not None:
        extra.heal(heal, cmdlist, requested)
    cmdlist += [["delay 0"]] * HEAL_QUIET_BATCHES
    case = FuzzCase(seed=seed, nodes=names, service_config=config, cmdlist=cmdlist, requested=requested,
                    steps=steps, faults=faults)
    if extra is not None:
        extra.workload(case)
        case.nodes = extra.names
        case.joining = extra.joining
    return case


def _random_command(rng: random.Random, names: list[str], config: dict[str, dict[str, object]],
                    requested: dict[str, str], model: _Model) -> str | None:
    node = rng.choice(names)
    kind = rng.choices(
        ["power", "network", "reboot", "shutdown", "restart-lrm", "crm", "maintenance", "service"],
        weights=[3, 4, 1, 1, 1, 1, 1, 6],
    )[0]
    if kind == "power":
        # also while a shutdown/reboot is in flight: 'power on' of a node still on is a no-op
        model.power[node] = not model.power[node]
        model.crm[node] = True  # a node that powers on starts its CRM again
        return f"power {node} {'on' if model.power[node] else 'off'}"
    if kind == "network":
        model.network[node] = not model.network[node]
        return f"network {node} {'on' if model.network[node] else 'off'}"
    if kind in ("reboot", "shutdown"):
        if not model.power[node] or node in model.down_soon:
            return None
        model.down_soon.add(node)
        model.crm[node] = True  # back with the node (reboot) or with the healing power-on
        if kind == "shutdown":
            model.power[node] = False
        return f"{kind} {node}"
    if kind == "restart-lrm":
        if not model.power[node] or node in model.down_soon:
            return None
        model.down_soon.add(node)
        return f"restart-lrm {node}"
    if kind == "crm":
        if not model.power[node] or node in model.down_soon:
            return None
        # a `crm start` in the batch of its `crm stop` comes while the CRM is still running
        # and is ignored: one CRM command per node and batch keeps the model right
        model.down_soon.add(node)
        model.crm[node] = not model.crm[node]
        return f"crm {node} {'start' if model.crm[node] else 'stop'}"
    if kind == "maintenance":
        if node in model.maintenance:
            model.maintenance.discard(node)
            return f"crm {node} disable-node-maintenance"
        model.maintenance.add(node)
        return f"crm {node} enable-node-maintenance"
    sid = rng.choice(sorted(config))
    action = rng.choices(["started", "stopped", "disabled", "migrate", "relocate", "stop"],
                         weights=[4, 1, 1, 3, 2, 1])[0]
    if action in ("migrate", "relocate"):
        return f"service {sid} {action} {rng.choice(names)}"
    if action == "stop":
        requested[sid] = "stopped"
        return f"service {sid} stop {rng.choice([0, 10, 60])}"
    requested[sid] = action
    return f"service {sid} {action}"


class _Faults:
    """The faults of issue 8 for one seed, and how to heal them."""

    def __init__(self, rng: random.Random, names: list[str], config: dict[str, dict[str, object]]) -> None:
        self.rng = rng
        self.names = list(names)
        self.joining: list[str] = []  # a node added mid-run (not a member at the start)
        self.left: set[str] = set()
        self.sids = sorted(config)
        self.config = config
        self.cut: set[tuple[str, str]] = set()
        self.disk_full: set[str] = set()
        self.slow: set[str] = set()
        self.agent_faulted: set[str] = set()

    def membership(self, cmdlist: list[list[str]]) -> None:
        """Sometimes a node added mid-run: powered on as a non-member, it joins later."""
        if self.rng.random() >= 0.25 or len(cmdlist) < 3:
            return
        new = f"node{len(self.names) + 1}"
        self.names.append(new)
        self.joining.append(new)
        cmdlist[0].append(f"power {new} on")
        cmdlist[self.rng.randrange(1, len(cmdlist))].append(f"member {new} join")

    def add_to(self, batch: list[str]) -> None:
        for _ in range(self.rng.choice([0, 1, 1, 2])):
            cmd = self._one()
            if cmd:
                if batch == ["delay 0"]:
                    batch.clear()
                batch.append(cmd)

    def _one(self) -> str | None:
        rng, node = self.rng, self.rng.choice(self.names)
        kind = rng.choices(["stall", "agent", "die", "slow", "leader", "link", "disk", "member"],
                           weights=[3, 3, 1, 2, 1, 2, 1, 1])[0]
        if kind == "stall":
            return f"stall {node} {rng.choice(STALL_ROUNDS)}"
        if kind == "agent":
            sid = rng.choice(self.sids)
            self.agent_faulted.add(sid)
            return f"agent {sid} {rng.choice(AGENT_FAULTS)} {rng.choice([1, 1, 2])}"
        if kind == "die":
            return f"service {rng.choice(self.sids)} die"
        if kind == "slow":
            if node in self.slow and rng.random() < 0.5:
                self.slow.discard(node)
                return f"store {node} ok"
            self.slow.add(node)
            return f"store {node} slow {rng.randint(1, 4)}"
        if kind == "leader":
            return f"store leader-change {rng.randint(1, 3)}"
        if kind == "link":
            a, b = sorted(rng.sample(self.names, 2))
            if (a, b) in self.cut:
                self.cut.discard((a, b))
                return f"link {a} {b} on"
            self.cut.add((a, b))
            return f"link {a} {b} off"
        if kind == "member":
            if node in self.joining:
                return None
            if node in self.left:
                self.left.discard(node)
                return f"member {node} join"
            self.left.add(node)
            return f"member {node} leave"
        if node in self.disk_full:
            self.disk_full.discard(node)
            return f"disk {node} ok"
        self.disk_full.add(node)
        return f"disk {node} full"

    def heal(self, heal: list[str], cmdlist: list[list[str]], requested: dict[str, str]) -> None:
        for n in self.joining:
            heal += [f"power {n} on", f"network {n} on"]
        heal += [f"member {n} join" for n in sorted(set(self.joining) | self.left)]
        heal += [f"link {a} {b} on" for a, b in sorted(self.cut)]
        heal += [f"disk {n} ok" for n in sorted(self.disk_full)]
        heal += [f"store {n} ok" for n in sorted(self.slow)]
        for sid in sorted(self.agent_faulted):
            # the operator: stops it by hand where it still runs (a failed stop leaves it
            # running in 'error', "stop it by hand"), clears 'error' by disabling it
            heal += [f"agent {sid} ok", f"service {sid} die", f"service {sid} disabled"]
        if self.agent_faulted:
            cmdlist += [["delay 0"]] * REQUEST_AGAIN_AFTER
            cmdlist.append([f"service {sid} {requested[sid]}" for sid in sorted(self.agent_faulted)])

    def workload(self, case: FuzzCase) -> None:
        rng, names = self.rng, self.names
        crs = rng.choice([None, "basic", "static", "static"])
        if crs is not None:
            dc: dict[str, object] = {"ha": crs}
            if rng.random() < 0.5:
                dc["ha-rebalance-on-start"] = 1
            case.files["datacenter.cfg"] = json.dumps({"crs": dc}, indent=4) + "\n"
            if crs == "static":
                case.node_stats = {n: {"maxcpu": rng.choice([8, 16, 24]), "maxmem": rng.choice([16, 32, 64]) << 30}
                                   for n in names}
        placement = rng.choice(["none", "none", "groups", "rules"])
        if placement == "groups":
            case.files["groups"] = self._groups(case)
        elif placement == "rules":
            case.files["rules_config"] = self._rules()

    def _members(self) -> str:
        rng = self.rng
        nodes = rng.sample(self.names, rng.randint(1, len(self.names) - 1))
        return ",".join(f"{n}:{rng.randint(1, 3)}" if rng.random() < 0.5 else n for n in sorted(nodes))

    def _groups(self, case: FuzzCase) -> str:
        rng, text = self.rng, []
        for g in range(rng.randint(1, 2)):
            text.append(f"group: fuzz{g}\n\tnodes {self._members()}\n"
                        f"\trestricted {rng.randint(0, 1)}\n\tnofailback {rng.randint(0, 1)}\n")
        for sid in self.sids:
            if rng.random() < 0.6:
                case.service_config[sid]["group"] = f"fuzz{rng.randrange(len(text))}"
        return "\n".join(text)

    def _rules(self) -> str:
        rng, text = self.rng, []
        sids = list(self.sids)
        rng.shuffle(sids)
        pinned = sids[:rng.randint(0, len(sids))]
        if pinned:
            text.append(f"node-affinity: fuzz-nodes\n\tnodes {self._members()}\n"
                        f"\tresources {','.join(sorted(pinned))}\n\tstrict {rng.randint(0, 1)}\n")
        free = [s for s in self.sids if s not in pinned]
        if len(free) >= 2:
            apart = rng.sample(free, min(len(free), rng.randint(2, len(self.names))))
            affinity = rng.choice(["positive", "negative"])
            text.append(f"resource-affinity: fuzz-{affinity}\n\tresources {','.join(sorted(apart))}\n"
                        f"\taffinity {affinity}\n")
        return "\n".join(text)
