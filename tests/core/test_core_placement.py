"""Table-driven tests of node selection (Proxmox's select_service_node semantics)."""

from __future__ import annotations

import pytest

from harepl.core.config import groups_to_rules, parse_groups, parse_rules
from harepl.core.placement import BasicUsage, compile_rules, get_node_affinity, select_service_node
from harepl.core.types import ServiceConfig, ServiceStatus

NODES = ["node1", "node2", "node3"]


def usage_with(online: list[str], ss: dict[str, ServiceStatus]) -> BasicUsage:
    u = BasicUsage(online)
    for sid in sorted(ss):
        u.add_service_usage(sid, ss[sid])  # type: ignore[arg-type]
    return u


def cd(node: str, failback: bool = True) -> ServiceConfig:
    return {"type": "vm", "state": "started", "node": node, "failback": failback,
            "max_restart": 1, "max_relocate": 1}


@pytest.mark.parametrize(
    "name, rules_text, online, sd, failback, pref, want",
    [
        # no rules: stay where you are if that node is online
        ("stay", "", NODES, {"node": "node2"}, True, "none", "node2"),
        # current node offline: least loaded, then by name
        ("offline-current", "", ["node1", "node2"], {"node": "node3"}, True, "none", "node1"),
        # strict rule restricts to its nodes; highest priority wins
        ("strict-priority",
         "node-affinity: r\n\tnodes node2:2,node3:1\n\tresources vm:100\n\tstrict 1\n",
         NODES, {"node": "node1"}, True, "none", "node2"),
        # strict rule, preferred node offline: next priority
        ("strict-fallback",
         "node-affinity: r\n\tnodes node2:2,node3:1\n\tresources vm:100\n\tstrict 1\n",
         ["node1", "node3"], {"node": "node2"}, True, "none", "node3"),
        # strict rule, no member online: nowhere (the service will be stopped)
        ("strict-none",
         "node-affinity: r\n\tnodes node3\n\tresources vm:100\n\tstrict 1\n",
         ["node1", "node2"], {"node": "node3"}, True, "best-score", None),
        # non-strict rule, no member online: any other node
        ("nonstrict-any",
         "node-affinity: r\n\tnodes node3\n\tresources vm:100\n",
         ["node1", "node2"], {"node": "node3"}, True, "best-score", "node1"),
        # failback: a higher-priority node coming back pulls the service back
        ("failback",
         "node-affinity: r\n\tnodes node1:2,node2:1\n\tresources vm:100\n",
         NODES, {"node": "node2"}, True, "none", "node1"),
        # nofailback (failback=False): stay on an allowed current node
        ("nofailback",
         "node-affinity: r\n\tnodes node1:2,node2:1\n\tresources vm:100\n",
         NODES, {"node": "node2"}, False, "none", "node2"),
        # try-next skips nodes where the start failed already
        ("try-next", "", NODES, {"node": "node1", "failed_nodes": ["node1"]}, True, "try-next", "node2"),
        ("try-next-all-failed", "", NODES,
         {"node": "node1", "failed_nodes": ["node1", "node2", "node3"]}, True, "try-next", None),
        # maintenance fallback: go back to the node that left maintenance
        ("maintenance-fallback", "", NODES, {"node": "node2", "maintenance_node": "node3"}, True, "none", "node3"),
    ],
)
def test_select_service_node(name, rules_text, online, sd, failback, pref, want) -> None:  # type: ignore[no-untyped-def]
    compiled = compile_rules(parse_rules(rules_text), NODES)
    ss: dict[str, ServiceStatus] = {"vm:100": {"state": "started", "uid": "u", **sd}}
    got = select_service_node(compiled, usage_with(online, ss), "vm:100", cd(sd["node"], failback), ss, pref)
    assert got == want, name


def test_least_loaded_node_wins_and_name_breaks_ties() -> None:
    ss: dict[str, ServiceStatus] = {
        "vm:1": {"state": "started", "node": "node1", "uid": "a"},
        "vm:2": {"state": "started", "node": "node1", "uid": "b"},
        "vm:3": {"state": "started", "node": "node2", "uid": "c"},
        "vm:9": {"state": "recovery", "node": "node4", "uid": "d"},
    }
    compiled = compile_rules({}, NODES + ["node4"])
    assert select_service_node(compiled, usage_with(NODES, ss), "vm:9", cd("node4"), ss, "best-score") == "node3"


def test_migrating_service_counts_on_its_target() -> None:
    u = usage_with(NODES, {"vm:1": {"state": "migrate", "node": "node1", "target": "node2", "uid": "x"}})
    assert u.scores() == {"node1": 1, "node2": 1, "node3": 0}
    u = usage_with(NODES, {"vm:1": {"state": "stopped", "node": "node1", "uid": "x"}})
    assert u.scores() == {"node1": 0, "node2": 0, "node3": 0}


def test_groups_become_node_affinity_rules() -> None:
    groups = parse_groups("group: g\n\tnodes node2:2,node3\n\trestricted 1\n\tnofailback 1\n")
    assert groups["g"] == {"nodes": {"node2": 2, "node3": 0}, "restricted": True, "nofailback": True}
    rules = groups_to_rules(groups, {"vm:1": {**cd("node1"), "group": "g"}})  # type: ignore[typeddict-item]
    compiled = compile_rules(rules, NODES)
    allowed, preferred = get_node_affinity(compiled, "vm:1", NODES)
    assert allowed == {"node2", "node3"} and preferred == {"node2"}


def test_negative_resource_affinity_keeps_services_apart() -> None:
    rules = parse_rules("resource-affinity: apart\n\tresources vm:1,vm:2\n\taffinity negative\n")
    compiled = compile_rules(rules, NODES)
    ss: dict[str, ServiceStatus] = {
        "vm:1": {"state": "started", "node": "node1", "uid": "a"},
        "vm:2": {"state": "recovery", "node": "node3", "uid": "b"},
    }
    # node1 has vm:1, so vm:2 must go to node2 even though node1 sorts first
    got = select_service_node(compiled, usage_with(["node1", "node2"], ss), "vm:2", cd("node3"), ss, "best-score")
    assert got == "node2"
