"""Golden-log checks for scenario folders (Proxmox's regression format, our own logs).

A scenario folder holds the simulator's inputs (`cmdlist`, `hardware_status`,
`service_config`, `manager_status`, optional `groups`, `rules_config`, `datacenter.cfg`,
and our optional `profile`: one line naming the timing profile) and `log.expect`, the log
our simulator wrote for it once and a human checked by reading it.

`check_scenario` runs the simulator on a scratch copy of the folder (the simulator never
writes into the scenario folder) and compares its log with `log.expect` byte for byte. A
golden log is written only when the caller asks for it (`rewrite=True`, i.e.
`harepl sim check --rewrite`), never as a side effect of a failed comparison.

The simulator is run through its command line, `harepl sim run DIR --log FILE`, in a
child process: that is the contract shared with the conformance tool, and a fresh process
per scenario means no state can leak from one scenario into the next.
"""

from __future__ import annotations

import difflib
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import click

GOLDEN_NAME = "log.expect"
PROFILE_NAME = "profile"
CLAIMS_NAME = "claims"
# A scenario whose claims the simulator does not (yet) keep: the file says what is wrong and
# whose code must change. Such a scenario has no golden log (a golden log of wrong
# behaviour would be a defect); it is reported as a known defect until the claims hold.
KNOWN_DEFECT_NAME = "KNOWN_DEFECT"
# Files that are never inputs: the golden log itself, our notes, and anything a run may
# leave behind.
_NOT_INPUTS = (GOLDEN_NAME, CLAIMS_NAME, KNOWN_DEFECT_NAME, "status", "log", "*.log", "README")
# A hang is a failure, not something to wait for forever (virtual time: runs are short).
DEFAULT_TIMEOUT_S = 120.0
MAX_DIFF_LINES = 60


@dataclass(frozen=True)
class SimRun:
    """One simulator run: its exit code, the log it wrote and what it said on stderr."""

    exit_code: int
    log: str | None
    stderr: str


@dataclass(frozen=True)
class Verdict:
    scenario: Path
    ok: bool
    detail: str  # empty when ok; otherwise what went wrong (diff, exit code, no log)
    rewritten: bool = False
    known_defect: str = ""  # the KNOWN_DEFECT text when this failure is a known one


def is_scenario(path: Path) -> bool:
    return path.is_dir() and (path / "cmdlist").is_file()


def find_scenarios(paths: Iterable[Path]) -> list[Path]:
    """The scenario folders named, or directly inside a named folder, sorted by path."""
    found: set[Path] = set()
    for path in paths:
        if is_scenario(path):
            found.add(path)
        elif path.is_dir():
            found.update(child for child in path.iterdir() if is_scenario(child))
    return sorted(found)


def read_profile(scenario: Path) -> str | None:
    """The timing profile a scenario asks for in its `profile` file, if any."""
    profile_file = scenario / PROFILE_NAME
    if not profile_file.is_file():
        return None
    name = profile_file.read_text().strip()
    return name or None


def sim_command(scenario: Path, log: Path, profile: str | None, extra: Sequence[str] = ()) -> list[str]:
    """The child-process command that runs our simulator on one folder."""
    cmd = [
        sys.executable, "-c", "from harepl.cli.main import cli; cli()",
        "sim", "run", str(scenario), "--log", str(log),
    ]
    if profile:
        cmd += ["--profile", profile]
    return cmd + list(extra)


