"""`harepl cluster`: cluster membership of the running cluster, through the local daemon's
API (found like `ha-manager` finds it: HAREPL_API / HAREPL_TOKEN). Proxmox's
`pvecm nodes`, `pvecm add`, `pvecm delnode`.

Exit status: 0 done; 2 the request was refused (bad input, would lose quorum, change in
progress, unknown node, services still on the node) or the command line is wrong; 1 the
daemon cannot be reached or the cluster cannot answer now.
"""

from __future__ import annotations

from typing import Any

import click

from harepl.cli import output
from harepl.cli.ha_manager import HaError, _call, output_format_option
from harepl.runtime.api.client import seg


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cluster() -> None:
    """Cluster membership: list, add and remove nodes (one change at a time)."""


def _table(view: dict[str, Any]) -> str:
    lines = [f"quorate: {'yes' if view.get('quorate') else 'no'}, raft leader: {view.get('leader') or '-'}",
             f"{'node':<16} {'raft address':<22} {'raft':<5} {'ha':<4} {'responds':<9} role"]
    for m in view.get("members", []):
        role = ", ".join(r for r, on in (("leader", m.get("leader")), ("local", m.get("local")),
                                         ("joining", m.get("joining"))) if on)
        lines.append(f"{m.get('node') or '?':<16} {m.get('addr'):<22} {'yes' if m.get('raft_member') else 'no':<5} "
                     f"{'yes' if m.get('ha_node') else 'no':<4} {'yes' if m.get('responds') else 'no':<9} {role}")
    return "\n".join(lines)


@cluster.command("members")
@output_format_option
def members_cmd(output_format: str) -> None:
    """The Raft members, the leader and which members respond."""
    view = _call("GET", "/cluster/members")
    if output_format == "text":
        click.echo(_table(view))
    else:
        click.echo(output.dump_json(view, output_format))


def _hostport(ctx: click.Context, param: click.Parameter, value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise HaError(f"--addr must be HOST:PORT (got {value!r})", 400)
    return value


@cluster.command("add-node")
@click.argument("node")
@click.option("--addr", required=True, callback=_hostport, metavar="HOST:PORT",
              help="The new node's Raft address (its [[nodes]] address and raft_port).")
def add_cmd(node: str, addr: str) -> None:
    """Add NODE to the running cluster (start its daemon with every member in [[nodes]])."""
    r = _call("POST", "/cluster/members", {"node": node, "addr": addr})
    click.echo(f"node '{r['node']}' added ({r['addr']})")


@cluster.command("remove-node")
@click.argument("node")
def remove_cmd(node: str) -> None:
    """Remove NODE from the running cluster (its HA services must be moved first)."""
    r = _call("DELETE", f"/cluster/members/{seg(node)}")
    click.echo(f"node '{r['node']}' removed ({r['addr']}) - stop its daemon and remove it from [[nodes]]")
