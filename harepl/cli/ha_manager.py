"""The operator CLI, `ha-manager` (Proxmox's verbs and output), a thin layer over the API.

The daemon is found through `HAREPL_API` (a Unix socket path, default
/run/harepl/api.sock, or `http://HOST:PORT` together with `HAREPL_TOKEN`). Every failure
is one line on stderr and a non-zero exit: 2 for a request the daemon refused as invalid
(or a bad command line), 1 when the daemon cannot be reached or cannot answer.
"""

from __future__ import annotations

import os
from typing import Any

import click

from harepl.cli import output
from harepl.core.vocabulary import AFFINITIES, REQUESTED_STATE_ALIASES, REQUESTED_STATES, RULE_TYPES
from harepl.runtime.api.client import DEFAULT_SOCKET, ApiClient, ApiClientError, seg

# Proxmox's order for --state: started, its alias enabled, then the others
REQUEST_STATES = (REQUESTED_STATES[0], *REQUESTED_STATE_ALIASES, *REQUESTED_STATES[1:])


class _Unavailable(click.ClickException):
    exit_code = 1          # the daemon cannot be reached or cannot answer


class _Refused(click.ClickException):
    exit_code = 2          # the request itself is wrong (bad input)


def HaError(message: str, status: int | None = None) -> click.ClickException:  # noqa: N802 (raised like a class)
    """One clear line; exit 2 for refused (4xx) requests, 1 otherwise."""
    if status is not None and 400 <= status < 500:
        return _Refused(message)
    return _Unavailable(message)


def _client() -> ApiClient:
    try:
        return ApiClient(os.environ.get("HAREPL_API") or DEFAULT_SOCKET, os.environ.get("HAREPL_TOKEN") or None)
    except ApiClientError as exc:
        raise HaError(exc.message, 400) from None


def _call(method: str, path: str, body: Any = None, **query: Any) -> Any:
    client = _client()
    try:
        if method == "GET":
            return client.get(path, **query)
        return client.request(method, path, body)
    except ApiClientError as exc:
        raise HaError(exc.message, exc.status) from None


def _emit(data: Any, fmt: str, text: str | None = None) -> None:
    if fmt == "text":
        if text:
            click.echo(text)
    else:
        click.echo(output.dump_json(data, fmt))


def output_format_option(f: Any) -> Any:
    return click.option("--output-format", "output_format", type=click.Choice(output.OUTPUT_FORMATS),
                        default="text", show_default=True, help="Output format.")(f)