def run_simulator(
    scenario: Path, profile: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
    extra: Sequence[str] = (),
) -> SimRun:
    """Run the simulator on a scratch copy of `scenario`; the folder itself is untouched."""
    if profile is None:
        profile = read_profile(scenario)
    with tempfile.TemporaryDirectory(prefix="harepl-golden-") as tmp:
        work = Path(tmp) / scenario.name
        shutil.copytree(scenario, work, ignore=shutil.ignore_patterns(*_NOT_INPUTS))
        log = Path(tmp) / "sim.log"
        try:
            proc = subprocess.run(
                sim_command(work, log, profile, extra),
                # cwd: `python -c` puts the working directory first on sys.path; the child
                # must import the installed harepl, not whatever tree the caller stands in.
                cwd=tmp, capture_output=True, text=True, timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            return SimRun(exit_code=-1, log=None, stderr=f"timed out after {timeout_s:.0f} s")
        text = log.read_text(errors="replace") if log.exists() else None
        return SimRun(exit_code=proc.returncode, log=text, stderr=(proc.stderr or proc.stdout).strip())


def check_claims(log: str, claims: str) -> list[str]:
    """What in `log` contradicts the machine-checkable claims of a scenario (empty: none).

    The `claims` file is the README's promise in a form a program can check, so that a
    rewritten golden log cannot silently stop showing what the scenario is about:
    one regular expression per line, searched in the log lines in the order given (each
    must match a line after the one the previous claim matched); a line starting with
    `! ` must match no line at all; a line starting with `!~ ` must match no line between
    the previous positive claim's line and the next positive claim's line (or the end).
    Blank lines and `#` comments are ignored.
    """
    lines = log.splitlines()
    problems: list[str] = []
    pos = 0
    window: list[re.Pattern[str]] = []  # `!~` claims waiting for the end of their window

    def close_window(end: int) -> None:
        for pattern in window:
            hits = [line for line in lines[pos:end] if pattern.search(line)]
            if hits:
                problems.append(f"claim '!~ {pattern.pattern}' broken by: {hits[0].strip()}")
        window.clear()

    for raw in claims.splitlines():
        claim = raw.strip()
        if not claim or claim.startswith("#"):
            continue
        if claim.startswith("!~ "):
            window.append(re.compile(claim[3:].strip()))
            continue
        if claim.startswith("! "):
            pattern = re.compile(claim[2:].strip())
            hits = [line for line in lines if pattern.search(line)]
            if hits:
                problems.append(f"claim {claim!r} broken by: {hits[0].strip()}")
            continue
        pattern = re.compile(claim)
        for index in range(pos, len(lines)):
            if pattern.search(lines[index]):
                close_window(index)
                pos = index + 1
                break
        else:
            where = f"after line {pos}" if pos else "anywhere"
            problems.append(f"claim {claim!r} not found {where} in the log")
    close_window(len(lines))
    return problems


def readable_diff(want: str, got: str, name: str, max_lines: int = MAX_DIFF_LINES) -> str:
    """A unified diff (expected -> got), cut to `max_lines` with a count of what was cut."""
    lines = list(difflib.unified_diff(
        want.splitlines(), got.splitlines(),
        fromfile=f"{name}/{GOLDEN_NAME}", tofile=f"{name}/(simulator)", lineterm="", n=2,
    ))
    if len(lines) > max_lines:
        cut = len(lines) - max_lines
        lines = lines[:max_lines] + [f"... {cut} more diff lines"]
    return "\n".join(lines)


def check_scenario(scenario: Path, rewrite: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S) -> Verdict:
    """Compare the simulator's log for `scenario` with its golden log.

    With `rewrite`, a run that exits 0 and keeps the scenario's claims replaces
    `log.expect` when it differs (the caller then reads the new log); a run that broke an
    invariant, failed or contradicts the claims never becomes golden.
    """
    run = run_simulator(scenario, timeout_s=timeout_s)
    name = scenario.name
    defect_file = scenario / KNOWN_DEFECT_NAME
    if (run.log is None or run.exit_code != 0) and defect_file.is_file():
        return Verdict(scenario, False, f"simulator exit {run.exit_code}: {_tail(run.stderr)}",
                       known_defect=defect_file.read_text().strip())
    if run.log is None:
        return Verdict(scenario, False, f"simulator exit {run.exit_code}, no log written: {_tail(run.stderr)}")
    if run.exit_code != 0:
        why = "an invariant broke" if run.exit_code == 3 else "the simulator failed"
        return Verdict(scenario, False, f"simulator exit {run.exit_code} ({why}): {_tail(run.stderr)}\n"
                       + _tail(run.log, 15))
    claims_file = scenario / CLAIMS_NAME
    problems = check_claims(run.log, claims_file.read_text()) if claims_file.is_file() else []
    if defect_file.is_file():
        if problems:
            return Verdict(scenario, False, "the log contradicts the scenario's claims:\n  " + "\n  ".join(problems),
                           known_defect=defect_file.read_text().strip())
        return Verdict(scenario, False, f"the claims now hold: if the defect is fixed, delete {defect_file}, "
                       "write the golden log with --rewrite and read it")
    if problems:
        # Never golden: the log does not show what the scenario's README says it proves.
        return Verdict(scenario, False, "the log contradicts the scenario's claims:\n  " + "\n  ".join(problems))
    golden = scenario / GOLDEN_NAME
    if not golden.is_file():
        if rewrite:
            golden.write_text(run.log)
            return Verdict(scenario, True, "", rewritten=True)
        return Verdict(scenario, False, f"no {GOLDEN_NAME}; create it with `harepl sim check --rewrite {scenario}` "
                       "and read it")
    want = golden.read_text(errors="replace")
    if want == run.log:
        return Verdict(scenario, True, "")
    if rewrite:
        golden.write_text(run.log)
        return Verdict(scenario, True, readable_diff(want, run.log, name), rewritten=True)
    return Verdict(scenario, False, readable_diff(want, run.log, name))


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) if lines <= 3 else "\n".join(
        text.strip().splitlines()[-lines:])


@click.command("check")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--rewrite", is_flag=True, help="Replace log.expect with the simulator's log (read it after!).")
@click.option("--timeout", "timeout_s", type=float, default=DEFAULT_TIMEOUT_S, show_default=True,
              help="Seconds (wall clock) one simulator run may take before it counts as hung.")
def check(paths: tuple[Path, ...], rewrite: bool, timeout_s: float) -> None:
    """Run scenario folders and compare each log with its golden log.expect.

    PATHS are scenario folders or folders holding them (e.g. tests/scenarios). Exit 1 when
    any scenario differs or its run fails (a scenario with a KNOWN_DEFECT file whose claims
    still fail is reported, not counted), 2 when no scenario is found.
    """
    scenarios = find_scenarios(paths)
    if not scenarios:
        raise click.UsageError("no scenario folder (a folder with a cmdlist) in " + ", ".join(map(str, paths)))
    failed = known = 0
    for scenario in scenarios:
        verdict = check_scenario(scenario, rewrite=rewrite, timeout_s=timeout_s)
        if verdict.known_defect:
            known += 1
            click.echo(f"KNOWN   {scenario}: {verdict.known_defect.splitlines()[0]}\n{verdict.detail}")
        elif verdict.rewritten:
            click.echo(f"REWROTE {scenario}")
            if verdict.detail:
                click.echo(verdict.detail)
        elif verdict.ok:
            click.echo(f"ok      {scenario}")
        else:
            failed += 1
            click.echo(f"FAIL    {scenario}\n{verdict.detail}")
    ok = len(scenarios) - failed - known
    click.echo(f"{ok}/{len(scenarios)} scenarios match their golden log"
               + (f"; {known} known simulator defects (see their KNOWN_DEFECT)" if known else ""))
    if failed:
        sys.exit(1)
