"""Issue 8's fuzz reproducers, kept as scenario folders, and two mutation checks.

`regressions/seed-N/` holds the scenario `harepl sim fuzz` generated for seed N at
3355e09 (byte for byte what its generator wrote: the generator may change, these stay),
with `fuzz_case.json` naming the nodes, the profile the failure was found under and each
service's final requested state. On 3355e09 each one failed (`harepl sim fuzz --seeds 1
--start N --nodes K --steps T --profile P` there):

    930561 5 nodes fast   ct:105 running on more than one node (restart-lrm, network off)
    919126 3 nodes fast   vm:103 recovered by a master not holding node3's lease
    930197 5 nodes fast   vm:106 recovered from node1 before its lock was taken
    990068 5 nodes pve    ct:102 recovered by a master not holding node4's lease
    905218 3 nodes pve    lost migrate result ends in error (Proxmox does the same)
    950865 3 nodes async  the same under harepl's own async profile
    909177 3 nodes pve    simulator crash: a network-off node read the other side's writes

The mutation checks break the emergency stop and the watchdog arming of the real LRM
role and require the fuzzer to catch each within a few dozen seeds, naming the seed.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from harepl.roles.lrm import LRM
from harepl.sim.fuzz import (
    CRASHED,
    FuzzCase,
    FuzzResult,
    liveness_problems,
    log_safety_violations,
    run_in_process,
    run_seed,
)

REGRESSIONS = Path(__file__).parent / "regressions"
CASES = sorted(p.name for p in REGRESSIONS.iterdir() if p.is_dir())
SAFE_PROFILES = ("default", "fast", "async")


def _replay(folder: Path, profile: str) -> FuzzResult:
    """Run a stored fuzz scenario under `profile` with the fuzzer's own checks."""
    meta = json.loads((folder / "fuzz_case.json").read_text())
    case = FuzzCase(seed=meta["seed"], nodes=meta["nodes"], steps=meta["steps"], requested=meta["requested"],
                    service_config=json.loads((folder / "service_config").read_text()),
                    cmdlist=json.loads((folder / "cmdlist").read_text()))
    with tempfile.TemporaryDirectory(prefix="harepl-regr-") as tmp:
        log, status = Path(tmp) / "sim.log", Path(tmp) / "status.json"
        code, said = run_in_process(folder, log, status, profile)
        text = log.read_text(errors="replace") if log.exists() else said
        problems = [f"simulator crashed: {said.strip().splitlines()[-1:]}"] if code == CRASHED else []
        if code == 3:
            problems.append("simulator invariant broken: "
                            + next((ln for ln in reversed(text.splitlines()) if "invariant" in ln.lower()), "?"))
        problems += log_safety_violations(text, case.nodes)
        if code == 0:
            problems += liveness_problems(case, json.loads(status.read_text()))
        return FuzzResult(seed=case.seed, exit_code=code, problems=problems, log=text, profile=profile)


def test_every_reproducer_of_issue_8_is_kept() -> None:
    assert CASES == [f"seed-{s}" for s in sorted((905218, 909177, 919126, 930197, 930561, 950865, 990068))]


@pytest.mark.parametrize("case", CASES)
def test_reproducer_passes_under_the_profile_it_failed_in(case: str) -> None:
    folder = REGRESSIONS / case
    profile = json.loads((folder / "fuzz_case.json").read_text())["profile"]
    result = _replay(folder, profile)
    if case == "seed-905218":
        # Proxmox's own behaviour, kept under `pve` (test-service-command7): a migrate
        # whose result was lost ends in error. Reported as that, never as a pass.
        assert result.known == "pve:lost-migration-error", result.problems
        return
    assert result.ok, f"{case} under {profile}: {result.problems}"


@pytest.mark.parametrize("case", CASES)
def test_reproducer_passes_under_every_safe_profile(case: str) -> None:
    for profile in SAFE_PROFILES:
        result = _replay(REGRESSIONS / case, profile)
        assert result.ok, f"{case} under {profile}: {result.problems}"


def _first_caught(profile: str, seeds: range) -> tuple[int, list[str]] | None:
    for seed in seeds:
        result = run_seed(seed, nodes=3, profile=profile)
        if not result.ok:
            return seed, result.problems
    return None


MUTATION_SEEDS = range(0, 60)


@pytest.mark.parametrize("profile", ["fast", "default"])
def test_an_emergency_stop_that_keeps_services_running_is_caught(profile: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # broken: on lease loss the LRM disarms its watchdog but stops nothing
    monkeypatch.setattr(LRM, "_lease_lapsed", lambda self: self._give_up_watchdog())
    caught = _first_caught(profile, MUTATION_SEEDS)
    assert caught is not None, f"no seed in {MUTATION_SEEDS} caught the broken emergency stop"
    seed, problems = caught
    print(f"broken emergency stop caught by seed {seed} ({profile}): {problems[0]}")
    assert any("running" in p or "fence" in p for p in problems), problems


@pytest.mark.parametrize("profile", ["fast", "default"])
def test_a_watchdog_that_is_never_armed_is_caught(profile: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # broken: the LRM takes its lease but never opens (nor feeds) the watchdog
    monkeypatch.setattr(LRM, "_get_protected_agent_lock", lambda self: self.env.get_ha_agent_lock())
    caught = _first_caught(profile, MUTATION_SEEDS)
    assert caught is not None, f"no seed in {MUTATION_SEEDS} caught the unarmed watchdog"
    seed, problems = caught
    print(f"unarmed watchdog caught by seed {seed} ({profile}): {problems[0]}")
    assert any("running" in p or "fence" in p for p in problems), problems


def test_the_mutation_seeds_pass_unmutated() -> None:
    # the mutation tests mean something only if the same seeds pass with the real LRM
    for profile in ("fast", "default"):
        assert _first_caught(profile, MUTATION_SEEDS) is None
