"""Benchmark of the Raft-replicated store: real member processes on 127.0.0.1.

    .venv/bin/python bench/raft.py [--sizes 3,5] [--elections 5] [--no-durable]

For each cluster size: commit latency (p50/p99) of one command in flight from the
leader and from a follower, throughput with 1, 100 and 1,000 commands in flight, and
the time from SIGKILL of the leader until a survivor is a quorate leader.  Latency and
throughput are measured inside a member (its own client API, no control-socket round
trip); the election time is observed from outside by polling every 10 ms.  Durability
(fsync of journal and meta before acknowledging) is on unless --no-durable.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.localcluster import Cluster  # noqa: E402 (a test helper: real member processes)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def run_size(size: int, elections: int, durable: bool, only_elections: bool = False) -> dict[str, object]:
    out: dict[str, object] = {"nodes": size, "durable": durable}
    with tempfile.TemporaryDirectory(prefix="harepl-bench-") as root:
        c = Cluster(root, size, extra_args=[] if durable else ["--no-durable"])
        try:
            c.start_all()
            leader = c.wait_leader()
            follower = next(m for m in c.members if m is not leader)
            leader.call({"call": "bench_latency", "n": 50})  # warm-up
            for who, m in () if only_elections else (("leader", leader), ("follower", follower)):
                lat = m.call({"call": "bench_latency", "n": 1000}, timeout_s=300)
                out[f"latency_{who}_ms"] = {"p50": round(pct(lat, 50) * 1e3, 3),
                                            "p99": round(pct(lat, 99) * 1e3, 3)}
            for inflight, n in () if only_elections else ((1, 1000), (100, 10000), (1000, 20000)):
                secs = leader.call({"call": "bench_throughput", "n": n, "inflight": inflight}, timeout_s=300)
                out[f"throughput_{inflight}_inflight_cmd_s"] = round(n / secs)
            times = []
            for _ in range(elections):
                leader = c.wait_leader()
                survivors = [m for m in c.members if m is not leader]
                t0 = time.monotonic()
                c.kill(leader)
                c.wait_leader(survivors, timeout_s=60)
                times.append(time.monotonic() - t0)
                c.start(leader)
                time.sleep(1.0)  # let it rejoin before the next round
            out["election_after_leader_sigkill_s"] = {
                "median": round(statistics.median(times), 3), "max": round(max(times), 3),
                "all": [round(t, 3) for t in times]}
        finally:
            c.stop_all()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="3,5")
    ap.add_argument("--elections", type=int, default=5)
    ap.add_argument("--no-durable", action="store_true")
    ap.add_argument("--only-elections", action="store_true")
    args = ap.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        print(json.dumps(run_size(size, args.elections, not args.no_durable, args.only_elections)), flush=True)


if __name__ == "__main__":
    main()
