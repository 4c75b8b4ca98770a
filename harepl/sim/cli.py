"""`harepl sim run DIR --log FILE [--status-json FILE] [--profile pve|default|fast]`.

Exit codes: 0 the scenario ran, 3 a safety invariant broke (the log's last line says which
and when), 2 malformed input (one line on stderr, nothing written).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from harepl.sim.hardware import InvariantBroken
from harepl.sim.runner import PROFILES, ScenarioError, Simulation, load_scenario


def run_scenario(folder: Path, profile: str = "pve") -> tuple[list[str], Simulation, str | None]:
    """Run a scenario in memory: (log lines, simulation, violation or None).
    Raises ScenarioError for malformed input."""
    scenario = load_scenario(folder)
    lines: list[str] = []
    sim = Simulation(scenario, PROFILES[profile], lines.append)
    try:
        sim.run()
    except InvariantBroken as exc:
        sim.violation = str(exc)
        sim.log("err", "invariant", f"INVARIANT BROKEN at {sim.now:g}: {exc}")
    return lines, sim, sim.violation


@click.group()
def sim() -> None:
    """The simulator: Proxmox-format scenarios on a virtual clock."""


@sim.command("run")
@click.argument("scenario_dir", type=click.Path(path_type=Path))
@click.option("--log", "log_file", type=click.Path(path_type=Path), required=True, help="write the log here")
@click.option("--status-json", type=click.Path(path_type=Path), default=None, help="write the final state here")
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="pve", show_default=True,
              help="timing profile (pve replays Proxmox's regression timing)")
def run_cmd(scenario_dir: Path, log_file: Path, status_json: Path | None, profile: str) -> None:
    """Run the scenario in SCENARIO_DIR (cmdlist, hardware_status, service_config, ...)."""
    try:
        lines, simulation, violation = run_scenario(scenario_dir, profile)
    except ScenarioError as exc:
        click.echo(f"error: {scenario_dir}: {exc}", err=True)
        sys.exit(2)
    try:
        log_file.write_text("".join(line + "\n" for line in lines))
        if status_json is not None:
            status_json.write_text(json.dumps(simulation.status(), indent=1, sort_keys=True, default=str))
    except OSError as exc:
        click.echo(f"error: cannot write output: {exc.strerror}: {exc.filename}", err=True)
        sys.exit(2)
    if violation:
        click.echo(f"invariant broken: {violation}", err=True)
        sys.exit(3)


# `harepl sim check` (golden logs) and `harepl sim fuzz` (seeded random runs) live in their
# own modules (scenarios helper); registered here so that they share the `sim` group.
from harepl.sim.demo import demo as sim_demo  # noqa: E402
from harepl.sim.fuzz import fuzz  # noqa: E402
from harepl.sim.golden import check  # noqa: E402

sim.add_command(check)
sim.add_command(fuzz)
sim.add_command(sim_demo)
