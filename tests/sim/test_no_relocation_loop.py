"""No relocation loop (issue 9), as a property: random rule sets of every kind (feasible,
contradictory, infeasible, disabled, with priorities), every CRS scheduler, rebalance on
start and auto-rebalance on or off, every node up and no fault or command after start:
each service changes node a bounded number of times and the cluster is quiet at the end.

Bounds: a service may be moved by its start placement, once more by each rule whose
partner settles after it, and by the auto-rebalancer; we allow 3 moves per service and
none in the last third of the run.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harepl.sim.runner import PROFILES, Simulation, load_scenario

MOVE = re.compile(r"^\S+\s+(\d+)\s.*service '([^']+)': state changed from 'started' to '(?:migrate|relocate)'")
MAX_MOVES_PER_SERVICE = 3


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, str]:
    n_nodes = draw(st.integers(2, 4))
    nodes = [f"node{i + 1}" for i in range(n_nodes)]
    sids = [f"vm:{101 + i}" for i in range(draw(st.integers(2, 5)))]
    hw = {n: {"power": "off", "network": "off", "maxcpu": draw(st.sampled_from([4, 8, 16])),
              "maxmem": draw(st.sampled_from([16, 32, 64])) * 10**9} for n in nodes}
    sc = {s: {"node": draw(st.sampled_from(nodes)), "state": "started"} for s in sids}
    stats = {s: {"maxcpu": draw(st.sampled_from([1, 2, 4, 8])),
                 "maxmem": draw(st.sampled_from([2, 4, 8, 16])) * 10**9} for s in sids}
    crs: dict[str, object] = {"ha": draw(st.sampled_from(["basic", "static", "dynamic"])),
                              "ha-rebalance-on-start": draw(st.sampled_from([0, 1]))}
    if draw(st.booleans()):
        crs["ha-auto-rebalance"] = 1
        crs["ha-auto-rebalance-method"] = draw(st.sampled_from(["bruteforce", "topsis"]))
    rules = []
    for i in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            members = draw(st.lists(st.sampled_from(sids), min_size=1, max_size=3, unique=True))
            on = draw(st.lists(st.sampled_from(nodes), min_size=1, max_size=n_nodes, unique=True))
            prio = draw(st.booleans())
            text = ",".join(f"{n}:{draw(st.integers(1, 3))}" if prio else n for n in on)
            body = f"node-affinity: na{i}\n\tresources {','.join(members)}\n\tnodes {text}\n" \
                   f"\tstrict {int(draw(st.booleans()))}\n"
        else:
            members = draw(st.lists(st.sampled_from(sids), min_size=1, max_size=len(sids), unique=True))
            body = f"resource-affinity: ra{i}\n\tresources {','.join(members)}\n" \
                   f"\taffinity {draw(st.sampled_from(['positive', 'negative']))}\n"
        if draw(st.integers(0, 5)) == 0:
            body += "\tdisable 1\n"
        rules.append(body)
    cmdlist = [[f"power {n} on" for n in nodes]] + [[] for _ in range(15)]
    dynamic = {s: {"cpu": stats[s]["maxcpu"] / 2, "mem": stats[s]["maxmem"] / 2} for s in sids}
    return {"hardware_status": json.dumps(hw), "service_config": json.dumps(sc), "manager_status": "{}",
            "static_service_stats": json.dumps(stats), "dynamic_service_stats": json.dumps(dynamic),
            "datacenter.cfg": json.dumps({"crs": crs}), "rules_config": "\n".join(rules),
            "cmdlist": json.dumps(cmdlist)}


def run(files: dict[str, str]) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="noloop-") as tmp:
        folder = Path(tmp)
        for name, text in files.items():
            (folder / name).write_text(text)
        lines: list[str] = []
        Simulation(load_scenario(folder), PROFILES["pve"], lines.append).run()
        return lines


def moves(lines: list[str]) -> list[tuple[float, str]]:
    return [(float(m[1]), m[2]) for m in map(MOVE.match, lines) if m]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_no_service_moves_back_and_forth_without_a_cause(files: dict[str, str]) -> None:
    lines = run(files)
    end = float(lines[-1].split()[1])
    seen = moves(lines)
    per: dict[str, int] = {}
    for _, sid in seen:
        per[sid] = per.get(sid, 0) + 1
    assert all(n <= MAX_MOVES_PER_SERVICE for n in per.values()), (per, files)
    assert not [t for t, _ in seen if t > end * 2 / 3], (seen, files)


def test_the_property_catches_a_loop() -> None:
    """The check itself fails on a history that moves a service back and forth."""
    looping = [f"info   {20 * i}   node1/crm: service 'vm:101': state changed from 'started' to 'migrate'  "
               f"(node = node{1 + i % 2}, target = node{2 - i % 2})" for i in range(1, 8)]
    per = {sid for _, sid in moves(looping)}
    assert per == {"vm:101"} and len(moves(looping)) == 7 > MAX_MOVES_PER_SERVICE
