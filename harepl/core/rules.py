"""The rule checker: which rules are feasible, and the canonical form of the others.

Semantics of Proxmox's `PVE::HA::Rules` (`check_feasibility`, `transform`, `compile`)
with the checks and transforms that `Rules::NodeAffinity`, `Rules::ResourceAffinity` and
the base plugin register, in their order:

checks (all on the same enabled rules, so one rule's errors never hide another's)
  1. node-affinity: a resource is in at most one node-affinity rule;
  2. resource-affinity: at least two resources;
  3. negative: no more resources than cluster nodes;
  4. no positive group (connected positive rules) shares two or more resources with a
     negative rule;
  5. a resource-affinity rule shares no resource with a node-affinity rule of several
     priority classes;
  6. a positive group shares resources with at most one node-affinity rule;
  7. the node-affinity rules of a negative rule's resources name at least as many nodes
     as the resources they place;
transforms (on what is left)
  - connected positive rules merge into one (`_merged-A-B`);
  - a positive group inherits each member's negative affinity (`_implicit-negative-...`);
  - a positive group's resources join the node-affinity rule of any member.

Errors are per rule and per option (always `resources` today), in the messages and the
order Proxmox gives them; `drop_messages` are the CRM's "Drop rule 'ID', because ..."
log lines. Pure functions over `RuleConfig` mappings; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harepl.core.types import RuleConfig

Errors = dict[str, dict[str, list[str]]]

NODE_AFFINITY = "node-affinity"
RESOURCE_AFFINITY = "resource-affinity"


@dataclass
class _Rule:
    type: str
    resources: set[str]
    nodes: dict[str, int] = field(default_factory=dict)
    strict: bool = False
    affinity: str = ""
    disable: bool = False
    # a node-affinity 'negative' (harepl's older location form): the complement of nodes
    negative_nodes: bool = False


def _rule(raw: Mapping[str, Any]) -> _Rule:
    kind = str(raw.get("type", ""))
    nodes = raw.get("nodes") or {}
    return _Rule(
        type=kind,
        resources=set(raw.get("resources") or ()),
        nodes={str(n): int(p or 0) for n, p in dict(nodes).items()},
        strict=bool(raw.get("strict")),
        affinity=str(raw.get("affinity") or ""),
        disable=bool(raw.get("disable")),
        negative_nodes=kind == NODE_AFFINITY and raw.get("affinity") == "negative",
    )


def _of_type(rules: Mapping[str, _Rule], kind: str, affinity: str | None = None) -> dict[str, _Rule]:
    return {rid: r for rid, r in rules.items()
            if r.type == kind and not r.disable and (affinity is None or r.affinity == affinity)}


def disjoint_resource_sets(rules: Mapping[str, _Rule]) -> list[tuple[list[str], set[str]]]:
    """Proxmox's `find_disjoint_rules_resource_sets`: one pass over the rules ordered by
    their lowest resource id (then by id), each joining the first set it overlaps."""
    lowest = {rid: min(r.resources) if r.resources else "" for rid, r in rules.items()}
    out: list[tuple[list[str], set[str]]] = []
    for rid in sorted(sorted(rules), key=lambda i: lowest[i]):
        resources = rules[rid].resources
        for ids, members in out:
            if members & resources:
                ids.append(rid)
                members |= resources
                break
        else:
            out.append(([rid], set(resources)))
    return out


def _push(errors: Errors, rid: str, message: str, opt: str = "resources") -> None:
    errors.setdefault(rid, {}).setdefault(opt, []).append(message)


def _check(rules: Mapping[str, _Rule], nodes: list[str]) -> Errors:
    errors: Errors = {}
    na = _of_type(rules, NODE_AFFINITY)
    ra = _of_type(rules, RESOURCE_AFFINITY)
    pos = _of_type(rules, RESOURCE_AFFINITY, "positive")
    neg = _of_type(rules, RESOURCE_AFFINITY, "negative")

    # 1. a resource in at most one node-affinity rule
    by_sid: dict[str, list[str]] = {}
    for rid, r in na.items():
        for sid in r.resources:
            by_sid.setdefault(sid, []).append(rid)
    for rid, sid in sorted((rid, sid) for sid, ids in by_sid.items() if len(ids) > 1 for rid in ids):
        _push(errors, rid, f"resource '{sid}' is already used in another node affinity rule")

    # 2. at least two resources
    for rid in sorted(rid for rid, r in ra.items() if len(r.resources) < 2):
        _push(errors, rid, "rule is ineffective as there are less than two resources")

    # 3. a negative rule no larger than the cluster
    for rid in sorted(rid for rid, r in neg.items() if len(r.resources) > len(nodes)):
        _push(errors, rid, "rule defines more resources than available nodes")

    groups = disjoint_resource_sets(pos)

    # 4. kept together and kept apart
    conflicts: list[tuple[str, str]] = []
    for ids, members in groups:
        for nid, n in neg.items():
            if len(members & n.resources) < 2:
                continue
            conflicts.append(("negative", nid))
            conflicts.extend(("positive", rid) for rid in ids)
    for kind, rid in sorted(conflicts):
        other = "negative" if kind == "positive" else "positive"
        _push(errors, rid, f"rule shares two or more resources with a {other} resource affinity rule")

    # 5. one priority class for node-affinity rules of resources in resource-affinity rules
    conflicts = []
    for rid, r in ra.items():
        paired = [nid for nid, n in na.items() if n.resources & r.resources]
        if any(len(set(na[nid].nodes.values())) > 1 for nid in paired):
            conflicts.append(("resource-affinity", rid))
            conflicts.extend(("node-affinity", nid) for nid in paired)
    for kind, rid in sorted(conflicts):
        if kind == "node-affinity":
            _push(errors, rid, "resources are in a resource affinity rule and cannot be in"
                               " a node affinity rule with multiple priorities")
        else:
            _push(errors, rid, "resources are in node affinity rules with multiple priorities")

    # 6. one node-affinity rule per positive group
    conflicts = []
    for ids, members in groups:
        paired = [nid for nid, n in na.items() if n.resources & members]
        if len(paired) > 1:
            conflicts.extend(("positive", rid) for rid in ids)
            conflicts.extend(("node-affinity", nid) for nid in paired)
    for kind, rid in sorted(conflicts):
        if kind == "positive":
            _push(errors, rid, "resources are in multiple node affinity rules")
        else:
            _push(errors, rid, "at least one resource is in a positive resource affinity rule and there"
                               " are other resources in at least one other node affinity rule already")

    # 7. a negative rule's resources keep enough nodes to be apart
    conflicts = []
    for nid, n in neg.items():
        allowed: set[str] = set()
        located: set[str] = set()
        paired = []
        for aid, a in na.items():
            common = n.resources & a.resources
            if not common:
                continue
            located |= common
            allowed |= set(a.nodes)
            paired.append(aid)
        if len(allowed) < len(located):
            conflicts.append(("negative", nid))
            conflicts.extend(("node-affinity", aid) for aid in paired)
    for kind, rid in sorted(conflicts):
        if kind == "negative":
            _push(errors, rid, "two or more resources are restricted to less nodes than"
                               " available to the resources")
        else:
            _push(errors, rid, "at least one resource is in a negative resource affinity rule and this"
                               " rule would restrict these to less nodes than available to the resources")
    return errors


def check_feasibility(rules: Mapping[str, RuleConfig | Mapping[str, Any]], nodes: Iterable[str]) -> Errors:
    """rule id -> option -> the errors that make the rule infeasible (Proxmox's
    `check_feasibility`). `nodes`: the cluster's nodes (online or not)."""
    return _check({rid: _rule(r) for rid, r in rules.items()}, sorted(set(nodes)))


