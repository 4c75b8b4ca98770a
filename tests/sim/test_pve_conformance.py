"""Conformance with Proxmox's own HA regression scenarios (issue 2's evidence).

Runs `../shared/tools/pve-conformance` (the coordinator's tool, not ours) over the
scenario families issue 2 covers and holds the simulator to the issue's targets: every
in-scope scenario at least L1 (same final decisions), at least 90% at L2 (same sequence of
decisions). The full table is printed (run with `-s` or look at the captured output of a
failure), including every scenario below L2 and why, so nothing is hidden.

Proxmox's scenarios are AGPL reference material outside the repository; a clean clone
(CI) does not have them, and then this test is skipped with that reason. It is reported,
not counted: a skip here is never a pass.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# The families of issue 2 (see `issues show 2`, "Evidence required").
IN_SCOPE = re.compile(
    r"^test-("
    r"basic\d+|recovery\d+|resource-failure\d+|service-command\d+|service-stopped\d+|"
    r"service-ignore\d+|erroneous-service\d+|stop-command\d+|shutdown\d+|shutdown-policy\d+|"
    r"reboot\d+|restart-lrm\d+|crm-maintenance-request\d+|stale-maintenance-node|relocate-.+|"
    r"locked-service\d+|manual-migrate-ignored\d+|crm-going-idle\d+|lrm-going-idle\d+|"
    r"crm-exiting-idle\d+|cfs-unavailable\d+|node-affinity-.+"
    r")$"
)
L2_SHARE_TARGET = 0.90


def shared_dir() -> Path | None:
    """`../shared` from the repository root (the main checkout), or from a worktree's parent."""
    if env := os.environ.get("HAREPL_SHARED"):
        return Path(env)
    for candidate in (REPO.parent / "shared", REPO.parent.parent / "shared"):
        if (candidate / "pve-tests").is_dir() and (candidate / "tools" / "pve-conformance").is_file():
            return candidate
    return None


def in_scope_scenarios(pve_tests: Path) -> list[Path]:
    return sorted(d for d in pve_tests.iterdir() if d.is_dir() and IN_SCOPE.match(d.name))


def test_in_scope_filter_matches_the_issue_families() -> None:
    names = ["test-basic1", "test-relocate-to-inactive-node", "test-node-affinity-strict5",
             "test-stale-maintenance-node", "test-shutdown-policy3", "test-crm-going-idle2"]
    assert all(IN_SCOPE.match(n) for n in names)
    out = ["test-crs-static2", "test-disarm-fence1", "test-group-migrate1",
           "test-resource-affinity-strict-positive1", "test-crs-dynamic1"]
    assert not any(IN_SCOPE.match(n) for n in out)


@pytest.mark.timeout(1800)
def test_pve_conformance_meets_issue_targets(tmp_path: Path) -> None:
    shared = shared_dir()
    if shared is None:
        pytest.skip("../shared/pve-tests is not here (clean clone): conformance is reported, not counted")
    scenarios = in_scope_scenarios(shared / "pve-tests")
    assert scenarios, "no in-scope scenario found in ../shared/pve-tests"

    report = tmp_path / "conformance.json"
    harepl = Path(sys.executable).parent / "harepl"
    sim = f"{harepl} sim run {{dir}} --log {{log}}"
    proc = subprocess.run(
        [sys.executable, str(shared / "tools" / "pve-conformance"), "--sim", sim, "--json", str(report),
         *map(str, scenarios)],
        cwd=REPO, capture_output=True, text=True,
    )
    assert proc.returncode == 0, f"pve-conformance itself failed:\n{proc.stdout}\n{proc.stderr}"
    results: dict[str, dict[str, str]] = json.loads(report.read_text())

    # The table: every scenario with its level; the reason for each one below L2.
    levels = {name: r["level"] for name, r in results.items()}
    rows = [f"{levels[name]:5} {name}" + (f"  -- {results[name]['detail']}" if levels[name] != "L2" else "")
            for name in sorted(results)]
    n = len(results)
    l1 = sum(level in ("L1", "L2") for level in levels.values())
    l2 = sum(level == "L2" for level in levels.values())
    summary = f"in-scope Proxmox scenarios: {n}; L1 {l1}/{n}, L2 {l2}/{n} ({100 * l2 / n:.0f}%)"
    print("\n" + "\n".join(rows) + "\n" + summary)

    below_l1 = sorted(name for name, level in levels.items() if level not in ("L1", "L2"))
    l2_needed = math.ceil(L2_SHARE_TARGET * n)
    assert not below_l1 and l2 >= l2_needed, (
        f"{summary}; issue 2 needs every scenario at L1 and >= {l2_needed} at L2.\n"
        f"below L1: {', '.join(below_l1) or 'none'}\n" + "\n".join(r for r in rows if not r.startswith("L2"))
    )
