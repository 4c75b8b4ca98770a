"""The `harepl` command: daemon, simulator, lab, cluster membership, demo and the TUI.

Subcommands live in their own packages and are imported only when used, so that
`harepl sim` never pays for (or depends on) the runtime's imports. Every name listed here
must import: a subcommand whose module is missing is an error, not a hidden command
(tests/test_cli_entry.py runs --help on each). The benchmarks are scripts, not a
subcommand: bench/README.md.
"""

from __future__ import annotations

import importlib

import click

# name -> "module:attribute" of a click command or group
SUBCOMMANDS: dict[str, str] = {
    "sim": "harepl.sim.cli:sim",
    "daemon": "harepl.runtime.daemon_cli:daemon",
    "lab": "harepl.runtime.lab_cli:lab",
    "cluster": "harepl.cli.cluster:cluster",
    # `make demo`: a real 3-node lab with demo services and a failover
    # (the simulator's demo is `harepl sim demo`)
    "demo": "harepl.runtime.demo:demo",
    "tui": "tui.cli:tui",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="harepl")
def cli() -> None:
    """harepl: high availability for cluster services on a Raft log."""
