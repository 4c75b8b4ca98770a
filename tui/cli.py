"""`harepl tui`: start the terminal UI against the cluster's local APIs, or the simulator."""

from __future__ import annotations

import os
from pathlib import Path

import click

from harepl.runtime.api.client import DEFAULT_SOCKET, ApiClientError

API_TIMEOUT_S = 5.0     # a hung daemon shows up as an error line after this, the UI keeps going


class _BadInput(click.ClickException):
    exit_code = 2


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--api", "apis", multiple=True, metavar="ADDR",
              help="API address: a Unix socket path or http://HOST:PORT (default: $HAREPL_API, else "
                   "/run/harepl/api.sock). Repeat it to name the members to fall back on; a lab's other "
                   "sockets (DIR/<node>/api.sock) are found by themselves. TCP needs $HAREPL_TOKEN.")
@click.option("--interval", "interval_s", type=click.FloatRange(0.2, 3600), default=2.0, show_default=True,
              help="Seconds between refreshes.")
@click.option("--read-only", "read_only", is_flag=True, help="Show only: every action is refused, nothing is sent.")
@click.option("--sim", "sim_dir", type=click.Path(path_type=Path, file_okay=False), default=None, metavar="DIR",
              help="Simulation mode: the real core on the simulator, from the scenario folder DIR "
                   "(hardware_status, service_config, ...; cmdlist optional).")
@click.option("--profile", type=click.Choice(["default", "fast", "pve", "async"]), default="default",
              show_default=True, help="Simulation timing profile (with --sim).")
def tui(apis: tuple[str, ...], interval_s: float, read_only: bool, sim_dir: Path | None, profile: str) -> None:
    """Terminal UI: cluster, nodes and services, with Proxmox's HA actions.

    \b
    Keys: m migrate, r relocate, e enable, d disable, t requested state,
    s stop, x remove, n node maintenance, / filter services, Enter details,
    h history, c groups and rules, g refresh, ? help, q quit.
    Simulation: Space run/pause, . step, p power, w network.
    """
    from tui.source import DataSource

    source: DataSource
    if sim_dir is not None:
        from harepl.sim.runner import ScenarioError
        from tui.simsource import SimSource

        try:
            source = SimSource.from_folder(sim_dir, profile)
        except ScenarioError as exc:
            raise _BadInput(f"{sim_dir}: {exc}") from None
    else:
        from tui.source import LiveSource

        targets = list(apis) or [os.environ.get("HAREPL_API") or DEFAULT_SOCKET]
        try:
            source = LiveSource(targets, os.environ.get("HAREPL_TOKEN") or None, timeout_s=API_TIMEOUT_S)
        except ApiClientError as exc:
            raise _BadInput(exc.message) from None
    from tui.app import HareplApp  # Textual only when the UI really starts

    if sim_dir is not None:
        from tui.simcontrol import SimApp

        SimApp(source, interval_s=interval_s, read_only=read_only).run()
    else:
        HareplApp(source, interval_s=interval_s, read_only=read_only).run()
