"""Automatic rebalancing of running services (Proxmox's `ha-auto-rebalance` CRS option).

The node imbalance is the coefficient of variation (population standard deviation over
mean) of the online nodes' loads, a node's load being the mean of its CPU and memory
fractions. Static mode counts the services' configured CPUs/memory, dynamic mode their
current usage. When the imbalance stays above the threshold for `hold_rounds` CRM rounds
(no migration in flight), the master migrates the one service (or bundle of services in
positive affinity) whose move lowers the imbalance most, if it lowers it enough.
These semantics are inferred from Proxmox's regression logs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harepl.core.placement import CompiledRules, get_node_affinity, topsis_scores
from harepl.core.types import ServiceStatus

IMBALANCE_THRESHOLD = 0.3
MIN_IMPROVEMENT = 0.05
DEFAULT_HOLD_ROUNDS = 3
IN_FLIGHT = frozenset({"migrate", "relocate", "request_start_balance"})


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


def best_migration(
    ss: Mapping[str, ServiceStatus],
    online: Sequence[str],
    compiled: CompiledRules,
    node_stats: Mapping[str, Mapping[str, float]],
    service_stats: Mapping[str, Mapping[str, float]],
    min_improvement: float = MIN_IMPROVEMENT,
    zero_cpu_is_unlimited: bool = True,
    method: str = "exhaustive",
) -> Migration | None:
    """The migration that lowers the imbalance most ('exhaustive'), or, with method
    'topsis', the candidate whose resulting CPU/memory spread ranks best by TOPSIS among
    those that lower the imbalance enough."""
    nodes = sorted(online)
    running = {sid: sd["node"] for sid, sd in ss.items() if sd["state"] == "started" and sd["node"] in nodes}
    before = imbalance(node_loads(running, nodes, node_stats, service_stats, zero_cpu_is_unlimited))
    best: Migration | None = None
    candidates: list[tuple[Migration, dict[str, str]]] = []
    for sid in sorted(running):
        bundle = tuple(sorted({sid} | {p for p in compiled.positive.get(sid, ()) if p in ss}))
        if bundle[0] != sid:
            continue  # bundles move with their alphabetically first member
        source = running[sid]
        if any(running.get(m) != source for m in bundle):
            continue  # a bundle that is not together (or not all running) stays put
        for target in nodes:
            if target == source:
                continue
            if not all(target in get_node_affinity(compiled, m, nodes)[0] for m in bundle):
                continue
            if any(
                ss[p]["node"] == target or ss[p].get("target") == target
                for m in bundle for p in compiled.negative.get(m, ()) if p in ss
            ):
                continue
            moved = dict(running)
            for m in bundle:
                moved[m] = target
            after = imbalance(node_loads(moved, nodes, node_stats, service_stats, zero_cpu_is_unlimited))
            candidates.append((Migration(bundle, target, before, after), moved))
    if method == "topsis":
        good = [(cand, moved) for cand, moved in candidates if before - cand.after >= min_improvement]
        if not good:
            return None
        rows: list[tuple[float, ...]] = []
        for _, moved in good:
            cpus, mems = node_fractions(moved, nodes, node_stats, service_stats, zero_cpu_is_unlimited)
            k = len(nodes)
            rows.append((1 + (sum(c * c for c in cpus) / k) ** 0.5, 1 + max(cpus),
                         1 + (sum(x * x for x in mems) / k) ** 0.5, 1 + max(mems)))
        scores = topsis_scores(rows, (1.0, 2.0, 5.0, 10.0))
        top = max(range(len(good)), key=lambda i: (scores[i], -i))
        return good[top][0]
    for cand, _ in candidates:
        if best is None or cand.after < best.after - 1e-12:
            best = cand
    if best is None or before - best.after < min_improvement:
        return None
    return best