def drop_messages(errors: Errors) -> list[str]:
    """The CRM's log lines for the rules it leaves out."""
    return [f"Drop rule '{rid}', because {msg}."
            for rid in sorted(errors) for opt in sorted(errors[rid]) for msg in errors[rid][opt]]


def joined_errors(errors: Mapping[str, list[str]]) -> dict[str, str]:
    """A rule's errors as the API shows them: option -> messages joined by ', '."""
    return {opt: ", ".join(msgs) for opt, msgs in sorted(errors.items())}


@dataclass(frozen=True)
class Transformed:
    rules: dict[str, _Rule]  # the feasible rules in canonical form (merged, implied added)
    errors: Errors
    messages: list[str]


def transform(rules: Mapping[str, RuleConfig | Mapping[str, Any]], nodes: Iterable[str]) -> Transformed:
    """Proxmox's `transform`: drop every infeasible rule, then merge connected positive
    rules and add the implied negative and node-affinity memberships."""
    parsed = {rid: _rule(r) for rid, r in rules.items()}
    errors = _check(parsed, sorted(set(nodes)))
    kept = {rid: r for rid, r in parsed.items() if rid not in errors}

    # merge connected positive rules
    for ids, members in disjoint_resource_sets(_of_type(kept, RESOURCE_AFFINITY, "positive")):
        if len(ids) < 2:
            continue
        for rid in ids:
            del kept[rid]
        kept["_merged-" + "-".join(ids)] = _Rule(RESOURCE_AFFINITY, set(members), affinity="positive")

    # a positive group's members inherit each member's negative affinity
    pos = _of_type(kept, RESOURCE_AFFINITY, "positive")
    neg = _of_type(kept, RESOURCE_AFFINITY, "negative")
    added: dict[str, _Rule] = {}
    for pid, p in pos.items():
        separated_from: dict[str, set[str]] = {}
        for n in neg.values():
            for sid in p.resources & n.resources:
                for csid in n.resources - {sid}:
                    separated_from.setdefault(csid, set()).add(sid)
        for csid, sids in separated_from.items():
            for sid in p.resources - sids:
                added[f"_implicit-negative-{pid}-{sid}-{csid}"] = _Rule(
                    RESOURCE_AFFINITY, {sid, csid}, affinity="negative")
    kept.update(added)

    # a positive group follows the node-affinity rule of any of its members
    na = _of_type(kept, NODE_AFFINITY)
    for p in _of_type(kept, RESOURCE_AFFINITY, "positive").values():
        for nid in sorted(na):
            if na[nid].resources & p.resources:
                na[nid].resources |= p.resources
                break
    return Transformed(kept, errors, drop_messages(errors))