class _Bool(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click stubs
    """Proxmox booleans: --restricted, --restricted 1, --restricted 0 (also true/false)."""

    name = "boolean"

    def convert(self, value: Any, param: Any, ctx: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        self.fail(f"{value!r} is not a boolean (use 0 or 1)", param, ctx)


BOOL = _Bool()


def bool_option(name: str, help_text: str) -> Any:
    return click.option(name, type=BOOL, default=None, is_flag=False, flag_value="1", help=help_text)


def digest_option(f: Any) -> Any:
    return click.option("--digest", default=None, metavar="SHA1",
                        help="Refuse the change if the object changed since this digest was read "
                             "(it is shown with --output-format json).")(f)


def _with_digest(body: dict[str, Any], digest: str | None) -> dict[str, Any]:
    if digest is not None:
        body["digest"] = digest
    return body


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Manage HA services (Proxmox's ha-manager verbs) through the local harepl daemon.

    \b
    The daemon is found through HAREPL_API: a Unix socket path (default
    /run/harepl/api.sock) or http://HOST:PORT together with HAREPL_TOKEN.
    """


# ---------------------------------------------------------------- status / config

@cli.command()
@click.option("--verbose", is_flag=True, help="Also print the complete CRM and LRM state (JSON).")
@output_format_option
def status(verbose: bool, output_format: str) -> None:
    """Display the HA manager status."""
    entries = _call("GET", "/status/current")
    manager = _call("GET", "/status/manager_status") if verbose else None
    if output_format == "text":
        click.echo(output.status_text(entries, manager))
    elif verbose:
        _emit({"status": entries, "full_cluster_state": manager}, output_format)
    else:
        _emit(entries, output_format)


@cli.command()
@click.option("--type", "kind", default=None, help="Only list resources of this type (vm, ct, exec, ocf, ...).")
@output_format_option
def config(kind: str | None, output_format: str) -> None:
    """List HA resources."""
    resources = _call("GET", "/resources", type=kind)
    if output_format != "text":
        _emit(resources, output_format)
        return
    text, warnings = output.config_text(resources)
    if text:
        click.echo(text)
    for line in warnings:
        click.echo(line, err=True)


# ---------------------------------------------------------------- resources

def resource_options(f: Any) -> Any:
    options = [
        click.option("--state", type=click.Choice(REQUEST_STATES), default=None, help="Requested state."),
        click.option("--group", default=None, help="HA group."),
        click.option("--max_restart", "--max-restart", "max_restart", type=int, default=None,
                     help="Restarts on the same node before relocating (default 1)."),
        click.option("--max_relocate", "--max-relocate", "max_relocate", type=int, default=None,
                     help="Relocations before giving up (default 1)."),
        bool_option("--failback", "Move back to a preferred node when it returns (default 1)."),
        click.option("--comment", default=None, help="Description."),
        click.option("--node", default=None, help="Node to start on (default: this node)."),
        click.option("--command", default=None, help="exec: the command line to run."),
        click.option("--agent", default=None, help="ocf: PROVIDER/TYPE, e.g. heartbeat/Dummy."),
        click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
                     help="Agent parameter (repeatable)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _resource_body(opts: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for key in ("state", "group", "max_restart", "max_relocate", "failback", "comment", "node"):
        if opts.get(key) is not None:
            body[key] = opts[key]
    params: dict[str, str] = {}
    for item in opts.get("params") or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HaError(f"--param needs KEY=VALUE, got '{item}'", 400)
        params[key] = value
    for key in ("command", "agent"):
        if opts.get(key) is not None:
            if key in params:
                raise HaError(f"give {key} once: --{key} or --param {key}=..., not both", 400)
            params[key] = opts[key]
    if params:
        body["params"] = params
    return body


@cli.command()
@click.argument("sid")
@resource_options
def add(sid: str, **opts: Any) -> None:
    """Create a new HA resource (SID like exec:web, ocf:dummy, vm:100)."""
    _call("POST", "/resources", {"sid": sid, **_resource_body(opts)})


@cli.command(name="set")
@click.argument("sid")
@resource_options
@click.option("--delete", default=None, metavar="LIST",
              help="Settings to delete, comma separated (group, comment, ..., params.KEY).")
@digest_option
def set_(sid: str, delete: str | None, digest: str | None, **opts: Any) -> None:
    """Update a resource's configuration (only the given settings change)."""
    body = _resource_body(opts)
    if delete:
        body["delete"] = [key for key in delete.replace(";", ",").split(",") if key]
    _call("PUT", f"/resources/{seg(sid)}", _with_digest(body, digest))


@cli.command()
@click.argument("sid")
@click.option("--purge", type=BOOL, default=True, show_default="1", metavar="0|1",
              help="Also remove the resource from every rule naming it, deleting the rules "
                   "it leaves without resources.")
def remove(sid: str, purge: bool) -> None:
    """Remove a resource from HA management (its service is left as it is)."""
    client = _client()
    try:
        client.request("DELETE", f"/resources/{seg(sid)}", None, {"purge": 1 if purge else 0})
    except ApiClientError as exc:
        raise HaError(exc.message, exc.status) from None


def _move(verb: str, sid: str, node: str) -> None:
    """Queue the move; report what the CRM will do with it, as Proxmox's CLI: partners
    in positive affinity that come along, or (exit 2) the resources in negative affinity
    on the target node that make the CRM refuse it."""
    data = _call("POST", f"/resources/{seg(sid)}/{verb}", {"node": node})
    if not isinstance(data, dict):
        return
    sid, req_node = data.get("sid", sid), data.get("requested-node", node)
    blocking = data.get("blocking-resources") or []
    if blocking:
        reasons = []
        for b in blocking:
            reason = f"- resource '{b.get('sid')}' on target node '{req_node}'"
            if b.get("cause") == "resource-affinity":
                reason += f" in negative affinity with resource '{sid}'"
            reasons.append(reason)
        raise HaError(f"cannot {verb} resource '{sid}' to node '{req_node}': " + " ".join(reasons), 400)
    for csid in data.get("comigrated-resources") or []:
        click.echo(f"also {verb} resource '{csid}' in positive affinity with resource '{sid}' "
                   f"to target node '{req_node}'")


@cli.command()
@click.argument("sid")
@click.argument("node")
def migrate(sid: str, node: str) -> None:
    """Request resource migration (online) to another node."""
    _move("migrate", sid, node)


@cli.command()
@click.argument("sid")
@click.argument("node")
def relocate(sid: str, node: str) -> None:
    """Request resource relocation: stop here, start on the target node."""
    _move("relocate", sid, node)


@cli.group(name="crm-command")
def crm_command() -> None:
    """Send commands to the CRM."""


@crm_command.command(name="migrate")
@click.argument("sid")
@click.argument("node")
def crm_migrate(sid: str, node: str) -> None:
    """Request resource migration (online) to another node."""
    _move("migrate", sid, node)


@crm_command.command(name="relocate")
@click.argument("sid")
@click.argument("node")
def crm_relocate(sid: str, node: str) -> None:
    """Request resource relocation to another node."""
    _move("relocate", sid, node)


@crm_command.command(name="stop")
@click.argument("sid")
@click.argument("timeout", type=click.IntRange(min=0))
def crm_stop(sid: str, timeout: int) -> None:
    """Request the service to be stopped (TIMEOUT seconds; 0 means a hard stop)."""
    _call("POST", f"/resources/{seg(sid)}/stop", {"timeout": timeout})


@crm_command.group(name="node-maintenance")
def node_maintenance() -> None:
    """Change the node-maintenance request state."""


@node_maintenance.command(name="enable")
@click.argument("node")
def maintenance_enable(node: str) -> None:
    """Put NODE into maintenance: its services move away and it gets no new ones."""
    _call("POST", f"/nodes/{seg(node)}/maintenance", {"enable": True})


@node_maintenance.command(name="disable")
@click.argument("node")
def maintenance_disable(node: str) -> None:
    """Take NODE out of maintenance."""
    _call("POST", f"/nodes/{seg(node)}/maintenance", {"enable": False})


# ---------------------------------------------------------------- groups

def group_options(f: Any) -> Any:
    f = click.option("--comment", default=None, help="Description.")(f)
    f = bool_option("--nofailback", "Do not move services back to a preferred node that returns.")(f)
    f = bool_option("--restricted", "Services may run only on the group's nodes.")(f)
    return f


def _group_body(nodes: str | None, **opts: Any) -> dict[str, Any]:
    body = {key: value for key, value in opts.items() if value is not None}
    if nodes is not None:
        body["nodes"] = nodes
    return body


@cli.command()
@click.argument("group")
@click.option("--nodes", required=True, metavar="NODE[:PRIO],...", help="Member nodes with priorities.")
@group_options
def groupadd(group: str, nodes: str, **opts: Any) -> None:
    """Create an HA group."""
    _call("POST", "/groups", {"group": group, **_group_body(nodes, **opts)})


@cli.command()
@click.argument("group")
@click.option("--nodes", default=None, metavar="NODE[:PRIO],...", help="Member nodes with priorities.")
@group_options
@click.option("--delete", default=None, metavar="LIST", help="Settings to delete, comma separated.")
@digest_option
def groupset(group: str, nodes: str | None, delete: str | None, digest: str | None, **opts: Any) -> None:
    """Update an HA group (only the given settings change)."""
    body = _group_body(nodes, **opts)
    if delete:
        body["delete"] = [key for key in delete.split(",") if key]
    _call("PUT", f"/groups/{seg(group)}", _with_digest(body, digest))


@cli.command()
@click.argument("group")
def groupremove(group: str) -> None:
    """Delete an HA group."""
    _call("DELETE", f"/groups/{seg(group)}")


@cli.command()
@output_format_option
def groupconfig(output_format: str) -> None:
    """List HA groups."""
    groups = _call("GET", "/groups")
    _emit(groups, output_format, output.groupconfig_text(groups) if output_format == "text" else None)


# ---------------------------------------------------------------- rules

@cli.group()
def rules() -> None:
    """HA rules (node-affinity, resource-affinity)."""


def _rules_list(kind: str | None, resource: str | None, output_format: str, config_view: bool) -> None:
    data = _call("GET", "/rules", type=kind, resource=resource)
    _emit(data, output_format, output.rules_text(data, config_view) if output_format == "text" else None)


@rules.command(name="list")
@click.option("--type", "kind", type=click.Choice(RULE_TYPES), default=None)
@click.option("--resource", default=None, help="Only rules that name this resource.")
@output_format_option
def rules_list(kind: str | None, resource: str | None, output_format: str) -> None:
    """List HA rules."""
    _rules_list(kind, resource, output_format, config_view=False)


@rules.command(name="config")
@click.option("--type", "kind", type=click.Choice(RULE_TYPES), default=None)
@click.option("--resource", default=None, help="Only rules that name this resource.")
@output_format_option
def rules_config(kind: str | None, resource: str | None, output_format: str) -> None:
    """Show HA rules with whether each is in use."""
    _rules_list(kind, resource, output_format, config_view=True)


def rule_options(f: Any) -> Any:
    options = [
        click.option("--resources", default=None, metavar="SID,...", help="Resources the rule applies to."),
        click.option("--nodes", default=None, metavar="NODE[:PRIO],...", help="node-affinity: nodes."),
        bool_option("--strict", "node-affinity: only the listed nodes may run the resources."),
        click.option("--affinity", type=click.Choice(AFFINITIES), default=None,
                     help="resource-affinity: keep together (positive) or apart (negative)."),
        bool_option("--disable", "Keep the rule but do not apply it."),
        click.option("--comment", default=None, help="Description."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


RULE_TYPE = click.Choice(RULE_TYPES)


@rules.command(name="add")
@click.argument("kind", metavar="TYPE", type=RULE_TYPE)
@click.argument("rule")
@rule_options
def rules_add(kind: str, rule: str, **opts: Any) -> None:
    """Create an HA rule."""
    body = {key: value for key, value in opts.items() if value is not None}
    _call("POST", "/rules", {"type": kind, "rule": rule, **body})


@rules.command(name="set")
@click.argument("kind", metavar="TYPE", type=RULE_TYPE)
@click.argument("rule")
@rule_options
@click.option("--delete", default=None, metavar="LIST", help="Settings to delete, comma separated.")
@digest_option
def rules_set(kind: str, rule: str, delete: str | None, digest: str | None, **opts: Any) -> None:
    """Update an HA rule (only the given settings change)."""
    body: dict[str, Any] = {key: value for key, value in opts.items() if value is not None}
    if delete:
        body["delete"] = [key for key in delete.split(",") if key]
    _call("PUT", f"/rules/{seg(rule)}", _with_digest({"type": kind, **body}, digest))


@rules.command(name="remove")
@click.argument("rule")
def rules_remove(rule: str) -> None:
    """Delete an HA rule."""
    _call("DELETE", f"/rules/{seg(rule)}")


# ---------------------------------------------------------------- history (harepl extension)

@cli.command()
@click.option("--after", type=click.IntRange(min=0), default=None,
              help="Only events after this seq (default: the latest LIMIT).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--all", "show_all", is_flag=True,
              help="Include the CRM's and LRMs' status writes (one per loop each).")
@output_format_option
def events(after: int | None, limit: int, show_all: bool, output_format: str) -> None:
    """Show the cluster's history: changes, commands, leases, rejections (oldest first)."""
    data = _call("GET", "/events", after=after, limit=limit, include_status=1 if show_all else 0)
    _emit(data, output_format, output.events_text(data) if output_format == "text" else None)


# ---------------------------------------------------------------- datacenter (pvesh /cluster/options)

@cli.group()
def datacenter() -> None:
    """Datacenter HA settings: shutdown policy and CRS scheduler (datacenter.cfg 'ha', 'crs')."""


@datacenter.command(name="show")
@output_format_option
def datacenter_show(output_format: str) -> None:
    """Show the datacenter HA settings and each node's published capacity."""
    options = _call("GET", "/cluster/options")
    nodes = _call("GET", "/nodes")
    if output_format == "text":
        click.echo(output.datacenter_text(options, nodes))
    else:
        stats = {n["node"]: {k: n[k] for k in ("maxcpu", "maxmem") if k in n} for n in nodes}
        _emit({"options": options, "node_stats": stats}, output_format)


@datacenter.command(name="set")
@click.option("--shutdown-policy", "--shutdown_policy", "shutdown_policy", default=None,
              metavar="conditional|freeze|failover|migrate",
              help="What a node shutdown does with its services (ha: shutdown_policy=...).")
@click.option("--ha", "ha_opts", default=None, metavar="KEY=VALUE,...", help="The 'ha' settings, e.g. "
              "shutdown_policy=migrate.")
@click.option("--crs", "crs_opts", default=None, metavar="KEY=VALUE,...", help="The 'crs' settings, e.g. "
              "ha=static,ha-rebalance-on-start=1.")
@click.option("--delete", default=None, metavar="LIST", help="Settings to unset (back to the default), "
              "comma separated: ha, crs, crs.ha-rebalance-on-start, ...")
@digest_option
def datacenter_set(shutdown_policy: str | None, ha_opts: str | None, crs_opts: str | None,
                   delete: str | None, digest: str | None) -> None:
    """Change datacenter HA settings (merged: settings not named stay as they are)."""
    body: dict[str, Any] = {}
    if shutdown_policy is not None:
        if ha_opts is not None:
            raise HaError("give the shutdown policy once: --shutdown-policy or --ha shutdown_policy=...", 400)
        ha_opts = f"shutdown_policy={shutdown_policy}"
    if ha_opts is not None:
        body["ha"] = ha_opts
    if crs_opts is not None:
        body["crs"] = crs_opts
    if delete:
        body["delete"] = [key for key in delete.replace(";", ",").split(",") if key]
    _call("PUT", "/cluster/options", _with_digest(body, digest))
