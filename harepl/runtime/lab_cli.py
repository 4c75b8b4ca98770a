"""`harepl lab`: a local cluster of node daemons on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from harepl.runtime.lab import Lab, LabError, up

DIR_OPTION = click.option("--dir", "directory", required=True,
                          type=click.Path(file_okay=False, path_type=Path),
                          help="The lab's directory (configs, data, logs, PIDs).")


def _run(action: Callable[[], None]) -> None:
    try:
        action()
    except LabError as exc:
        click.echo(f"harepl lab: {exc}", err=True)
        raise SystemExit(2) from None


@click.group()
def lab() -> None:
    """Run a local cluster of harepl daemons on 127.0.0.1."""


@lab.command("up")
@click.option("--nodes", "n_nodes", type=click.IntRange(1, 15), default=3, show_default=True)
@DIR_OPTION
@click.option("--profile", type=click.Choice(["default", "fast"]), default="fast", show_default=True)
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds to wait for a quorate cluster.")
@click.option("--fence-device", type=click.Choice(["ipmi"]), default=None,
              help="One real IPMI BMC (ipmi_sim) per node, driven by fence_ipmilan; sets fencing = both.")
def up_cmd(n_nodes: int, directory: Path, profile: str, timeout_s: float, fence_device: str | None) -> None:
    """Start N daemons in the background; return once the cluster is quorate."""

    def action() -> None:
        lab_ = up(directory, n_nodes, profile, timeout_s=timeout_s, fence_device=fence_device)
        click.echo(f"lab up: {len(lab_.nodes)} nodes in {lab_.dir} (profile {profile})")
        for node in lab_.nodes:
            click.echo(f"  {node.name}: pid {lab_.pid(node.name)}, raft 127.0.0.1:{node.raft_port}, "
                       f"api {node.api_socket}")
        click.echo(lab_.env_line(lab_.nodes[0].name))

    _run(action)


@lab.command("env")
@click.argument("node")
@DIR_OPTION
def env_cmd(node: str, directory: Path) -> None:
    """Print the export line that points ha-manager at NODE."""
    _run(lambda: click.echo(Lab(directory).load().env_line(node)))


def _node_command(name: str, verb: str, doc: str) -> None:
    @lab.command(name, help=doc)
    @click.argument("node")
    @DIR_OPTION
    def cmd(node: str, directory: Path) -> None:
        def action() -> None:
            lab_ = Lab(directory).load()
            result = getattr(lab_, verb)(node)
            extra = f" (pid {result})" if isinstance(result, int) else ""
            click.echo(f"{node}: {name} done{extra}")

        _run(action)


_node_command("kill", "kill", "SIGKILL the node's whole session (power loss).")
_node_command("pause", "pause", "SIGSTOP the node's daemon (its watchdog keeps running).")
_node_command("resume", "resume", "SIGCONT a paused node's daemon.")
_node_command("restart", "restart", "Kill the node (if running) and start it again.")
_node_command("start", "start", "Start a stopped node.")
_node_command("shutdown", "shutdown", "Shut the node down cleanly (SIGUSR1: the datacenter's shutdown policy "
              "applies), then power it off.")
_node_command("reboot", "reboot", "Reboot the node cleanly (SIGUSR2: the shutdown policy applies), then start it "
              "again.")


@lab.command("down")
@DIR_OPTION
def down_cmd(directory: Path) -> None:
    """Stop every process the lab started (by PID and session)."""

    def action() -> None:
        lab_ = Lab(directory).load()
        was = lab_.down()
        click.echo(f"lab down: stopped {', '.join(was) if was else 'nothing (no node was running)'}")

    _run(action)


@lab.command("status")
@DIR_OPTION
def status_cmd(directory: Path) -> None:
    """Which lab nodes are running."""

    def action() -> None:
        lab_ = Lab(directory).load()
        running = set(lab_.running())
        for node in lab_.nodes:
            state = f"running (pid {lab_.pid(node.name)})" if node.name in running else "stopped"
            click.echo(f"{node.name}: {state}")

    _run(action)


@lab.command("add-node")
@DIR_OPTION
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds to wait for the new node to be quorate.")
def add_node_cmd(directory: Path, timeout_s: float) -> None:
    """Start one more daemon on 127.0.0.1 and add it to the running cluster."""

    def action() -> None:
        lab_ = Lab(directory).load()
        name = lab_.add_node(timeout_s=timeout_s)
        node = lab_.node(name)
        click.echo(f"{name}: added (pid {lab_.pid(name)}, raft 127.0.0.1:{node.raft_port}, api {node.api_socket})")

    _run(action)


@lab.command("remove-node")
@click.argument("node")
@DIR_OPTION
def remove_node_cmd(node: str, directory: Path) -> None:
    """Remove NODE from the running cluster, then power it off."""

    def action() -> None:
        Lab(directory).load().remove_node(node)
        click.echo(f"{node}: removed")

    _run(action)
