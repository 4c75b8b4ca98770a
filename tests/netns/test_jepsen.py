"""A short Jepsen-style run against real daemons in network namespaces (ladder step 6).

A workload of `ha-manager` commands (add, set --state/--comment, migrate, relocate) runs
against random nodes while a nemesis injects faults on random nodes, one node at a time
(two with HAREPL_JEPSEN_OVERLAP=1), each healed before the next:

- `kill`: SIGKILL of the whole node, services included (power loss);
- `pause`: SIGSTOP of its daemon (a stall; its services and process watchdog keep running);
- `partition`: the node's bridge port down (every packet to and from it dropped);
- `cut`: a partial partition between it and one other node (blackhole routes);
- `restart`: SIGTERM of its daemon -- a clean stop, i.e. an LRM restart that freezes its
  services and leaves them running -- then, at the heal, the daemon started again;
- `restart-stall`: the same restart at once, then a SIGSTOP of the new daemon 0.5-4 s
  after it started (issue 8 item 1: a restarted LRM that stalls before it re-arms);
- `loss`: 5-40 % of the packets on its link dropped both ways by **nftables**
  (`numgen random mod 100 < P drop`, in the node's namespace; this kernel has no netem);
- `delay`: 20-500 ms (plus up to half that in jitter) each way on every Raft connection
  of the node, by a **userspace TCP relay** (relay.py) in the namespace of the node that
  opens the connection, with an nftables DNAT rule sending it through the relay (no
  NFQUEUE: this kernel has no nft queue support);
- `garbage`: an outsider namespace on the bridge (no member) sends the node's Raft port
  random bytes, a 60 MiB length-prefixed frame, a 2 GiB and a negative length, over and
  over for the hold (garbage.py);
- `disk-full`: the node's data_dir (a 32 MiB tmpfs of its own, mounted by the fixture)
  filled up for the hold, then the filler deleted.

The fault kinds are dealt from a seeded shuffled deck, so every kind comes up in a run
of ten faults; each injection, its parameters and what its heal saw (packets dropped,
the Raft port's answers, daemon RSS, SIGTERM-to-exit time) go in the history, printed
at the end.  Then everything heals and the checkers run over the recorded history:

- the witness ledger shows no violation (never two instances at once, flock across
  namespaces);
- every service whose requested state is `started` runs exactly once, every `disabled` one
  nowhere, and the CRM agrees;
- no acknowledged change is lost: every `add` that returned 0 is in the final config read
  from each node, and each service's final `comment`/`state` come from its last
  acknowledged `set` or from a later or indeterminate one (a command that timed out may
  still commit; one refused with exit 2 must not).

The seed fixes every choice (printed; rerun with HAREPL_JEPSEN_SEED=N), not the timing.
The default run is 45 s of nemesis (HAREPL_JEPSEN_RUN_S for longer runs);
HAREPL_JEPSEN_REPORT=FILE appends one JSON line per run (seed, faults, ops, violations);
HAREPL_JEPSEN_LOGS=DIR keeps every node's logs, the ledger and the history in DIR/seed-N.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harepl.runtime.apiprobe import ApiUnavailable
from tests.cluster.labtools import BIN, _alive, wait_for
from tests.netns.netlab import RAFT_PORT, stop_process
from tests.support.witness_check import violations

pytestmark = [pytest.mark.netns, pytest.mark.timeout(420), pytest.mark.data_tmpfs("32m")]

NODES = ("node1", "node2", "node3")
RUN_S = float(os.environ.get("HAREPL_JEPSEN_RUN_S", "45"))
CONVERGE_S = 180.0
OVERLAP = os.environ.get("HAREPL_JEPSEN_OVERLAP") == "1"
RESTART_EXIT_S = 30.0  # a SIGTERMed daemon waits at most one lease timeout (7 s, fast) for its LRM
REPORT = os.environ.get("HAREPL_JEPSEN_REPORT")  # append one JSON line per run (seed, faults, counts)
LOGS = os.environ.get("HAREPL_JEPSEN_LOGS")  # copy logs, ledger and history to LOGS/seed-N/


@dataclass
class Op:
    """One client operation: rc 0 = acknowledged, 2 = refused (definite), else (1, None
    for a client timeout) indeterminate."""
    t: float
    via: str
    args: tuple[str, ...]
    rc: int | None = None
    out: str = ""
    err: str = ""


@dataclass
class History:
    t0: float = field(default_factory=time.monotonic)
    ops: list[Op] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)  # every injection, detail and heal, timed
    injected: list[str] = field(default_factory=list)  # "fault node", in order
    anomalies: list[str] = field(default_factory=list)  # odd but not a checker's business
    active: list[Active] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, op: Op) -> None:
        with self.lock:
            self.ops.append(op)

    def fault(self, what: str, hold_s: float | None = None) -> None:
        if hold_s is not None:
            self.injected.append(what)
        self.faults.append(f"{time.monotonic() - self.t0:6.1f} {what}" +
                           (f" for {hold_s:.1f}s" if hold_s is not None else ""))


def ha(c: Any, via: str, *args: str, timeout_s: float = 20.0) -> Op:
    op = Op(time.monotonic(), via, args)
    env = dict(os.environ, HAREPL_API=str(c.lab.node(via).api_socket))
    try:
        p = subprocess.run([str(BIN / "ha-manager"), *args], env=env, capture_output=True, text=True,
                           timeout=timeout_s)
        op.rc, op.out, op.err = p.returncode, p.stdout, p.stderr.strip()
    except subprocess.TimeoutExpired:
        op.rc, op.out = None, "client timeout"
    return op


def workload(c: Any, rng: random.Random, hist: History, sids: list[str], stop: threading.Event) -> None:
    seq = 0
    while not stop.is_set():
        via = rng.choice(NODES)
        kind = rng.choice(["set", "set", "migrate", "relocate", "add"])
        seq += 1
        if kind == "add":
            if len(sids) >= 6:
                continue
            sid = f"exec:j{len(sids) + 1}"
            sids.append(sid)  # whether or not it is acknowledged: it may exist at the end
            op = ha(c, via, "add", sid, "--node", rng.choice(NODES), "--comment", f"s{seq}",
                    "--command", c.witness_command(sid))
        elif kind == "set":
            sid = rng.choice(sids)
            state = rng.choice(["started", "started", "disabled"])
            op = ha(c, via, "set", sid, "--state", state, "--comment", f"s{seq}")
        else:
            op = ha(c, via, kind, rng.choice(sids), rng.choice(NODES))
        hist.add(op)
        stop.wait(rng.uniform(0.3, 1.2))


FAULTS = ("kill", "pause", "partition", "cut", "restart", "restart-stall", "loss", "delay", "garbage",
          "disk-full")
FILLER = "jepsen-filler"


@dataclass
class Active:
    """A fault in force: what it is, on which node, and how to end it (`heal` returns
    what was seen, for the history)."""
    fault: str
    node: str
    heal: Callable[[], str]


def nemesis(c: Any, rng: random.Random, hist: History, until: float) -> None:
    deck: list[str] = []  # every fault once per shuffled deck: a short run still sees many kinds
    while time.monotonic() < until:
        # usually one fault; with HAREPL_JEPSEN_OVERLAP=1, sometimes two at once on
        # different nodes (no quorum anywhere until one heals)
        n_faults = 2 if OVERLAP and rng.random() < 0.4 else 1
        victims = rng.sample(NODES, n_faults)
        hold_s = rng.uniform(2.0, 8.0)
        for node in victims:
            if not deck:
                deck = rng.sample(FAULTS, len(FAULTS))
            fault = deck.pop()
            hist.fault(f"{fault} {node}", hold_s)
            hist.active.append(inject(c, rng, hist, fault, node, hold_s))
        time.sleep(hold_s)
        heal_all(c, hist)
        time.sleep(rng.uniform(2.0, 6.0))


def heal_all(c: Any, hist: History) -> None:
    while hist.active:
        a = hist.active.pop(0)
        pid = c.lab.pid(a.node)
        try:
            seen = a.heal()
        finally:
            up = c.lab.running_daemon(a.node)
            heal(c, a.node)
        if not up and a.fault not in ("kill", "restart"):
            # its watchdog fired (the whole session gone), or it died
            seen += f"{'; ' if seen else ''}daemon {pid} was gone at the heal: started again"
        hist.fault(f"heal {a.fault} {a.node}" + (f": {seen}" if seen else ""))


def inject(c: Any, rng: random.Random, hist: History, fault: str, node: str, hold_s: float) -> Active:
    """Apply one fault to `node`; returns it with its own heal (the generic one -- bridge
    port up, SIGCONT, boot a dead node -- runs after it in any case)."""
    lab, topo = c.lab, c.topo

    def nothing() -> str:
        return ""

    if fault == "kill":  # power loss: the whole node, services included
        lab.kill(node)
    elif fault == "pause":  # a stall: the daemon stops, its services and watchdog do not
        if lab.running_daemon(node):
            lab.pause(node)
    elif fault == "partition":
        topo.partition(node)
    elif fault == "cut":
        other = rng.choice([n for n in NODES if n != node])
        hist.fault(f"  cut {node} <-> {other}")
        topo.cut(node, other)
        return Active(fault, node, lambda: topo.uncut(node, other) or "")
    elif fault in ("restart", "restart-stall"):
        # a clean daemon stop (SIGTERM): an LRM restart, services frozen and left running;
        # the node is started again at the heal ("restart"), or at once and then stalled
        # (SIGSTOP) a moment after it came up ("restart-stall", issue 8 item 1)
        if not sigterm(c, node):
            hist.fault(f"  {fault} {node}: daemon not running")
            return Active(fault, node, nothing)
        hist.fault(f"  {node}: {wait_exit(c, node, hist)}")
        if fault == "restart":
            return Active(fault, node, nothing)  # down for the hold; the heal starts it
        lab.start(node)
        stall_after = rng.uniform(0.5, 4.0)
        time.sleep(stall_after)
        if lab.running_daemon(node):
            lab.pause(node)
        hist.fault(f"  {node} started again, stalled {stall_after:.1f}s after")
    elif fault == "loss":
        pct = rng.randint(5, 40)
        topo.loss(node, pct)
        hist.fault(f"  loss {pct}% on {node}'s link, both ways (nftables numgen)")
        return Active(fault, node, lambda: f"{topo.unloss(node)} packets dropped")
    elif fault == "delay":
        delay_ms = rng.uniform(20, 500)
        jitter_ms = delay_ms * rng.uniform(0, 0.5)
        links = topo.delay(node, delay_ms, jitter_ms)
        hist.fault(f"  delay {delay_ms:.0f}+{jitter_ms:.0f} ms each way on "
                   f"{', '.join(f'{a}->{b}' for a, b in links) or 'no new link'} (relay)")
        return Active(fault, node, lambda: topo.undelay(links) or "")
    elif fault == "garbage":
        ns = topo.add_outsider()
        rss0 = rss_kib(c, node)
        proc = topo.spawn(ns, sys.executable, str(Path(__file__).parent / "garbage.py"), "--host",
                          topo.address(node), "--port", str(RAFT_PORT), "--for", f"{hold_s:.1f}",
                          "--big-mib", "60", "--seed", str(rng.randrange(2**31)))
        return Active(fault, node, lambda: garbage_seen(c, node, proc, hold_s, rss0))
    elif fault == "disk-full":
        filler = lab.node(node).dir / "data" / FILLER
        hist.fault(f"  {node}: data_dir full ({fill(filler)} bytes of filler)")
        log0 = disk_full_lines(c, node)

        def free() -> str:
            filler.unlink(missing_ok=True)
            return f"space freed; {disk_full_lines(c, node) - log0} disk-full line(s) in its harepl.log"
        return Active(fault, node, free)
    else:
        raise AssertionError(f"unknown fault {fault}")
    return Active(fault, node, nothing)


def sigterm(c: Any, node: str) -> bool:
    if not c.lab.running_daemon(node):
        return False
    pid = c.lab.pid(node)
    os.kill(pid, signal.SIGCONT)
    os.kill(pid, signal.SIGTERM)
    return True


def wait_exit(c: Any, node: str, hist: History) -> str:
    """After a SIGTERM: wait for the daemon to finish its stop (it waits up to one lease
    timeout for its LRM).  One that does not is recorded and powered off."""
    pid = c.lab.pid(node)
    t0 = time.monotonic()
    while pid is not None and _alive(pid) and time.monotonic() - t0 < RESTART_EXIT_S:
        time.sleep(0.1)
    if pid is not None and _alive(pid):
        hist.anomalies.append(f"{node}: daemon {pid} still running {RESTART_EXIT_S:g}s after SIGTERM")
        c.lab.kill(node)
        return f"daemon did not exit within {RESTART_EXIT_S:g}s of SIGTERM: killed"
    return f"daemon exited {time.monotonic() - t0:.1f}s after SIGTERM"


def rss_kib(c: Any, node: str) -> int | None:
    pid = c.lab.pid(node)
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration, TypeError):
        return None


def garbage_seen(c: Any, node: str, proc: subprocess.Popen[str], hold_s: float, rss0: int | None) -> str:
    try:
        out, _ = proc.communicate(timeout=hold_s + 90)
    except subprocess.TimeoutExpired:
        stop_process(proc)
        return "garbage sender hung: stopped"
    answers: dict[str, set[str]] = {}
    summary: dict[str, Any] = {}
    for line in out.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if "summary" in rec:
            summary = rec
        else:
            answers.setdefault(rec["kind"], set()).add(str(rec.get("answer")))
    rss1 = rss_kib(c, node)
    return (f"sent {summary.get('summary')} ({summary.get('bytes', 0) >> 20} MiB); answers "
            f"{ {k: sorted(v) for k, v in answers.items()} }; daemon RSS {rss0} -> {rss1} KiB")


def disk_full_lines(c: Any, node: str) -> int:
    try:
        text = (c.lab.node(node).dir / "harepl.log").read_text(errors="replace")
    except OSError:
        return 0
    return text.count("disk full")


def fill(filler: Path) -> int:
    """Write `filler` until the file system is full (ENOSPC at every chunk size)."""
    n = 0
    with open(filler, "ab", buffering=0) as f:
        for chunk in (1 << 20, 1 << 16, 4096, 512, 1):
            try:
                while True:
                    n += f.write(b"\0" * chunk)
            except OSError:
                pass
    return n


def heal(c: Any, node: str) -> None:
    c.topo.heal(node)
    if c.lab.running_daemon(node):
        c.lab.resume(node)
    else:  # killed, stopped, or its watchdog fired (whole session gone): boot it again
        c.lab.start(node)


def final_configs(c: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """The resource config as each node's replica shows it, once all three agree."""
    def agree() -> dict[str, dict[str, dict[str, Any]]] | None:
        views = {}
        for n in NODES:
            op = ha(c, n, "config", "--output-format", "json")
            if op.rc != 0:
                return None
            views[n] = {r["sid"]: r for r in json.loads(op.out)}
        first = views["node1"]
        return views if all(v == first for v in views.values()) else None
    return wait_for(agree, "every node's config to agree", timeout_s=CONVERGE_S, every_s=1.0)  # type: ignore[no-any-return]