@dataclass(frozen=True)
class Compiled:
    # sid -> node -> priority (non-strict rules list all cluster nodes, others at -1)
    node_affinity: dict[str, dict[str, int]]
    positive: dict[str, frozenset[str]]
    negative: dict[str, frozenset[str]]


def compile_transformed(rules: Mapping[str, _Rule], cluster_nodes: Iterable[str]) -> Compiled:
    """Proxmox's `compile` of (transformed) rules."""
    nodes = sorted(set(cluster_nodes))
    node_aff: dict[str, dict[str, int]] = {}
    pos: dict[str, set[str]] = {}
    neg: dict[str, set[str]] = {}
    for rid in sorted(rules):
        r = rules[rid]
        if r.disable:
            continue
        if r.type == NODE_AFFINITY:
            eff = dict(r.nodes)
            if r.negative_nodes:
                eff = {n: 0 for n in nodes if n not in eff}
            if not r.strict:
                for n in nodes:
                    eff.setdefault(n, -1)
            for sid in r.resources:
                node_aff[sid] = eff
        elif r.type == RESOURCE_AFFINITY and r.affinity in ("positive", "negative"):
            target = pos if r.affinity == "positive" else neg
            for sid in r.resources:
                target.setdefault(sid, set()).update(r.resources - {sid})
    return Compiled(node_aff, {k: frozenset(v) for k, v in pos.items()},
                    {k: frozenset(v) for k, v in neg.items()})


def rule_errors_after(rules: Mapping[str, RuleConfig | Mapping[str, Any]], rule_id: str,
                      nodes: Iterable[str]) -> dict[str, str] | None:
    """The errors rule `rule_id` would have in `rules` (joined per option), or None:
    what the API refuses an add or set with."""
    errors = check_feasibility(rules, nodes).get(rule_id)
    return joined_errors(errors) if errors else None


def invalid_rule_message(rule_id: str, errors: Mapping[str, str]) -> str:
    """Proxmox's refusal, on one line: `Rule 'ID' is invalid.` and each option's errors."""
    return f"Rule '{rule_id}' is invalid. " + "; ".join(f"{opt}: {msg}" for opt, msg in sorted(errors.items()))


def purge_resource(rules: Mapping[str, Mapping[str, Any]], sid: str) -> tuple[dict[str, list[str]], list[str]]:
    """What removing `sid` with purge does to the rules (Proxmox's
    `delete_service_from_config`): (rule id -> its new resources, rule ids to delete)."""
    update: dict[str, list[str]] = {}
    delete: list[str] = []
    for rid in sorted(rules):
        resources = list(rules[rid].get("resources") or ())
        if sid not in resources:
            continue
        rest = [s for s in resources if s != sid]
        if rest:
            update[rid] = rest
        else:
            delete.append(rid)
    return update, delete
