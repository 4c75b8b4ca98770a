"""Seeded random simulation in the default suite: a few hundred seeds, all must pass.

Each seed is a random scenario of faults and service commands, followed by healing; the
real CRM and LRM roles run in the simulator, which checks its invariants after every step.
This test adds the independent log checks and the liveness check of harepl.sim.fuzz. A
failing seed is named in the failure message with its reproducer folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harepl.sim.fuzz import KNOWN_DEFECTS, generate, known_defect, log_safety_violations, run_seed

SEEDS_3_NODES = range(0, 200)
SEEDS_5_NODES = range(1000, 1060)
SEEDS_FAST = range(2000, 2080)  # harepl's own 'fast' timing profile: other interleavings
# harepl's other safe profiles (SAFE_PROFILES), so that CI runs > 500 seeds in all
SEEDS_DEFAULT = range(3000, 3100)
SEEDS_ASYNC = range(4000, 4100)
SEEDS_5_NODES_FAST = range(5000, 5040)


@pytest.mark.parametrize("faults", ["classic", "all"])
def test_generation_is_deterministic_and_heals_everything(faults: str) -> None:
    a, b = generate(42, nodes=4, faults=faults), generate(42, nodes=4, faults=faults)
    assert a == b
    assert generate(43, nodes=4, faults=faults) != a
    at = 1 + a.steps + 3  # the power-on batch, the random batches, the settle batches
    heal = a.cmdlist[at]
    assert a.cmdlist[at - 3:at] == [["delay 0"]] * 3  # in-flight shutdowns end first
    assert a.cmdlist[-6:] == [["delay 0"]] * 6  # then time to converge
    for node in a.nodes:
        assert f"power {node} on" in heal and f"network {node} on" in heal
    if faults == "all":  # every new fault is undone too
        pairs = {" ".join(c.split()[1:3]) for batch in a.cmdlist[:at] for c in batch if c.startswith("link ")}
        assert all(f"link {pair} on" in heal for pair in pairs)


def test_log_checker_sees_a_service_running_twice_and_an_early_recovery() -> None:
    log = "\n".join([
        "info 10 node1/lrm: service status vm:101 started",
        "info 20 node2/lrm: service status vm:101 started",
        "info 30 node1/crm: recover service 'vm:102' from fenced node 'node3' to node 'node1'",
    ])
    problems = log_safety_violations(log)
    assert len(problems) == 2
    assert "vm:101 running on node1, node2 at once" in problems[0]
    assert "vm:102 recovered from node3 without a fence since it last ran there" in problems[1]


def test_log_checker_sees_two_masters_in_the_quorate_partition_only() -> None:
    nodes = ["node1", "node2", "node3"]
    boot = [f"info 1 cmdlist: execute power {n} on" for n in nodes]
    two = boot + ["info 2 node1/crm: status change wait_for_quorum => master",
                  "info 3 node2/crm: status change slave => master"]
    assert "two masters in the quorate partition: node1, node2" in log_safety_violations("\n".join(two), nodes)[0]
    # a deposed master cut off from the others is not in the quorate partition
    cut = boot + ["info 2 node1/crm: status change wait_for_quorum => master",
                  "info 3 cmdlist: execute network node1 off",
                  "info 4 node2/crm: status change slave => master"]
    assert log_safety_violations("\n".join(cut), nodes) == []


def test_log_checker_accepts_poweroff_then_recovery() -> None:
    log = "\n".join([
        "info 10 node1/lrm: service status vm:101 started",
        "info 20 hardware: server 'node1' stopped by poweroff (watchdog)",
        "info 30 node2/crm: fencing: acknowledged - got agent lock for node 'node1'",
        "info 30 node2/crm: recover service 'vm:101' from fenced node 'node1' to node 'node2'",
        "info 31 node2/lrm: service status vm:101 started",
        "info 40 node2/lrm: service vm:101 - end migrate to node 'node3'",
        "info 41 node3/lrm: service status vm:101 started",
    ])
    assert log_safety_violations(log) == []


def test_no_failure_is_excused_as_a_known_defect() -> None:
    # every fuzz defect on record is fixed ('stop-never-confirmed' by core/lrm.py's
    # guarded_service_count): a shutdown that never ends, or a stop never confirmed, is a
    # plain failure again
    hung = "info 1 node4/lrm: got shutdown request with shutdown policy 'conditional'"
    stuck = "\n".join(["err 1 node1/crm: service 'vm:101': stop not confirmed - it stays in 'error'",
                       "info 2 node1/crm: service 'vm:101': stop confirmed by node 'node1'",
                       "err 3 node1/crm: service 'vm:101': stop not confirmed - it stays in 'error'"])
    assert KNOWN_DEFECTS == {}
    assert known_defect(hung) is None
    assert known_defect(stuck) is None


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("seeds", "nodes", "profile"),
                         [(SEEDS_3_NODES, 3, None), (SEEDS_5_NODES, 5, None), (SEEDS_FAST, 3, "fast"),
                          (SEEDS_DEFAULT, 3, "default"), (SEEDS_ASYNC, 3, "async"), (SEEDS_5_NODES_FAST, 5, "fast")],
                         ids=["3-nodes", "5-nodes", "3-nodes-fast", "3-nodes-default", "3-nodes-async",
                              "5-nodes-fast"])
def test_random_faults_never_break_safety_and_always_heal(seeds: range, nodes: int, profile: str | None,
                                                          tmp_path: Path) -> None:
    failures: list[str] = []
    known: dict[str, list[int]] = {}
    for seed in seeds:
        result = run_seed(seed, nodes=nodes, profile=profile, keep=tmp_path)
        if result.ok:
            continue
        if result.known:  # a liveness failure with the signature of a reported defect
            known.setdefault(result.known, []).append(seed)
            continue
        failures.append(f"seed {seed} (reproducer {tmp_path / f'fuzz-seed-{seed}'}): "
                        + "; ".join(result.problems[:3]))
    assert not failures, f"{len(failures)}/{len(seeds)} seeds failed:\n" + "\n".join(failures[:10])
    if known:
        # Reported, never counted as a pass: these seeds fail for a defect on record.
        pytest.xfail("; ".join(f"{len(s)} seeds hit known defect {name} ({KNOWN_DEFECTS[name][0]}): "
                               f"seeds {s[:8]}" for name, s in known.items()))
