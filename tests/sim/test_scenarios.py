"""Our own scenarios (tests/scenarios/*): each run must match its golden log exactly.

Every folder is in Proxmox's regression format plus a README (what it proves, which seed
statement it covers), a `claims` file (the README's promise as log patterns, checked on
every run and before any rewrite) and `log.expect` (our simulator's log, read by a human
when it was written). A mismatch fails with a readable diff. Golden logs are rewritten only
by hand: `harepl sim check --rewrite tests/scenarios/NAME` (then read the new log).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from harepl.sim.golden import (
    CLAIMS_NAME,
    GOLDEN_NAME,
    KNOWN_DEFECT_NAME,
    check,
    check_claims,
    check_scenario,
    find_scenarios,
    readable_diff,
)

SCENARIOS_DIR = Path(__file__).resolve().parents[1] / "scenarios"
SCENARIOS = find_scenarios([SCENARIOS_DIR])

# Every statement of the seed (/work/shared/seed/ha-manager.adoc) and of issue 2's list,
# and the scenarios that show it. A statement with no scenario, or a scenario proving no
# statement, fails test_seed_coverage.
SEED_COVERAGE: dict[str, list[str]] = {
    "HOW IT WORKS: LRM waits for quorum and lock, then starts enabled services": ["op-enable", "op-add-at-runtime"],
    "HOW IT WORKS: one CRM holds the manager lock": ["crm-stop-handover", "master-loses-quorum"],
    "HOW IT WORKS: node leaves quorum -> unknown, lock taken, services stolen": [
        "quorum-loss-self-fence", "master-loses-quorum", "profile-default-failover", "profile-fast-failover"],
    "HOW IT WORKS: no quorum -> watchdog not reset -> reboot": ["quorum-loss-self-fence", "master-loses-quorum"],
    "GROUPS: nodes with priorities": ["group-priority-placement", "node-affinity-rule-priorities"],
    "GROUPS: restricted, no member -> stopped": ["group-restricted-member-fails", "group-restricted-member-offline"],
    "GROUPS: unrestricted is only a preference": ["group-unrestricted-fallback"],
    "GROUPS: failback (default) and nofailback": ["group-failback", "group-nofailback"],
    "RECOVERY POLICY: max_restart, default 1": ["restart-policy-default", "restart-policy-custom"],
    "RECOVERY POLICY: max_relocate, default 1, only after max_restart": [
        "relocate-after-restarts", "relocate-policy-default-error", "relocate-policy-custom"],
    "RECOVERY POLICY: relocate count resets only after a successful start": ["relocate-counter-reset"],
    "RECOVERY POLICY: re-enable without fix repeats only the restart policy": ["reenable-without-fix"],
    "ERROR RECOVERY: error is not touched; only disabled leads out": [
        "error-recovery-disable", "error-untouched-on-fence", "reenable-without-fix"],
    "OPERATIONS: enable": ["op-enable", "op-add-at-runtime"],
    "OPERATIONS: disable": ["op-disable"],
    "OPERATIONS: migrate": ["op-migrate", "op-migrate-rejected"],
    "OPERATIONS: relocate": ["op-relocate"],
    "OPERATIONS: remove": ["op-remove"],
    "OPERATIONS: stop with timeout": ["op-stop-timeout"],
    "OPERATIONS: requested states stopped and ignored": ["op-stopped-is-recovered", "op-ignored"],
    "STATES: stopped, request_stop, request_start, started": ["op-enable", "op-disable"],
    "STATES: fence, recovery": ["quorum-loss-self-fence", "op-stopped-is-recovered"],
    "STATES: freeze": ["lrm-restart-freeze", "shutdown-policy-freeze", "shutdown-policy-conditional"],
    "STATES: migrate, relocate": ["op-migrate", "op-relocate", "relocate-after-restarts"],
    "STATES: error": ["relocate-policy-default-error", "error-recovery-disable"],
    "NODES: online, unknown, fence (and back)": ["quorum-loss-self-fence", "node-rejoins-after-fence"],
    "NODES: maintenance (enable/disable)": ["node-maintenance", "shutdown-policy-migrate"],
    "NODES: gone": ["node-gone"],
    "SHUTDOWN POLICY: conditional": ["shutdown-policy-conditional", "shutdown-with-crm-stopped",
                                     "power-on-during-shutdown"],
    "SHUTDOWN POLICY: freeze": ["shutdown-policy-freeze"],
    "SHUTDOWN POLICY: failover": ["shutdown-policy-failover"],
    "SHUTDOWN POLICY: migrate": ["shutdown-policy-migrate"],
    "LRM restart -> freeze": ["lrm-restart-freeze", "lrm-restart-during-relocate"],
    "TIMING PROFILES: default and fast": ["profile-default-failover", "profile-fast-failover",
                                         "profile-default-power-loss-during-shutdown"],
    "ISSUE 9: the rule checker in the CRM, never a relocation loop": [
        "rules-contradictory-static-no-loop", "rules-check-node-affinity-twice",
        "rules-check-resource-affinity-one-resource", "rules-check-negative-more-than-nodes",
        "rules-check-together-and-apart", "rules-check-multiple-priorities",
        "rules-check-positive-two-node-affinity", "rules-check-negative-too-few-nodes"],
    "ISSUE 9: a node lost during a move is fenced first": ["node-lost-during-migrate", "node-lost-during-relocate"],
}


def _rewrite_hint(scenario: Path) -> str:
    return (f"\nIf the new log is right (read it!), accept it with: "
            f"harepl sim check --rewrite {scenario.relative_to(SCENARIOS_DIR.parents[1])}")


def test_there_are_at_least_30_scenarios_each_with_readme_claims_and_golden_log() -> None:
    for scenario in SCENARIOS:
        readme = (scenario / "README").read_text()
        assert "Seed:" in readme, f"{scenario.name}/README does not name the seed statement it covers"
        assert (scenario / CLAIMS_NAME).is_file(), f"{scenario.name} has no claims file"
        # A scenario the simulator gets wrong has no golden log (it would enshrine the
        # defect) but a KNOWN_DEFECT file naming what is wrong and whose code must change.
        has_golden, has_defect = (scenario / GOLDEN_NAME).is_file(), (scenario / KNOWN_DEFECT_NAME).is_file()
        assert has_golden != has_defect, f"{scenario.name} needs exactly one of {GOLDEN_NAME}, {KNOWN_DEFECT_NAME}"
    golden = [s for s in SCENARIOS if (s / GOLDEN_NAME).is_file()]
    assert len(golden) >= 30, f"only {len(golden)} scenarios with a golden log in {SCENARIOS_DIR}"


def test_seed_coverage() -> None:
    names = {s.name for s in SCENARIOS}
    missing = {stmt: [n for n in scen if n not in names] for stmt, scen in SEED_COVERAGE.items()}
    assert not {k: v for k, v in missing.items() if v}, f"coverage names unknown scenarios: {missing}"
    covered = {n for scen in SEED_COVERAGE.values() for n in scen}
    assert not names - covered, f"scenarios not mapped to any seed statement: {sorted(names - covered)}"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario_matches_golden_log(scenario: Path) -> None:
    verdict = check_scenario(scenario)  # never rewrites
    if verdict.known_defect:
        # Reported as xfail (never as a pass): the claims still fail for the reason on file.
        pytest.xfail(f"known simulator defect: {verdict.known_defect}\n{verdict.detail}")
    assert verdict.ok, f"{scenario.name}:\n{verdict.detail}" + _rewrite_hint(scenario)


# --- the golden runner itself -------------------------------------------------------------

def test_claims_are_ordered_and_negative_claims_forbid() -> None:
    log = "a 1 start\nb 2 middle\nc 3 end\n"
    assert check_claims(log, "start\nend\n# comment\n\n! absent") == []
    # `!~` forbids a match only between the surrounding positive claims
    assert check_claims(log, "start\n!~ end\nmiddle") == []
    assert check_claims(log, "start\n!~ middle\nend") == ["claim '!~ middle' broken by: b 2 middle"]
    assert check_claims(log, "middle\n!~ end") == ["claim '!~ end' broken by: c 3 end"]
    assert check_claims(log, "end\nstart") == ["claim 'start' not found after line 3 in the log"]
    assert check_claims(log, "! middle") == ["claim '! middle' broken by: b 2 middle"]
    assert check_claims(log, "nowhere") == ["claim 'nowhere' not found anywhere in the log"]


def test_readable_diff_is_cut_and_counts_what_it_cut() -> None:
    want = "\n".join(f"line {i}" for i in range(200))
    got = "\n".join(f"line {i}" if i % 2 else f"changed {i}" for i in range(200))
    diff = readable_diff(want, got, "x", max_lines=10)
    assert diff.splitlines()[0] == "--- x/log.expect"
    assert len(diff.splitlines()) == 11 and diff.splitlines()[-1].endswith("more diff lines")


def test_a_wrong_golden_log_fails_with_a_diff_and_is_not_rewritten(tmp_path: Path) -> None:
    scenario = tmp_path / "op-migrate"
    shutil.copytree(SCENARIOS_DIR / "op-migrate", scenario)
    golden = scenario / GOLDEN_NAME
    wrong = golden.read_text().replace("node3", "node2")
    golden.write_text(wrong)

    verdict = check_scenario(scenario)
    assert not verdict.ok and "+++ op-migrate/(simulator)" in verdict.detail
    assert golden.read_text() == wrong  # a failed check never touches the golden log

    result = CliRunner().invoke(check, [str(scenario)])
    assert result.exit_code == 1 and "FAIL" in result.output and golden.read_text() == wrong

    result = CliRunner().invoke(check, ["--rewrite", str(scenario)])
    assert result.exit_code == 0 and "REWROTE" in result.output
    assert golden.read_text() == (SCENARIOS_DIR / "op-migrate" / GOLDEN_NAME).read_text()


def test_a_log_contradicting_the_claims_is_never_made_golden(tmp_path: Path) -> None:
    scenario = tmp_path / "op-migrate"
    shutil.copytree(SCENARIOS_DIR / "op-migrate", scenario)
    (scenario / GOLDEN_NAME).unlink()
    (scenario / CLAIMS_NAME).write_text("this line is in no log\n")
    verdict = check_scenario(scenario, rewrite=True)
    assert not verdict.ok and "contradicts the scenario's claims" in verdict.detail
    assert not (scenario / GOLDEN_NAME).exists()


def test_check_without_scenarios_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(check, [str(tmp_path)])
    assert result.exit_code == 2 and "no scenario folder" in result.output
