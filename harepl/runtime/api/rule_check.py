"""The rule checker where rules enter and where they are shown (issue 9), as Proxmox's
API2/HA/Rules.pm: the errors of each rule in `rules list` / `rules config`, and the
refusal of an add or set that would leave the rule infeasible.

The rules checked are the configured ones plus the node-affinity rules the HA groups in
use stand for (Proxmox's migrate_groups_to_rules), over the nodes of the manager status
and the configured members, as Proxmox's API does (it takes the manager status's only).
"""

from __future__ import annotations

from typing import Any

from harepl.core import config as cfgmod
from harepl.core import rules as R
from harepl.core.placement import compile_rules
from harepl.runtime.api.backend import ClusterState
from harepl.runtime.api.errors import bad_request


def checked_nodes(state: ClusterState) -> list[str]:
    """The nodes of the manager status (Proxmox's) and the configured members (so that a
    cluster whose CRM has not written a status yet is not a cluster of no nodes)."""
    node_status = state.manager_status.get("node_status") or {}
    return sorted(set(node_status) | set(state.nodes))


def _with_groups(state: ClusterState, rules: dict[str, dict[str, Any]]) -> dict[str, Any]:
    full: dict[str, Any] = dict(rules)
    full.update(cfgmod.groups_to_rules(state.groups, state.resources))  # type: ignore[arg-type]
    return full


def rule_errors(state: ClusterState, rules: dict[str, dict[str, Any]] | None = None) -> R.Errors:
    """rule id -> option -> errors, for `rules` (default: the configured ones)."""
    return R.check_feasibility(_with_groups(state, state.rules if rules is None else rules),
                               checked_nodes(state))


def with_errors(state: ClusterState, rule_id: str, view: dict[str, Any], errors: R.Errors) -> dict[str, Any]:
    """A rule as the API shows it: with `errors` (option -> messages joined) if it has any."""
    if rule_id in errors:
        return {**view, "errors": R.joined_errors(errors[rule_id])}
    return view


def assert_feasible(state: ClusterState, rule_id: str, rule: dict[str, Any]) -> None:
    """Refuse (400) a new or changed rule that would be infeasible: Proxmox's
    `Rule 'ID' is invalid.` with each option's errors, on one line, naming the rules it
    conflicts with (those whose errors it changes)."""
    after = {**state.rules, rule_id: rule}
    errors = rule_errors(state, after)
    if rule_id not in errors:
        return
    before = rule_errors(state, {k: v for k, v in state.rules.items() if k != rule_id})
    others = sorted(rid for rid in errors if rid != rule_id and errors[rid] != before.get(rid))
    message = R.invalid_rule_message(rule_id, R.joined_errors(errors[rule_id]))
    if others:
        message += " (conflicts with " + ", ".join(f"'{rid}'" for rid in others) + ")"
    raise bad_request(message)


# ---------------------------------------------------------------- moves that answer

def assert_ha_managed(state: ClusterState, sid: str) -> None:
    """Proxmox's service_is_ha_managed: an 'ignored' resource (or any, while the cluster
    is disarmed in mode 'ignore') behaves as if HA did not manage it."""
    config = state.resources.get(sid) or {}
    disarm = state.manager_status.get("disarm") or {}
    if not config or config.get("state") == "ignored" or disarm.get("mode") == "ignore":
        raise bad_request(f"resource '{sid}' is not HA managed")


def motion_info(state: ClusterState, sid: str, node: str) -> dict[str, Any]:
    """What migrate/relocate answers (Proxmox's get_resource_motion_info): the resources
    in positive affinity that move along, and those in negative affinity that are on (or
    bound for) the requested node and make the CRM refuse the move."""
    result: dict[str, Any] = {"sid": sid, "requested-node": node}
    config = state.resources.get(sid) or {}
    disarm = state.manager_status.get("disarm") or {}
    if not config or config.get("state") == "ignored" or disarm.get("mode") == "ignore":
        return result
    ss = state.manager_status.get("service_status") or {}
    ns = state.manager_status.get("node_status") or {}
    compiled = compile_rules(_with_groups(state, state.rules), checked_nodes(state))
    together = sorted(c for c in compiled.positive.get(sid, ()) if c in ss and ss[c].get("state") != "ignored")
    if together:
        result["comigrated-resources"] = together
    if ns.get(node) == "online":
        blocking = []
        for csid in sorted(compiled.negative.get(sid, ())):
            sd = ss.get(csid)
            if sd is None or sd.get("state") == "ignored":
                continue
            if sd.get("node") and sd["node"] != node:
                continue
            if sd.get("target") and sd["target"] != node:
                continue
            blocking.append({"sid": csid, "cause": "resource-affinity"})
        if blocking:
            result["blocking-resources"] = blocking
    return result
