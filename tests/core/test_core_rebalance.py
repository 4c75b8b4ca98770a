"""Auto-rebalance decisions (pure): imbalance measure and the best single migration."""

from __future__ import annotations

import pytest

from harepl.core import rebalance
from harepl.core.config import parse_rules
from harepl.core.placement import compile_rules
from harepl.core.types import ServiceStatus

NODES = ["node1", "node2", "node3"]
STATS = {n: {"maxcpu": 24.0, "maxmem": 32.0} for n in NODES}
SVC = {f"vm:10{i}": {"maxcpu": 2.0, "maxmem": 8.0} for i in range(1, 5)}


def started(placement: dict[str, str]) -> dict[str, ServiceStatus]:
    return {sid: {"state": "started", "node": node, "uid": sid} for sid, node in placement.items()}


@pytest.mark.parametrize(
    "placement, want",
    [
        ({"vm:101": "node1", "vm:102": "node1", "vm:103": "node1", "vm:104": "node1"}, 1.41),
        ({"vm:101": "node2", "vm:102": "node1", "vm:103": "node1", "vm:104": "node1"}, 0.94),
        ({"vm:101": "node2", "vm:102": "node3", "vm:103": "node1", "vm:104": "node1"}, 0.35),
        ({}, 0.0),
    ],
)
def test_imbalance_is_the_coefficient_of_variation_of_node_load(placement: dict[str, str], want: float) -> None:
    got = rebalance.imbalance(rebalance.node_loads(placement, NODES, STATS, SVC))
    assert round(got, 2) == want


def test_best_migration_moves_one_service_to_the_emptiest_node_first_by_name() -> None:
    ss = started({"vm:101": "node1", "vm:102": "node1", "vm:103": "node1", "vm:104": "node1"})
    move = rebalance.best_migration(ss, NODES, compile_rules({}, NODES), STATS, SVC)
    assert move is not None and (move.sids, move.target) == (("vm:101",), "node2")
    assert (round(move.before, 2), round(move.after, 2)) == (1.41, 0.94)


def test_no_migration_without_enough_improvement() -> None:
    # one service alone: moving it just moves the imbalance
    ss = started({"vm:101": "node1"})
    assert rebalance.best_migration(ss, NODES, compile_rules({}, NODES), STATS, SVC) is None


def test_rules_constrain_the_candidates() -> None:
    ss = started({"vm:101": "node1", "vm:102": "node1", "vm:103": "node1", "vm:104": "node2"})
    rules = parse_rules(
        "node-affinity: pin\n\tnodes node1\n\tresources vm:101,vm:102\n\tstrict 1\n\n"
        "resource-affinity: apart\n\tresources vm:103,vm:104\n\taffinity negative\n"
    )
    move = rebalance.best_migration(ss, NODES, compile_rules(rules, NODES), STATS, SVC)
    # vm:101/102 are pinned, vm:103 must not join vm:104 on node2: node3 it is
    assert move is not None and (move.sids, move.target) == (("vm:103",), "node3")


def test_positive_affinity_moves_as_a_bundle() -> None:
    ss = started({"vm:101": "node1", "vm:102": "node1", "vm:103": "node1"})
    rules = parse_rules("resource-affinity: together\n\tresources vm:101,vm:102\n\taffinity positive\n")
    move = rebalance.best_migration(ss, NODES, compile_rules(rules, NODES), STATS, SVC)
    assert move is not None and move.sids == ("vm:101", "vm:102")
