"""Seeded random simulation (testing ladder step 3).

For each seed a random but reproducible scenario is generated in Proxmox's folder format:
a cluster of K nodes with a few services, then a sequence of command batches mixing faults
(power, network, reboot, shutdown, restart-lrm, crm stop/start, node maintenance) with
service commands (started, stopped, disabled, migrate, relocate, stop), then quiet time
for shutdowns in flight to end, a healing batch that powers every node on, reconnects it,
restarts its CRM and ends node maintenance, and more quiet time. With `--faults all` (the
default) the batches also carry the faults of issue 8 (process stalls, late and lost
commits, leader changes, partial partitions, full disks, agents that fail, hang or die,
membership changes) and the workload HA groups or rules and a CRS mode; generation lives in
harepl/sim/faults.py, the verbs in harepl/sim/commands.py.

The scenario is run by the real simulator (the real CRM and LRM roles on a virtual clock),
which checks its invariants after every simulated step and exits 3 when one breaks: never
two nodes running one service, no recovery before the node's lease was taken, at most one
master per quorate partition, and under harepl's policy no start without a valid node
lease, no start while an earlier stop is not confirmed, no service the CRM may move still
running on a node whose lease lapsed with no watchdog armed. On top of that, this module checks independently, from the
log alone:
  - safety: no service is reported running on two nodes at once (LRM start/stop lines,
    migrations and power-offs), no service is recovered from a node whose lock the CRM
    has not taken since that node's LRM last held it, and at most one node believes it is
    CRM master inside the quorate partition;
  - liveness: after the healing batch, every service whose requested state is `started`
    ends in the CRM state `started` on an online node and is running there.

A failing seed prints its number and leaves the scenario folder as a reproducer that
`harepl sim run DIR --log FILE` replays exactly.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import shutil
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import click

from harepl.sim.faults import (  # noqa: F401 - the generator's names, as before the split
    FAULT_SETS,
    HEAL_QUIET_BATCHES,
    SETTLE_BATCHES,
    FuzzCase,
    generate,
)

# --- checks over the log ------------------------------------------------------------------

_STARTED = re.compile(r"\s(?P<node>\S+)/lrm: service status (?P<sid>\S+) started")
_STOPPED = re.compile(r"\s(?P<node>\S+)/lrm: service status (?P<sid>\S+) stopped")
_MOVED = re.compile(r"\s(?P<node>\S+)/lrm: service (?P<sid>\S+) - end (?P<how>migrate|relocate) to node '(?P<to>[^']+)'")
_POWER_OFF = re.compile(r"(?:execute power (?P<a>\S+) off|server '(?P<b>[^']+)' stopped by poweroff)")
_FENCE_ACK = re.compile(r"/crm: fencing: acknowledged - got agent lock for node '(?P<node>[^']+)'")
_HW_ENDED = re.compile(r"hardware: service (?P<sid>\S+) (?:died|stopped late) on node '(?P<node>[^']+)'")
_MEMBER = re.compile(r"(?:execute member (?P<node>\S+) (?P<how>join|leave)$|node '(?P<out>[^']+)' is not a cluster member$)")
_STALL = re.compile(r"execute stall (?P<node>\S+) \d+$")
_RECOVER = re.compile(r"/crm: recover service '(?P<sid>[^']+)' from fenced node '(?P<node>[^']+)'")


_POWER = re.compile(r"execute power (?P<node>\S+) (?P<how>on|off)$")
_NETWORK = re.compile(r"execute network (?P<node>\S+) (?P<how>on|off)$")
_MASTER_IN = re.compile(r"\s(?P<node>\S+)/crm: status change \S+ => master$")
_MASTER_OUT = re.compile(r"\s(?P<node>\S+)/crm: (?:status change master => \S+|killed by poweroff|exit \(loop end\))$")


class _Masters:
    """Who believes it is CRM master, and who is in the quorate partition, from the log.

    The simulated cluster has one partition: the nodes powered on with their network on
    (`power on` also connects a node); it is quorate with a strict majority of all nodes.
    """

    def __init__(self, nodes: list[str]) -> None:
        self.nodes = nodes
        self.members = set(nodes)  # `member NODE join|leave` changes the majority
        self.power: dict[str, bool] = {}
        self.network: dict[str, bool] = {}
        self.masters: set[str] = set()

    def see(self, line: str) -> str | None:
        if m := _POWER.search(line):
            self.power[m["node"]] = self.network[m["node"]] = m["how"] == "on"
        elif (m := _POWER_OFF.search(line)) and (dead := m["a"] or m["b"]):
            self.power[dead] = self.network[dead] = False
            self.masters.discard(dead)
        elif m := _NETWORK.search(line):
            self.network[m["node"]] = m["how"] == "on"
        elif m := _MEMBER.search(line):
            if m["how"] == "join":
                self.members.add(m["node"])
            else:
                self.members.discard(m["node"] or m["out"])
        elif m := _STALL.search(line):
            # a stalled master acts on nothing; it finds out it was deposed when it resumes
            # (the simulator's own check excludes it until its next step)
            self.masters.discard(m["node"])
        elif m := _MASTER_IN.search(line):
            self.masters.add(m["node"])
        elif m := _MASTER_OUT.search(line):
            self.masters.discard(m["node"])
        online = {n for n in self.members if self.power.get(n) and self.network.get(n)}
        if len(online) * 2 > len(self.members) and len(self.masters & online) > 1:
            return f"two masters in the quorate partition: {', '.join(sorted(self.masters & online))}"
        return None


def log_safety_violations(log: str, nodes: list[str] | None = None) -> list[str]:
    """Safety problems visible in the log alone (independent of the simulator's checker).

    With `nodes` (the cluster's node names), also: at most one master per quorate partition.
    """
    running: dict[str, set[str]] = {}
    # fence before recovery (docs/safety.md): a service may be recovered from a node only
    # if that node's lock was taken (fence acknowledged) after the service last ran there
    fenced_at: dict[str, int] = {}  # node -> line of its last fence acknowledgement
    stopped_at: dict[tuple[str, str], int] = {}  # (node, sid) -> line it last stopped running

    def stop(sid: str, node: str, number: int) -> None:
        if node in running.get(sid, set()):
            running[sid].discard(node)
            stopped_at[(node, sid)] = number

    masters = _Masters(nodes) if nodes else None
    problems: list[str] = []
    for number, line in enumerate(log.splitlines(), 1):
        if masters and (two := masters.see(line)):
            problems.append(f"line {number}: {two}: {line.strip()}")
            masters.masters.clear()  # report once
        if m := _STARTED.search(line):
            running.setdefault(m["sid"], set()).add(m["node"])
        elif m := _STOPPED.search(line):
            stop(m["sid"], m["node"], number)
        elif m := _HW_ENDED.search(line):
            stop(m["sid"], m["node"], number)
        elif m := _MOVED.search(line):
            stop(m["sid"], m["node"], number)
            # Like the simulator's resources (and Proxmox's), a moved service runs nowhere
            # until the target's LRM logs its start: the target is not added here. (A real
            # live migration runs on the target at once; see the scenarios helper's report
            # on migrations to a node whose LRM holds no lease.)
        elif m := _POWER_OFF.search(line):
            dead = m["a"] or m["b"]
            for sid in sorted(running):
                stop(sid, dead, number)
        elif m := _FENCE_ACK.search(line):
            fenced_at[m["node"]] = number
        elif m := _RECOVER.search(line):
            sid, node = m["sid"], m["node"]
            if node in running.get(sid, set()):
                problems.append(f"line {number}: {sid} recovered from {node} while it runs there: {line.strip()}")
            elif fenced_at.get(node, -1) < stopped_at.get((node, sid), 0):
                problems.append(f"line {number}: {sid} recovered from {node} without a fence since it last "
                                f"ran there: {line.strip()}")
        for sid, holders in running.items():
            if len(holders) > 1:
                problems.append(f"line {number}: {sid} running on {', '.join(sorted(holders))} at once: {line.strip()}")
                holders.clear()  # report once per overlap
    return problems


# --- known simulator defects -----------------------------------------------------------------
# Failures whose cause is known and reported to the owner of the code, recognised by their
# signature in the log so that a failing seed is still reported (as known) and any *other*
# failure stays a plain failure. An entry is deleted when its defect is fixed.

KNOWN_DEFECTS: dict[str, tuple[str, object]] = {
    # stale-node-lease, shutdown-never-powers-off, watchdog-expired-crash and
    # shutdown-never-ends were fixed (sim process start, shutdown sequence, watchdog, LRM
    # finishing pending moves) and no longer occur; stop-never-confirmed (seed 3010061) was
    # fixed by core/lrm.py's guarded_service_count
}


# Outcomes that are Proxmox's own behaviour, accepted only under the `pve` profile (its
# policy replays Proxmox; harepl's own profiles must not show them). docs/safety.md.
PVE_BEHAVIOURS: dict[str, tuple[str, object]] = {
    "lost-migration-error": (
        "a migration whose result was lost with its source LRM ends in 'error' (EWRONG_NODE), "
        "as in Proxmox's test-service-command7",
        lambda log: "migration failed: service registered on wrong node!" in log,
    ),
}


def pve_behaviour(log: str) -> str | None:
    for name, (_, matches) in PVE_BEHAVIOURS.items():
        if matches(log):  # type: ignore[operator]
            return name
    return None


def known_defect(log: str) -> str | None:
    """The name of the known defect whose signature this log carries, if any."""
    for name, (_, matches) in KNOWN_DEFECTS.items():
        if matches(log):  # type: ignore[operator]
            return name
    return None


# --- running ------------------------------------------------------------------------------

@dataclass(frozen=True)
class FuzzResult:
    seed: int
    exit_code: int
    problems: list[str]
    log: str
    profile: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.problems

    @property
    def known(self) -> str | None:
        """The known defect a liveness failure or crash is explained by (safety failures never are)."""
        explainable = ("liveness:", "simulator crashed:")
        if self.ok or self.exit_code not in (0, CRASHED) or not all(p.startswith(explainable) for p in self.problems):
            return None
        if self.profile in (None, "pve") and self.exit_code == 0 and (name := pve_behaviour(self.log)):
            return f"pve:{name}"
        return known_defect(self.log)


CRASHED = -1  # exit code we record when the simulator raised instead of exiting


def run_in_process(folder: Path, log: Path, status: Path, profile: str | None = None) -> tuple[int, str]:
    """Run `harepl sim run` in this process (no interpreter start-up per seed).

    Returns (exit code, what it printed); a simulator that raises is a failure of that seed
    (code CRASHED, the traceback as the text), not the end of the whole campaign.
    """
    from harepl.cli.main import cli  # the simulator's own command line, not a copy of it

    args = ["sim", "run", str(folder), "--log", str(log), "--status-json", str(status)]
    if profile:
        args += ["--profile", profile]
    sink = StringIO()
    try:
        with redirect_stdout(sink), redirect_stderr(sink):
            code = cli.main(args, prog_name="harepl", standalone_mode=False)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except click.ClickException as exc:
        return exc.exit_code, exc.format_message()
    except Exception:  # noqa: BLE001 - any crash of the simulator is this seed's finding
        return CRASHED, traceback.format_exc()
    return int(code or 0), sink.getvalue()


def liveness_problems(case: FuzzCase, status: dict[str, object]) -> list[str]:
    """Every service requested `started` must end started on an online node, running there.

    The requested state is the final service configuration when the status has it: a
    `stop` command queued while no CRM was master is carried out (and sets the requested
    state to stopped) when a master appears, even after a later `started` - as in Proxmox.
    """
    manager = status.get("manager_status", status)
    assert isinstance(manager, dict)
    services = manager.get("service_status", {})
    node_status = manager.get("node_status", {})
    running = _running_by_node(status)
    requested = dict(case.requested)
    config = status.get("service_config")
    if isinstance(config, dict):
        requested = {sid: str(cd.get("state")) for sid, cd in config.items() if isinstance(cd, dict)}
    problems = []
    for sid, want in sorted(requested.items()):
        if want != "started":
            continue
        sd = services.get(sid)
        if not sd:
            problems.append(f"liveness: {sid} is requested started but unknown to the CRM")
            continue
        where = sd.get("node")
        if sd.get("state") != "started" or node_status.get(where) != "online":
            problems.append(f"liveness: {sid} is requested started but ends {sd.get('state')} on {where} "
                            f"(node {node_status.get(where)})")
        elif running is not None and where not in running.get(sid, set()):
            problems.append(f"liveness: {sid} is started on {where} for the CRM but not running there")
    return problems


def _running_by_node(status: dict[str, object]) -> dict[str, set[str]] | None:
    """sid -> nodes where the simulated resource runs (the status's `running`: node -> sids)."""
    raw = status.get("running")
    if not isinstance(raw, dict):
        return None
    out: dict[str, set[str]] = {}
    for node, sids in raw.items():
        for sid in sids:
            out.setdefault(sid, set()).add(node)
    return out


def run_seed(seed: int, nodes: int = 3, steps: int = 8, profile: str | None = None,
             keep: Path | None = None, faults: str = "all") -> FuzzResult:
    """Generate, run and check one seed. With `keep`, the scenario folder stays there."""
    case = generate(seed, nodes=nodes, steps=steps, faults=faults)
    with tempfile.TemporaryDirectory(prefix="harepl-fuzz-") as tmp:
        folder = Path(tmp) / f"fuzz-seed-{seed}"
        case.write(folder)
        log, status = Path(tmp) / "sim.log", Path(tmp) / "status.json"
        code, said = run_in_process(folder, log, status, profile)
        text = log.read_text(errors="replace") if log.exists() else ""
        problems: list[str] = []
        if code == CRASHED:
            last = said.strip().splitlines()[-1] if said.strip() else "?"
            problems.append(f"simulator crashed: {last}")
            text = text or said
        elif code not in (0, 3):
            problems.append(f"simulator exit {code} (not a clean run, not an invariant report)")
        if code == 3:
            broke = [line for line in text.splitlines() if "invariant" in line.lower()]
            problems.append("simulator invariant broken: " + (broke[-1].strip() if broke else "see log"))
        problems += log_safety_violations(text, case.nodes)
        if code == 0:
            if status.exists():
                problems += liveness_problems(case, json.loads(status.read_text()))
            else:
                problems.append("simulator wrote no --status-json file")
        result = FuzzResult(seed=seed, exit_code=code, problems=problems, log=text, profile=profile)
        if keep is not None and not result.ok:
            _keep_reproducer(case, result, folder, keep)
    return result


def _keep_reproducer(case: FuzzCase, result: FuzzResult, folder: Path, keep: Path) -> Path:
    target = keep / folder.name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(folder, target)
    joining = f", {len(case.joining)} joining later" if case.joining else ""
    (target / "README").write_text(
        f"Reproducer of fuzz seed {case.seed} ({len(case.nodes)} nodes{joining}).\n\n"
        + "\n".join(result.problems) + "\n\nReplay: harepl sim run " + str(target) + " --log /tmp/seed.log"
        + (f" --profile {result.profile}" if result.profile else "")
        + f"\nor: harepl sim fuzz --seeds 1 --start {case.seed} --nodes {len(case.nodes) - len(case.joining)}"
        + f" --steps {case.steps}"
        + (f" --profile {result.profile}" if result.profile else "")
        + (f" --faults {case.faults}" if case.faults != "all" else "") + "\n")
    (target / "fuzz.log").write_text(result.log)
    return target


def _run_one(args: tuple[int, int, int, str | None, Path | None, str]) -> FuzzResult:
    seed, nodes, steps, profile, keep, faults = args
    result = run_seed(seed, nodes=nodes, steps=steps, profile=profile, keep=keep, faults=faults)
    # the full log only travels back between processes when it is needed
    return result if not result.ok else FuzzResult(result.seed, result.exit_code, [], "", result.profile)


def run_seeds(seeds: range, nodes: int, steps: int = 8, profile: str | None = None,
              keep: Path | None = None, jobs: int = 1, faults: str = "all") -> Iterator[FuzzResult]:
    """Results in seed order; with jobs > 1 the seeds run in that many processes."""
    work = [(seed, nodes, steps, profile, keep, faults) for seed in seeds]
    if jobs <= 1:
        yield from map(_run_one, work)
        return
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        yield from pool.imap(_run_one, work, chunksize=8)


@click.command("fuzz")
@click.option("--seeds", "count", type=click.IntRange(min=1), default=100, show_default=True,
              help="How many seeds to run.")
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True, help="First seed.")
@click.option("--nodes", type=click.IntRange(min=2, max=9), default=3, show_default=True, help="Cluster size.")
@click.option("--steps", type=click.IntRange(min=1, max=50), default=8, show_default=True,
              help="Random command batches per seed (before healing).")
@click.option("--profile", default=None, help="Timing profile passed to the simulator.")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=Path("fuzz-failures"),
              show_default=True, help="Where reproducer folders of failing seeds are written.")
@click.option("--jobs", type=click.IntRange(min=1, max=64), default=1, show_default=True,
              help="Processes to run seeds in (one per core is fastest).")
@click.option("--faults", type=click.Choice(FAULT_SETS), default="all", show_default=True,
              help="Fault set: 'all' (stalls, store faults, partial partitions, full disks, agent "
                   "faults, groups/rules/CRS workloads), or 'classic' (the generator before issue 8: "
                   "seeds reported then replay with it).")
def fuzz(count: int, start: int, nodes: int, steps: int, profile: str | None, keep: Path, jobs: int,
         faults: str) -> None:
    """Run random faults and commands for many seeds; report every seed that fails.

    A failing seed leaves its scenario folder under --keep as a reproducer. Exit 1 when a
    seed fails for a reason not on record; seeds whose liveness failure or crash carries
    the signature of a known simulator defect (KNOWN_DEFECTS) are listed, not counted.
    """
    failed = 0
    known: dict[str, int] = {}
    began = time.monotonic()
    for result in run_seeds(range(start, start + count), nodes, steps, profile, keep, jobs, faults):
        if result.ok:
            continue
        where = keep / f"fuzz-seed-{result.seed}"
        if result.known:
            known[result.known] = known.get(result.known, 0) + 1
            click.echo(f"seed {result.seed} known defect {result.known}; reproducer: {where}")
            continue
        failed += 1
        click.echo(f"seed {result.seed} FAILED (exit {result.exit_code}); reproducer: {where}")
        for problem in result.problems[:5]:
            click.echo(f"  {problem}")
    ok = count - failed - sum(known.values())
    took_s = time.monotonic() - began
    click.echo(f"{ok}/{count} seeds ok, {failed} failed, known {known or 'none'} "
               f"(seeds {start}..{start + count - 1}, {nodes} nodes, {steps} steps, profile {profile or 'pve'}, "
               f"faults {faults}; "
               f"{took_s:.1f} s, {count / took_s if took_s else 0:.1f} seeds/s, {jobs} jobs)")
    if failed:
        raise SystemExit(1)
