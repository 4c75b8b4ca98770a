"""CRM round cost (issue 9): `Manager.manage()` plus the encoding of the manager status it
commits (json.dumps of the status, what the store command carries; the Raft commit itself
is bench/raft.py's), for N services on M nodes and every scheduler.

    .venv/bin/python bench/crm_round.py --services 1000,10000,20000 --nodes 16,64
    .venv/bin/python bench/crm_round.py --services 10000 --nodes 64 --schedulers static --auto

Times are this process's CPU time (time.process_time), not wall time.

steady:   every service started, every node online (median of 5 rounds after 2 warm-up);
recovery: node1 lost; the round in which its services leave 'fence' for 'recovery' and
          get a node (the largest round of the recovery, rounds timed until all placed);
auto:     with ha-auto-rebalance (bruteforce, topsis) on static/dynamic: a steady round in
          which the rebalancer searches (hold duration 1).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harepl.core.manager import Manager, ManagerView  # noqa: E402


class Ports:
    def log(self, level: str, msg: str) -> None:
        pass

    def sendmail(self, subject: str, text: str) -> None:
        pass

    def fence_lock(self, node: str) -> bool:
        return True

    def remove_locks(self, sid: str, locks: list[str], fenced_node: str) -> str | None:
        return None


def cluster(n_services: int, n_nodes: int, scheduler: str, auto: str | None) -> tuple[Any, ...]:
    nodes = [f"node{i + 1}" for i in range(n_nodes)]
    sc = {f"vm:{100 + i}": {"type": "vm", "state": "started", "node": nodes[i % n_nodes], "max_restart": 1,
                            "max_relocate": 1, "failback": True} for i in range(n_services)}
    ss = {sid: {"state": "started", "node": cd["node"], "uid": f"u{sid}"} for sid, cd in sc.items()}
    ms = {"master_node": "node2", "node_status": {n: "online" for n in nodes}, "service_status": ss}
    crs: dict[str, Any] = {"ha": scheduler}
    if auto:
        crs.update({"ha-auto-rebalance": True, "ha-auto-rebalance-method": auto,
                    "ha-auto-rebalance-hold-duration": 1, "ha-auto-rebalance-threshold": 0.0})
    node_stats = {n: {"maxcpu": 64.0, "maxmem": 512.0 * 2**30} for n in nodes}
    svc_stats = {sid: {"maxcpu": float(1 + i % 4), "maxmem": float((1 + i % 8) * 2**30)}
                 for i, sid in enumerate(sc)}
    return nodes, sc, ms, {"crs": crs}, node_stats, svc_stats


def view(now: float, nodes: list[str], sc: Any, dc: Any, ns: Any, st: Any, down: set[str]) -> ManagerView:
    return ManagerView(now=now, node_info={n: {"online": n not in down} for n in nodes},
                       lrm_status={n: {"mode": "active", "state": "active", "results": {}} for n in nodes},
                       service_config=sc, datacenter=dc, node_stats=ns, service_stats=st)


def timed(m: Manager, v: ManagerView) -> float:
    """CPU time of this process (the machine is shared: wall time would count the others)."""
    t0 = time.process_time()
    result = m.manage(v, Ports())
    json.dumps(result.manager_status)
    return time.process_time() - t0


def run(n_services: int, n_nodes: int, scheduler: str, auto: str | None) -> dict[str, Any]:
    nodes, sc, ms, dc, ns, st = cluster(n_services, n_nodes, scheduler, auto)
    m = Manager("node2", copy.deepcopy(ms), fence_delay_s=0.0)
    now = 1000.0
    steady = []
    for i in range(7):
        now += 10
        t = timed(m, view(now, nodes, sc, dc, ns, st, set()))
        if i >= 2:
            steady.append(t)
    out: dict[str, Any] = {"services": n_services, "nodes": n_nodes, "scheduler": scheduler,
                           "auto": auto or "-", "steady_ms": round(statistics.median(steady) * 1000, 1)}
    if auto:
        return out
    m = Manager("node2", copy.deepcopy(ms), fence_delay_s=0.0)
    rounds = []
    for _ in range(20):
        now += 10
        rounds.append(timed(m, view(now, nodes, sc, dc, ns, st, {"node1"})))
        lost = [sd for sd in m.ss.values() if sd["node"] == "node1" or sd["state"] in ("fence", "recovery")]
        if not lost and any(r > 0 for r in rounds):
            break
    out["recovery_ms"] = round(max(rounds) * 1000, 1)
    out["recovered"] = sum(1 for sd in m.ss.values() if sd["state"] == "started")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", default="1000,10000,20000")
    ap.add_argument("--nodes", default="16,64")
    ap.add_argument("--schedulers", default="basic,static,dynamic")
    ap.add_argument("--auto", action="store_true", help="also the auto-rebalance rounds (bruteforce, topsis)")
    args = ap.parse_args()
    print("| services | nodes | scheduler | auto-rebalance | steady round ms | recovery round ms |")
    print("|---|---|---|---|---|---|")
    for n_services in map(int, args.services.split(",")):
        for n_nodes in map(int, args.nodes.split(",")):
            for scheduler in args.schedulers.split(","):
                for auto in ([None] + (["bruteforce", "topsis"] if args.auto and scheduler != "basic" else [])):
                    r = run(n_services, n_nodes, scheduler, auto)
                    print(f"| {r['services']} | {r['nodes']} | {r['scheduler']} | {r['auto']} | {r['steady_ms']} | "
                          f"{r.get('recovery_ms', '-')} |", flush=True)


if __name__ == "__main__":
    main()
