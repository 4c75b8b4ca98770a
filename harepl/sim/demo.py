"""`harepl demo` (and `make demo`): a small built-in scenario in the simulator, then the
resulting `ha-manager status` view. Runs in memory; writes nothing.

The scenario: three nodes, three services; node3 loses its network, is fenced by its
watchdog and its service is recovered on a healthy node; vm:102 is migrated by hand.
"""

from __future__ import annotations

import click

from harepl.core.status_view import format_status
from harepl.sim.hardware import NodeHw
from harepl.sim.runner import PROFILES, Scenario, Simulation

DEMO_SERVICES = {
    "vm:101": {"node": "node1", "state": "started"},
    "vm:102": {"node": "node2", "state": "started"},
    "ct:103": {"node": "node3", "state": "started"},
}
DEMO_CMDS = [
    ["power node1 on", "power node2 on", "power node3 on"],
    ["network node3 off"],
    ["service vm:102 migrate node1"],
]


def demo_scenario() -> Scenario:
    nodes = {n: NodeHw() for n in ("node1", "node2", "node3")}
    return Scenario(nodes, [list(b) for b in DEMO_CMDS], dict(DEMO_SERVICES), {}, "", "", {})


@click.command("demo")
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="default", show_default=True)
@click.option("--log/--no-log", "show_log", default=False, help="also print the simulation log")
def demo(profile: str, show_log: bool) -> None:
    """Simulate a 3-node cluster losing a node, then print `ha-manager status`."""
    lines: list[str] = []
    sim = Simulation(demo_scenario(), PROFILES[profile], lines.append)
    sim.run()
    if show_log:
        click.echo("\n".join(lines))
    decisions = [ln for ln in lines if "/crm:" in ln and ("state changed" in ln or "recover" in ln)]
    click.echo(f"# simulated {sim.now:g} s ({profile} profile); {len(decisions)} CRM decisions, e.g.:")
    for ln in decisions[-4:]:
        click.echo("#   " + ln.split(": ", 1)[1])
    _, quorate = sim.hw.node_info()
    view = format_status(
        quorate, sim.hw.manager_status, sim.hw.lrm_status, sim.hw.service_config,
        fmt_time=lambda t: f"t={t:g}s", now=sim.now, stale_after_s=PROFILES[profile].lock_timeout_s,
    )
    click.echo("\n".join(view))