def check_acknowledged(hist: History, config: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    writes: dict[str, list[Op]] = {}
    for op in hist.ops:
        if op.args[0] in ("add", "set"):
            writes.setdefault(op.args[1], []).append(op)
    for sid, ops in writes.items():
        acked = [o for o in ops if o.rc == 0]
        if any(o.args[0] == "add" for o in acked) and sid not in config:
            problems.append(f"{sid}: acknowledged add lost")
            continue
        if sid not in config:
            continue
        final = config[sid].get("comment")
        winner = next((o for o in ops if "--comment s" in " ".join(o.args) and
                       o.args[o.args.index("--comment") + 1] == final), None)
        if winner is None:
            problems.append(f"{sid}: final comment {final!r} was never written")
            continue
        if winner.rc == 2:
            problems.append(f"{sid}: final comment {final!r} comes from a command refused with exit 2: {winner}")
        last_acked = acked[-1] if acked else None
        # the winner must be the last acknowledged write, or one that may have taken effect
        # after it: a later write, or an indeterminate one (rc 1 / client timeout)
        if last_acked is not None and winner is not last_acked and winner.rc == 0 and winner.t < last_acked.t:
            problems.append(f"{sid}: acknowledged {' '.join(last_acked.args)} lost; final comment "
                            f"{final!r} from the earlier {' '.join(winner.args)}")
        if "--state" in winner.args:
            want = winner.args[winner.args.index("--state") + 1]
            if config[sid].get("state", "started") != want:
                problems.append(f"{sid}: final state {config[sid].get('state')!r}, but the command that "
                                f"set its comment asked for {want!r}")
    return problems


def live_instances(c: Any, sid: str) -> list[dict[str, Any]]:
    ended = {e["pid"] for e in c.events(sid) if e["event"] == "stop"}
    return [e for e in c.events(sid) if e["event"] == "start" and e["pid"] not in ended and _alive(e["pid"])]


def test_jepsen_workload_with_every_fault_nemesis(netcluster: Any) -> None:
    c = netcluster
    seed = int(os.environ.get("HAREPL_JEPSEN_SEED") or random.SystemRandom().randrange(2**32))
    print(f"jepsen seed {seed} (rerun: HAREPL_JEPSEN_SEED={seed})")
    hist = History()
    sids = [f"exec:j{i}" for i in range(1, 4)]
    for i, sid in enumerate(sids):
        op = ha(c, "node1", "add", sid, "--node", NODES[i], "--comment", "s0",
                "--command", c.witness_command(sid))
        assert op.rc == 0, op
        hist.add(op)
    for sid in sids:
        c.wait_running(sid)

    stop = threading.Event()
    worker = threading.Thread(target=workload, args=(c, random.Random(seed), hist, sids, stop), daemon=True)
    worker.start()
    result: dict[str, Any] = {"seed": seed, "outcome": "error in the run"}
    try:
        try:
            nemesis(c, random.Random(seed + 1), hist, time.monotonic() + RUN_S)
        finally:
            stop.set()
            worker.join(timeout=60)
            heal_all(c, hist)
            for i, a in enumerate(NODES):
                for b in NODES[i + 1:]:
                    c.topo.uncut(a, b)
            for n in NODES:
                c.topo.unloss(n)
                (c.lab.node(n).dir / "data" / FILLER).unlink(missing_ok=True)
                heal(c, n)
            c.topo.undelay(list(c.topo.relays))
            print("nemesis:", *hist.faults, sep="\n  ")
            print("ops:", len(hist.ops), "acknowledged:", sum(o.rc == 0 for o in hist.ops),
                  "refused:", sum(o.rc == 2 for o in hist.ops),
                  "indeterminate:", sum(o.rc not in (0, 2) for o in hist.ops))
            for o in hist.ops:
                if o.rc != 0:
                    print(f"  rc={o.rc} via {o.via}: {' '.join(o.args[:3])}: {o.err[-160:]}")
            if hist.anomalies:
                print("anomalies:", *hist.anomalies, sep="\n  ")
        check_run(c, seed, hist, result)
    finally:
        result.update(faults=hist.injected, ops=len(hist.ops), acknowledged=sum(o.rc == 0 for o in hist.ops),
                      violations=len(violations(c.ledger)), anomalies=hist.anomalies, lab=str(c.lab.dir))
        if REPORT:
            with open(REPORT, "a") as f:
                f.write(json.dumps(result) + "\n")
        if LOGS:
            save_logs(c, Path(LOGS) / f"seed-{seed}", hist)


def save_logs(c: Any, dest: Path, hist: History) -> None:
    """Each node's harepl.log and daemon.out, the witness ledger and the history."""
    dest.mkdir(parents=True, exist_ok=True)
    for n in NODES:
        for name in ("harepl.log", "daemon.out"):
            src = c.lab.node(n).dir / name
            if src.exists():
                shutil.copy(src, dest / f"{n}.{name}")
    if c.ledger.exists():
        shutil.copy(c.ledger, dest / "ledger.jsonl")
    (dest / "history.txt").write_text("\n".join(
        ["nemesis:", *hist.faults, "ops:"] +
        [f"{o.t - hist.t0:6.1f} rc={o.rc} via {o.via}: {' '.join(o.args)}: {o.err[-200:]}" for o in hist.ops]) + "\n")


def check_run(c: Any, seed: int, hist: History, result: dict[str, Any]) -> None:
    """The checkers, over the healed cluster and the recorded history."""

    c.lab.wait_quorate(timeout_s=CONVERGE_S)

    def all_online() -> bool:
        try:
            ns = c.manager_status("node1")["manager_status"].get("node_status", {})
        except ApiUnavailable:
            return False
        return all(ns.get(n) == "online" for n in NODES)
    try:
        wait_for(all_online, "every node online in the CRM", timeout_s=CONVERGE_S)
    except AssertionError:
        bad = violations(c.ledger)
        assert not bad, f"seed {seed}: witness violations: {bad}"  # safety is reported first
        raise

    configs = final_configs(c)
    config = configs["node1"]
    problems = check_acknowledged(hist, config)

    # every enabled service runs exactly once, every disabled one nowhere (the CRM agrees)
    stuck: dict[str, str] = {}  # enabled services the CRM put in 'error' (they stay there)

    def settled() -> bool:
        try:
            ms = c.manager_status("node1")["manager_status"].get("service_status", {})
        except ApiUnavailable:
            return False
        done = True
        for sid, rec in config.items():
            live = live_instances(c, sid)
            sd = ms.get(sid, {})
            if rec.get("state", "started") == "started":
                if sd.get("state") == "error" and not live:
                    stuck[sid] = str(sd.get("node"))
                elif len(live) != 1 or sd.get("state") != "started" or sd.get("node") != live[0]["node"]:
                    done = False
            elif live or sd.get("state") != "stopped":
                done = False
        return done
    try:
        wait_for(settled, "every service settled (enabled: once; disabled: nowhere)", timeout_s=CONVERGE_S)
    except AssertionError:
        problems.append("not settled: " + json.dumps(
            {sid: [(e["node"], e["pid"]) for e in live_instances(c, sid)] for sid in config}))
    bad = violations(c.ledger)
    print(f"seed {seed}: {len(bad)} witness violations, {len(problems)} other problems, "
          f"enabled services stuck in 'error': {stuck or 'none'}")
    result.update(outcome="checked", problems=problems, stuck=stuck)
    assert not bad, f"seed {seed}: witness violations: {bad}"
    assert not problems, f"seed {seed}: " + "; ".join(problems)
    if stuck:
        raise AssertionError(f"seed {seed}: enabled services stuck in 'error': {stuck}")
