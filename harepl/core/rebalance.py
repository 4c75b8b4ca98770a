"""Automatic rebalancing of running services (Proxmox's `ha-auto-rebalance` CRS option).

The node imbalance is the coefficient of variation (population standard deviation over
mean) of the online nodes' loads, a node's load being the mean of its CPU and memory
fractions. Static mode counts the services' configured CPUs/memory, dynamic mode their
current usage. When the imbalance stays above the threshold for `hold_rounds` CRM rounds
(no migration in flight or queued), the master migrates the one service (or bundle of
services in positive affinity) whose move lowers the imbalance most, if it lowers it by
at least the margin (relative). Candidates and the round counting are Proxmox's
(Manager.pm load_balance, get_resource_migration_candidates); the imbalance measure is
inferred from Proxmox's regression logs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harepl.core.placement import CompiledRules, get_node_affinity, get_resource_affinity, topsis_scores
from harepl.core.types import ServiceStatus

# Proxmox's defaults (Manager.pm update_crs_scheduler_mode)
IMBALANCE_THRESHOLD = 0.3   # ha-auto-rebalance-threshold
DEFAULT_MARGIN = 0.1        # ha-auto-rebalance-margin: relative improvement a move must bring
DEFAULT_HOLD_ROUNDS = 3     # ha-auto-rebalance-hold-duration
DEFAULT_METHOD = "bruteforce"
METHODS = ("bruteforce", "topsis", "exhaustive")  # 'exhaustive': harepl's older name of bruteforce
IN_FLIGHT = frozenset({"migrate", "relocate"})


@dataclass(frozen=True)
class Migration:
    sids: tuple[str, ...]  # the leader first
    target: str
    before: float
    after: float


def node_loads(
    placement: Mapping[str, str],
    nodes: Sequence[str],
    node_stats: Mapping[str, Mapping[str, float]],
    service_stats: Mapping[str, Mapping[str, float]],
    zero_cpu_is_unlimited: bool = True,
) -> dict[str, float]:
    cpu = {n: 0.0 for n in nodes}
    mem = {n: 0.0 for n in nodes}
    for sid, node in placement.items():
        if node not in cpu:
            continue
        st = service_stats.get(sid, {})
        maxcpu = float(node_stats[node]["maxcpu"])
        c = float(st.get("maxcpu", 0.0))
        # a configured limit of 0 CPUs means unlimited (the whole node); a usage of 0 is 0
        cpu[node] += maxcpu if (c == 0 and zero_cpu_is_unlimited) else c
        mem[node] += float(st.get("maxmem", 0.0))
    return {
        n: (cpu[n] / float(node_stats[n]["maxcpu"]) + mem[n] / float(node_stats[n]["maxmem"])) / 2
        for n in nodes
    }


def node_fractions(
    placement: Mapping[str, str],
    nodes: Sequence[str],
    node_stats: Mapping[str, Mapping[str, float]],
    service_stats: Mapping[str, Mapping[str, float]],
    zero_cpu_is_unlimited: bool = True,
) -> tuple[list[float], list[float]]:
    """Per node (in `nodes` order): CPU fraction, memory fraction."""
    cpu = {n: 0.0 for n in nodes}
    mem = {n: 0.0 for n in nodes}
    for sid, node in placement.items():
        if node not in cpu:
            continue
        st = service_stats.get(sid, {})
        c = float(st.get("maxcpu", 0.0))
        cpu[node] += float(node_stats[node]["maxcpu"]) if (c == 0 and zero_cpu_is_unlimited) else c
        mem[node] += float(st.get("maxmem", 0.0))
    return ([cpu[n] / float(node_stats[n]["maxcpu"]) for n in nodes],
            [mem[n] / float(node_stats[n]["maxmem"]) for n in nodes])


def imbalance(loads: Mapping[str, float]) -> float:
    values = list(loads.values())
    if not values:
        return 0.0
    mean = sum(values) / len(values)
    if mean <= 0:
        return 0.0
    var = sum((v - mean) ** 2 for v in values) / len(values)
    return float(var**0.5 / mean)


def stationary_bundles(ss: Mapping[str, ServiceStatus], compiled: CompiledRules) -> dict[str, list[str]]:
    """Proxmox's get_active_stationary_resource_bundles: leader (the alphabetically first
    started member) -> the started members of its positive group, when all are on one
    node and none of them is moving."""
    bundles: dict[str, list[str]] = {}
    for sid in sorted(ss):
        if ss[sid]["state"] != "started":
            continue
        members = [sid]
        nodes = {ss[sid]["node"]}
        moving = False
        for csid in sorted(compiled.positive.get(sid, ())):
            if csid not in ss:
                continue
            state = ss[csid]["state"]
            if state in ("migrate", "relocate"):
                moving = True
                break
            if state != "started":
                continue
            nodes.add(ss[csid]["node"])
            members.append(csid)
        if moving or len(nodes) > 1:
            continue
        members.sort()
        bundles[members[0]] = members
    return bundles


def migration_candidates(ss: Mapping[str, ServiceStatus], online: Sequence[str],
                         compiled: CompiledRules) -> list[tuple[str, list[str], list[str]]]:
    """Proxmox's get_resource_migration_candidates: (leader, bundle, target nodes), the
    targets being the leader's *preferred* nodes (its highest node-affinity priority
    online, so a move never leaves what placement would pull it back to) without those
    of its negative affinity and without its own."""
    out = []
    bundles = stationary_bundles(ss, compiled)
    for leader in sorted(bundles):
        _, targets = get_node_affinity(compiled, leader, online)
        _, separate = get_resource_affinity(compiled, leader, ss, online)
        targets = targets - separate - {ss[leader]["node"]}
        if targets:
            out.append((leader, bundles[leader], sorted(targets)))
    return out


def best_migration(
    ss: Mapping[str, ServiceStatus],
    online: Sequence[str],
    compiled: CompiledRules,
    node_stats: Mapping[str, Mapping[str, float]],
    service_stats: Mapping[str, Mapping[str, float]],
    margin: float = DEFAULT_MARGIN,
    zero_cpu_is_unlimited: bool = True,
    method: str = "bruteforce",
) -> Migration | None:
    """The migration that lowers the imbalance most ('bruteforce', alias 'exhaustive'),
    or, with 'topsis', the candidate whose resulting CPU/memory spread ranks best by
    TOPSIS; None unless it lowers the imbalance by at least `margin` of itself
    (Proxmox's relative change, ha-auto-rebalance-margin)."""
    nodes = sorted(online)
    running = {sid: sd["node"] for sid, sd in ss.items() if sd["state"] == "started" and sd["node"] in nodes}
    # each node's CPU and memory once; a candidate changes only its source and target
    # (so a round costs candidates x nodes, not candidates x services)
    cpu = {n: 0.0 for n in nodes}
    mem = {n: 0.0 for n in nodes}

    def weight(sid: str, node: str) -> tuple[float, float]:
        st = service_stats.get(sid, {})
        c = float(st.get("maxcpu", 0.0))
        return (float(node_stats[node]["maxcpu"]) if (c == 0 and zero_cpu_is_unlimited) else c,
                float(st.get("maxmem", 0.0)))

    for sid, node in running.items():
        c, w = weight(sid, node)
        cpu[node] += c
        mem[node] += w

    def fractions(cpus: Mapping[str, float], mems: Mapping[str, float]) -> tuple[list[float], list[float]]:
        return ([cpus[n] / float(node_stats[n]["maxcpu"]) for n in nodes],
                [mems[n] / float(node_stats[n]["maxmem"]) for n in nodes])

    def level(cpus: Mapping[str, float], mems: Mapping[str, float]) -> float:
        cf, mf = fractions(cpus, mems)
        return imbalance({n: (cf[i] + mf[i]) / 2 for i, n in enumerate(nodes)})

    before = level(cpu, mem)
    # the imbalance after a move from its sums: only the source's and the target's load change
    load = {n: (cpu[n] / float(node_stats[n]["maxcpu"]) + mem[n] / float(node_stats[n]["maxmem"])) / 2
            for n in nodes}
    k = len(nodes)
    s1 = sum(load.values())
    s2 = sum(x * x for x in load.values())
    candidates: list[tuple[Migration, tuple[str, str, tuple[str, ...]]]] = []
    for _leader, bundle, targets in migration_candidates(ss, nodes, compiled):
        source = running[bundle[0]]
        for target in targets:
            changed = {}
            for n in (source, target):
                c_n, m_n = cpu[n], mem[n]
                for member in bundle:
                    c, w = weight(member, n)
                    sign = -1.0 if n == source else 1.0
                    c_n += sign * c
                    m_n += sign * w
                changed[n] = (c_n / float(node_stats[n]["maxcpu"]) + m_n / float(node_stats[n]["maxmem"])) / 2
            t1 = s1 - load[source] - load[target] + changed[source] + changed[target]
            t2 = s2 - load[source] ** 2 - load[target] ** 2 + changed[source] ** 2 + changed[target] ** 2
            mean = t1 / k
            after = (max(t2 / k - mean * mean, 0.0) ** 0.5 / mean) if mean > 0 else 0.0
            candidates.append((Migration(tuple(bundle), target, before, after), (source, target, tuple(bundle))))
    if not candidates or before <= 0:
        return None
    if method == "topsis":
        # per resource: the sum of squares and the three largest fractions (a move changes
        # two nodes: the largest of the others is among the three)
        cf, mf = fractions(cpu, mem)
        base = {"cpu": dict(zip(nodes, cf, strict=True)), "mem": dict(zip(nodes, mf, strict=True))}
        squares = {r: sum(x * x for x in base[r].values()) for r in base}
        top3 = {r: sorted(base[r].items(), key=lambda item: -item[1])[:3] for r in base}
        rows: list[tuple[float, ...]] = []
        for _, (source, target, members) in candidates:
            new = {r: {source: base[r][source], target: base[r][target]} for r in base}
            for member in members:
                c, w = weight(member, source)
                new["cpu"][source] -= c / float(node_stats[source]["maxcpu"])
                new["mem"][source] -= w / float(node_stats[source]["maxmem"])
                c, w = weight(member, target)
                new["cpu"][target] += c / float(node_stats[target]["maxcpu"])
                new["mem"][target] += w / float(node_stats[target]["maxmem"])
            row: list[float] = []
            for r in ("cpu", "mem"):
                sq = squares[r] - base[r][source] ** 2 - base[r][target] ** 2 + sum(x * x for x in new[r].values())
                others = [x for n, x in top3[r] if n not in (source, target)]
                row += [1 + (max(sq, 0.0) / k) ** 0.5, 1 + max([*others, *new[r].values()])]
            rows.append(tuple(row))
        scores = topsis_scores(rows, (1.0, 2.0, 5.0, 10.0))
        best = candidates[max(range(len(candidates)), key=lambda i: (scores[i], -i))][0]
    else:
        best = candidates[0][0]
        for cand, _ in candidates[1:]:
            if cand.after < best.after - 1e-12:
                best = cand
    if (before - best.after) / before < margin:
        return None
    return best
