"""Node selection: node-affinity (and groups), resource-affinity, basic usage scoring.

Semantics of Proxmox's `Manager::select_service_node`, `Rules::NodeAffinity`,
`Rules::ResourceAffinity` and `Usage::Basic` (service count per node).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from harepl.core import rules as rules_mod
from harepl.core.rules import Transformed
from harepl.core.types import RuleConfig, ServiceConfig, ServiceStatus

NodePreference = Literal["none", "best-score", "try-next"]

# Service states that put load on their current node / on their target node.
_USES_CURRENT = frozenset(
    {"started", "request_stop", "fence", "freeze", "error", "recovery", "migrate", "relocate"}
)
_USES_TARGET = frozenset({"migrate", "relocate", "request_start_balance"})


def used_service_nodes(
    online: Mapping[str, object] | frozenset[str] | set[str], sd: Mapping[str, object]
) -> tuple[str | None, str | None]:
    """(current, target) nodes a service puts load on, restricted to online nodes."""
    state = str(sd.get("state", ""))
    node = sd.get("node")
    target = sd.get("target")
    current_node = node if state in _USES_CURRENT and isinstance(node, str) and node in online else None
    target_node = (
        target if state in _USES_TARGET and isinstance(target, str) and target in online else None
    )
    return current_node, target_node


class BasicUsage:
    """Service count per online node (Proxmox's Usage::Basic)."""

    def __init__(self, online_nodes: Iterable[str]) -> None:
        self.nodes: dict[str, set[str]] = {n: set() for n in online_nodes}

    def add_service_usage(self, sid: str, sd: Mapping[str, object]) -> None:
        cur, tgt = used_service_nodes(self.nodes, sd)
        for n in (cur, tgt):
            if n is not None:
                self.nodes[n].add(sid)

    def remove_service_usage(self, sid: str) -> None:
        for used in self.nodes.values():
            used.discard(sid)

    def scores(self) -> dict[str, int]:
        return {n: len(s) for n, s in self.nodes.items()}


# TOPSIS criteria of Proxmox's static scheduler (all minimised): average and highest
# CPU and memory load over the nodes, as if the service ran on the candidate node.
_TOPSIS_WEIGHTS = (1.0, 2.0, 5.0, 10.0)


def topsis_scores(matrix: list[tuple[float, ...]], weights: tuple[float, ...]) -> list[float]:
    """Closeness to the ideal worst alternative (0..1, higher is better), every criterion
    minimised, weights normalised to sum 1 (TOPSIS as in proxmox-resource-scheduling)."""
    if not matrix:
        return []
    n = len(weights)
    total = sum(weights)
    w = [x / total for x in weights]
    norm = [sum(row[j] ** 2 for row in matrix) ** 0.5 for j in range(n)]
    m = [[row[j] / norm[j] if norm[j] else row[j] for j in range(n)] for row in matrix]
    best = [min(r[j] for r in m) for j in range(n)]
    worst = [max(r[j] for r in m) for j in range(n)]
    scores = []
    for r in m:
        d_best = sum(((r[j] - best[j]) * w[j]) ** 2 for j in range(n)) ** 0.5
        d_worst = sum(((r[j] - worst[j]) * w[j]) ** 2 for j in range(n)) ** 0.5
        scores.append(d_worst / (d_best + d_worst) if d_best + d_worst else 0.0)
    return scores


class StaticUsage(BasicUsage):
    """CPU/memory-aware placement (Proxmox's 'static' CRS mode): each node's load is the
    sum of its services' configured CPUs and memory; candidates are ranked by TOPSIS."""

    def __init__(
        self,
        online_nodes: Iterable[str],
        node_stats: Mapping[str, Mapping[str, float]],
        service_stats: Mapping[str, Mapping[str, float]],
    ) -> None:
        super().__init__(online_nodes)
        self.node_stats = node_stats
        self.service_stats = service_stats
        for n in self.nodes:
            st = node_stats.get(n, {})
            if not st.get("maxcpu") or not st.get("maxmem"):
                raise ValueError(f"no static usage information for node '{n}'")
        self.scoring_sid: str | None = None
        # each node's summed CPU and memory, kept as services are added and removed (a
        # recovery round scores many services: recomputing every node's load for each
        # one made it quadratic in the number of services)
        self.cpu: dict[str, float] = {n: 0.0 for n in self.nodes}
        self.mem: dict[str, float] = {n: 0.0 for n in self.nodes}

    def _svc(self, sid: str) -> tuple[float, float]:
        st = self.service_stats.get(sid, {})
        return float(st.get("maxcpu", 0.0)), float(st.get("maxmem", 0.0))

    def _weight(self, sid: str, node: str) -> tuple[float, float]:
        c, m = self._svc(sid)
        return (c if c else float(self.node_stats[node]["maxcpu"])), m  # 0 CPUs: the whole node

    def add_service_usage(self, sid: str, sd: Mapping[str, object]) -> None:
        cur, tgt = used_service_nodes(self.nodes, sd)
        for n in (cur, tgt):
            if n is not None and sid not in self.nodes[n]:
                self.nodes[n].add(sid)
                c, m = self._weight(sid, n)
                self.cpu[n] += c
                self.mem[n] += m

    def remove_service_usage(self, sid: str) -> None:
        for n, used in self.nodes.items():
            if sid in used:
                used.discard(sid)
                c, m = self._weight(sid, n)
                self.cpu[n] -= c
                self.mem[n] -= m

    def _load(self, node: str) -> tuple[float, float]:
        return self.cpu[node], self.mem[node]

    def scores_for(self, sid: str) -> dict[str, float]:
        names = sorted(self.nodes)
        loads = {n: self._load(n) for n in names}
        s_cpu, s_mem = self._svc(sid)
        matrix: list[tuple[float, ...]] = []
        for target in names:
            cpus, mems = [], []
            for n in names:
                cpu, mem = loads[n]
                maxcpu = float(self.node_stats[n]["maxcpu"])
                if n == target:
                    cpu += s_cpu if s_cpu else maxcpu
                    mem += s_mem
                cpus.append(cpu / maxcpu)
                mems.append(mem / float(self.node_stats[n]["maxmem"]))
            # root mean square and maximum load; +1 so that tiny differences (0.004 vs
            # 0.002) do not look like big ratios (as current proxmox-resource-scheduling)
            k = len(names)
            matrix.append((1 + (sum(c * c for c in cpus) / k) ** 0.5, 1 + max(cpus),
                           1 + (sum(m * m for m in mems) / k) ** 0.5, 1 + max(mems)))
        # lower is better for the caller, as with the service count
        return {n: -score for n, score in zip(names, topsis_scores(matrix, _TOPSIS_WEIGHTS), strict=True)}


@dataclass(frozen=True)
class CompiledRules:
    # sid -> node -> priority (non-strict rules list all cluster nodes, others at -1)
    node_affinity: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    # sid -> set of sids that must be together / apart
    positive: Mapping[str, frozenset[str]] = field(default_factory=dict)
    negative: Mapping[str, frozenset[str]] = field(default_factory=dict)


def compile_rules(rules: Mapping[str, RuleConfig], cluster_nodes: Iterable[str]) -> CompiledRules:
    """The feasible rules, canonicalized and compiled (infeasible ones left out)."""
    return compile_checked(rules, cluster_nodes)[0]


def compile_checked(
    rules: Mapping[str, RuleConfig], cluster_nodes: Iterable[str]
) -> tuple[CompiledRules, Transformed]:
    """As compile_rules, with the checker's verdict (errors per rule, the CRM's 'Drop
    rule' lines): Proxmox's `Rules->transform` then `Rules->compile`."""
    nodes = sorted(set(cluster_nodes))
    checked = rules_mod.transform(rules, nodes)
    c = rules_mod.compile_transformed(checked.rules, nodes)
    return CompiledRules(node_affinity=c.node_affinity, positive=c.positive, negative=c.negative), checked


def get_node_affinity(
    compiled: CompiledRules, sid: str, online: Iterable[str]
) -> tuple[set[str], set[str]]:
    """(allowed nodes, preferred nodes = allowed nodes of the highest priority)."""
    online_set = set(online)
    rule = compiled.node_affinity.get(sid)
    if rule is None:
        return set(online_set), set(online_set)
    allowed = {n for n in rule if n in online_set}
    if not allowed:
        return set(), set()
    top = max(rule[n] for n in allowed)
    return allowed, {n for n in allowed if rule[n] == top}


def get_resource_affinity(
    compiled: CompiledRules, sid: str, ss: Mapping[str, ServiceStatus], online: Iterable[str]
) -> tuple[dict[str, int], set[str]]:
    """(together: node -> count of positively-affine services there, separate: nodes used
    by negatively-affine services)."""
    online_set = set(online)
    together: dict[str, int] = {}
    separate: set[str] = set()
    for csid in sorted(compiled.positive.get(sid, ())):
        if csid in ss:
            # a partner on the move counts where it is going (apart-rules count both ends)
            current, target = used_service_nodes(online_set, ss[csid])
            where = target if target is not None else current
            if where is not None:
                together[where] = together.get(where, 0) + 1
    for csid in sorted(compiled.negative.get(sid, ())):
        if csid in ss:
            for n in used_service_nodes(online_set, ss[csid]):
                if n is not None:
                    separate.add(n)
    return together, separate


def select_service_node(
    compiled: CompiledRules,
    usage: BasicUsage,
    sid: str,
    cd: ServiceConfig,
    ss: Mapping[str, ServiceStatus],
    preference: NodePreference,
) -> str | None:
    """The node `sid` should be on, or None if no online node is allowed."""
    sd = ss[sid]
    current = sd["node"]
    tried = list(sd.get("failed_nodes", []))
    maintenance_fallback = sd.get("maintenance_node")
    online = sorted(usage.nodes)
    allowed, pri = get_node_affinity(compiled, sid, online)
    if not pri:
        return None
    together, separate = get_resource_affinity(compiled, sid, ss, online)

    # stay on the current node if possible (avoids needless migrations)
    if (
        preference == "none"
        and not cd.get("failback", True)
        and current in allowed
        and (together.get(current, 0) > 0 or current not in separate)
    ):
        return current

    if preference == "try-next":
        pri -= set(tried)
    pri -= separate
    # positive affinity: only the allowed node with most partners (ties: by name)
    candidates = sorted(n for n in together if n in pri)
    if candidates:
        majority = sorted(candidates, key=lambda n: -together[n])[0]
        pri = {majority}

    if maintenance_fallback is not None and maintenance_fallback in pri:
        return maintenance_fallback
    if preference == "none" and current in pri:
        return current

    scores: Mapping[str, float] = (
        usage.scores_for(sid) if isinstance(usage, StaticUsage) else usage.scores()
    )
    nodes = sorted(pri, key=lambda n: (scores.get(n, 0), n))
    if not nodes:
        return None
    if preference == "try-next" and current in nodes:
        i = nodes.index(current)
        if i < len(nodes) - 1:
            return nodes[i + 1]
    return nodes[0]


# --- what a service weighs for the 'static' scheduler -----------------------------------------

#: a service without figures weighs what Proxmox's VM defaults do (1 core, 512 MiB)
DEFAULT_SERVICE_CPUS = 1.0
DEFAULT_SERVICE_MEM = 512 * 1024 * 1024
_MEM_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_service_size(key: str, raw: object) -> float:
    """A service's `maxcpu` (CPUs, 0 = unlimited: the whole node) or `maxmem` (bytes, or
    with a K/M/G/T suffix, 1024-based) resource parameter; ValueError with one line."""
    text = str(raw).strip().lower()
    unit = 1
    if key == "maxmem" and text[-1:] in _MEM_UNITS and not text[-1:].isdigit():
        unit, text = _MEM_UNITS[text[-1]], text[:-1]
    try:
        value = float(text) * unit
    except ValueError:
        raise ValueError(f"parameter '{key}' must be a number{' (bytes, or with K/M/G/T)' if key == 'maxmem' else ''}"
                         f", got {raw!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"parameter '{key}' must be a number >= 0, got {raw!r}")
    return value


def configured_service_stats(service_config: Mapping[str, Mapping[str, object]]) -> dict[str, dict[str, float]]:
    """sid -> {maxcpu, maxmem} from each service's `maxcpu` / `maxmem` parameters (the
    figures Proxmox's static scheduler takes from the guest config); defaults for what a
    service does not say or says wrongly."""
    out: dict[str, dict[str, float]] = {}
    for sid, cd in service_config.items():
        params = cd.get("params") or {}
        figures = {"maxcpu": DEFAULT_SERVICE_CPUS, "maxmem": float(DEFAULT_SERVICE_MEM)}
        if isinstance(params, Mapping):
            for key in ("maxcpu", "maxmem"):
                if key in params:
                    try:
                        figures[key] = parse_service_size(key, params[key])
                    except ValueError:
                        pass
        out[sid] = figures
    return out
