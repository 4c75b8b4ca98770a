"""Failover benchmark on a real 3-node lab (see bench/README.md, "Failover").

    .venv/bin/python bench/failover.py [--profiles fast,default] [--sizes 1,20,100] [--reps 5]
                                       [--migrate-reps 5] [--idle-s 30] [--idle-reps 1]
                                       [--fencing watchdog,ipmi] [--out FILE]

1. Failover: N exec services on node2; node2 SIGKILLed (its whole session: power loss);
   time until every one of them has started on another node (each service appends
   "SID NODE WALLTIME" to a ledger when it starts). Median (and min/max) of --reps runs,
   next to the configured bound lease_timeout_s + loop_s + agent start time, where agent
   start time = ceil(N / max_workers) x the measured start of one exec service.
   `--fencing watchdog,ipmi` measures each size both ways, the runs interleaved (watchdog,
   ipmi, watchdog, ...) so both see the same load: `ipmi` is `harepl lab up --fence-device
   ipmi` (a real BMC per node, ipmi_sim, driven by fence_ipmilan; fencing = both). Each run
   also reports, from the master's harepl.log, the detection (kill -> node 'unknown'), the
   device time (its `confirmed off in X s` line) and the 1-minute load average.
2. Planned migrate: one service, `migrate` via the API, time until it started on the
   target (whose LRM is already active: an anchor service runs there); median of
   --migrate-reps.
3. Idle daemon: CPU (% of one core) and RSS of each node daemon over --idle-s seconds,
   no services configured; --idle-reps fresh labs, then the median and max over every
   node of every run (the Raft leader's daemon costs the most).

A bench, not a test: wall-clock durations on a shared, noisy 2-core machine. Durations
use the wall clock because the services stamp their start with `date`; nothing here
decides anything.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harepl.runtime.apiprobe import ApiUnavailable, get_json, request_json  # noqa: E402
from harepl.runtime.config import PROFILES  # noqa: E402
from harepl.runtime.lab import Lab, up  # noqa: E402

VICTIM = "node2"


def _service_cmd(ledger: Path) -> str:
    return f'echo "$HAREPL_SID $HAREPL_NODE $(date +%s.%N)" >> {ledger}; exec sleep 1000000'


def _starts(ledger: Path) -> list[tuple[str, str, float]]:
    out = []
    try:
        lines = ledger.read_text().splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            out.append((parts[0], parts[1], float(parts[2])))
    return out


def _wait(pred: Any, what: str, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout_s:g} s waiting for {what}")


def _add(lab: Lab, via: str, sid: str, node: str, ledger: Path) -> None:
    sock = lab.node(via).api_socket
    for _ in range(50):
        try:
            status, body = request_json(sock, "POST", "/resources",
                                        {"sid": sid, "node": node, "params": {"command": _service_cmd(ledger)}},
                                        timeout_s=30)
        except ApiUnavailable:
            time.sleep(0.2)
            continue
        if status in (200, 201):
            return
        if status == 503:
            time.sleep(0.2)
            continue
        raise RuntimeError(f"add {sid}: HTTP {status}: {body}")
    raise RuntimeError(f"add {sid}: API unavailable")


def _lab(profile: str, fencing: str = "watchdog") -> tuple[Lab, Path]:
    d = Path(tempfile.mkdtemp(prefix="hb-", dir="/tmp"))
    return up(d, 3, profile, timeout_s=60, fence_device="ipmi" if fencing == "ipmi" else None), d


def _log_times(lab: Lab, t_kill: float) -> dict[str, float | None]:
    """From the nodes' harepl.log (wall clock, ms): when the master saw the victim go
    'unknown', and how long its fence device took."""
    import re
    from datetime import datetime

    unknown: float | None = None
    device: float | None = None
    for node in lab.nodes:
        if node.name == VICTIM or not node.log.exists():
            continue
        for line in node.log.read_text().splitlines():
            m = re.match(r"(\S+ \S+) ", line)
            if m is None:
                continue
            try:
                t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            except ValueError:
                continue
            if t < t_kill:
                continue
            if unknown is None and f"node '{VICTIM}': state changed from 'online' => 'unknown'" in line:
                unknown = t - t_kill
            d = re.search(rf"fencing node '{VICTIM}' level \d+: confirmed off in ([0-9.]+) s", line)
            if d and device is None:
                device = float(d.group(1))
    return {"detect_s": unknown, "device_s": device}


def failover_once(profile: str, n: int, fencing: str = "watchdog") -> dict[str, Any]:
    lab, d = _lab(profile, fencing)
    try:
        ledger = d / "ledger"
        sids = [f"exec:s{i:03d}" for i in range(n)]
        for sid in sids:
            _add(lab, "node1", sid, VICTIM, ledger)
        _wait(lambda: {s for s, node, _t in _starts(ledger) if node == VICTIM} >= set(sids),
              f"{n} services on {VICTIM}", 120)
        time.sleep(1.0)  # let the CRM see every start reported
        master = get_json(lab.node("node1").api_socket, "/status").get("master_node")
        t_kill = time.time()
        lab.kill(VICTIM)

        def recovered() -> dict[str, float] | None:
            got = {s: t for s, node, t in _starts(ledger) if node != VICTIM and t > t_kill}
            return got if set(got) >= set(sids) else None

        got = _wait(recovered, f"{n} services recovered", 180)
        times = sorted(got[s] - t_kill for s in sids)
        return {"profile": profile, "n": n, "fencing": fencing, "all_s": times[-1], "first_s": times[0],
                "killed_master": master == VICTIM, "load1": os.getloadavg()[0], **_log_times(lab, t_kill)}
    finally:
        lab.down()
        shutil.rmtree(d, ignore_errors=True)


def agent_start_s(profile: str) -> float:
    """One exec service's agent start, from the daemon's own histogram (/metrics)."""
    lab, d = _lab(profile)
    try:
        ledger = d / "ledger"
        _add(lab, "node1", "exec:probe", "node1", ledger)
        _wait(lambda: _starts(ledger), "probe start", 60)
        time.sleep(0.5)
        text = _metrics(lab, "node1")
        total = count = 0.0
        for line in text.splitlines():
            if line.startswith("harepl_agent_action_duration_seconds_sum{") and 'action="start"' in line:
                total += float(line.rsplit(" ", 1)[1])
            if line.startswith("harepl_agent_action_duration_seconds_count{") and 'action="start"' in line:
                count += float(line.rsplit(" ", 1)[1])
        return total / count if count else float("nan")
    finally:
        lab.down()
        shutil.rmtree(d, ignore_errors=True)


def _metrics(lab: Lab, node: str) -> str:
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(str(lab.node(node).api_socket))

    c = Conn("localhost", timeout=10)
    c.request("GET", "/metrics")
    return c.getresponse().read().decode()


def migrate_once(profile: str) -> float:
    lab, d = _lab(profile)
    try:
        ledger = d / "ledger"
        # an anchor service keeps the target's LRM active (watchdog open), as on a node
        # that already runs services; the first service on an idle node also pays for
        # arming its watchdog (spawning the process watchdog)
        _add(lab, "node1", "exec:anchor", "node2", ledger)
        _add(lab, "node1", "exec:m", "node1", ledger)
        _wait(lambda: [x for x in _starts(ledger) if x[1] == "node1"], "start on node1", 60)
        time.sleep(1.0)
        t0 = time.time()
        status, body = request_json(lab.node("node1").api_socket, "POST", "/resources/exec:m/migrate",
                                    {"node": "node2"}, timeout_s=30)
        if status not in (200, 201, 202):
            raise RuntimeError(f"migrate: HTTP {status}: {body}")
        got = _wait(lambda: [t for s, node, t in _starts(ledger) if s == "exec:m" and node == "node2"],
                    "start on node2", 60)
        return float(got[0] - t0)
    finally:
        lab.down()
        shutil.rmtree(d, ignore_errors=True)


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def idle(profile: str, seconds: float) -> dict[str, Any]:
    lab, d = _lab(profile)
    try:
        time.sleep(5.0)  # settle
        pids = {n.name: lab.pid(n.name) for n in lab.nodes}
        hz = os.sysconf("SC_CLK_TCK")
        t0 = {n: _cpu_ticks(p) for n, p in pids.items() if p}
        w0 = time.monotonic()
        time.sleep(seconds)
        dt = time.monotonic() - w0
        cpu = {n: 100.0 * (_cpu_ticks(p) - t0[n]) / hz / dt for n, p in pids.items() if p}
        rss = {n: _rss_mb(p) for n, p in pids.items() if p}
        return {"profile": profile, "seconds": dt, "cpu_pct_of_core": cpu, "rss_mb": rss}
    finally:
        lab.down()
        shutil.rmtree(d, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profiles", default="fast,default")
    ap.add_argument("--sizes", default="1,20,100")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--migrate-reps", type=int, default=5)
    ap.add_argument("--idle-s", type=float, default=30.0)
    ap.add_argument("--idle-reps", type=int, default=1)
    ap.add_argument("--fencing", default="watchdog",
                    help="watchdog, ipmi or both as 'watchdog,ipmi' (interleaved runs)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    fencings = [f for f in args.fencing.split(",") if f]
    print(f"# {' '.join(sys.argv)}; load average at start {os.getloadavg()}", flush=True)
    report: dict[str, Any] = {"failover": [], "migrate": {}, "idle": [], "agent_start_s": {}}
    for profile in args.profiles.split(","):
        t = PROFILES[profile]
        sizes = [int(x) for x in args.sizes.split(",") if x]
        start_s = agent_start_s(profile) if sizes or args.migrate_reps else 0.0
        if sizes or args.migrate_reps:
            report["agent_start_s"][profile] = start_s
            print(f"# {profile}: one exec agent start = {start_s:.3f} s", flush=True)
        for n in sizes:
            by: dict[str, list[dict[str, Any]]] = {f: [] for f in fencings}
            for _ in range(args.reps):
                for f in fencings:  # interleaved: each mode sees the same load
                    r = failover_once(profile, n, f)
                    by[f].append(r)
                    print(f"  run {profile} n={n} {f}: {r['all_s']:.2f} s (detect {r['detect_s']}, device "
                          f"{r['device_s']}, load {r['load1']:.2f})", flush=True)
            for f, runs in by.items():
                alls = [r["all_s"] for r in runs]
                bound = t.lease_timeout_s + t.loop_s + math.ceil(n / t.max_workers) * start_s
                med = statistics.median
                dev = [r["device_s"] for r in runs if r["device_s"] is not None]
                det = [r["detect_s"] for r in runs if r["detect_s"] is not None]
                row = {"profile": profile, "fencing": f, "n": n, "median_s": med(alls), "min_s": min(alls),
                       "max_s": max(alls), "bound_s": bound, "ratio": med(alls) / bound,
                       "detect_median_s": med(det) if det else None, "device_median_s": med(dev) if dev else None,
                       "load1_median": med([r["load1"] for r in runs]), "runs": runs}
                report["failover"].append(row)
                print(f"failover {profile:8s} {f:8s} n={n:3d}: median {row['median_s']:.2f} s (min {row['min_s']:.2f}, "
                      f"max {row['max_s']:.2f}) detect {row['detect_median_s']} device {row['device_median_s']} "
                      f"bound {bound:.2f} s load1 {row['load1_median']:.2f} "
                      f"killed-master {sum(r['killed_master'] for r in runs)}/{len(runs)}", flush=True)
        if args.migrate_reps:
            ms = [migrate_once(profile) for _ in range(args.migrate_reps)]
            report["migrate"][profile] = {"median_s": statistics.median(ms), "runs": ms}
            print(f"migrate  {profile:8s}: median {statistics.median(ms):.2f} s (agent start {start_s:.3f} s) "
                  f"runs {[round(x, 2) for x in ms]}", flush=True)
        if args.idle_s:
            cpus: list[float] = []
            rsss: list[float] = []
            for _ in range(max(1, args.idle_reps)):
                r = idle(profile, args.idle_s)
                report["idle"].append(r)
                cpus += r["cpu_pct_of_core"].values()
                rsss += r["rss_mb"].values()
                print(f"idle     {profile:8s}: cpu % of a core {({k: round(v, 2) for k, v in r['cpu_pct_of_core'].items()})}"
                      f" rss MB {({k: round(v, 1) for k, v in r['rss_mb'].items()})}", flush=True)
            if args.idle_reps > 1:
                print(f"idle     {profile:8s}: {args.idle_reps} runs x {len(cpus) // args.idle_reps} daemons: cpu median "
                      f"{statistics.median(cpus):.2f} % max {max(cpus):.2f} % of a core; rss max {max(rsss):.1f} MB",
                      flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
