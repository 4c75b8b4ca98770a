"""Output of `ha-manager`'s read commands: Proxmox's text shapes, or JSON.

Pure functions from API data to text, so tests can check them without a daemon.
"""

from __future__ import annotations

import json
import time
from typing import Any

from harepl.core.vocabulary import DATACENTER_DEFAULTS

OUTPUT_FORMATS = ("text", "json", "json-pretty")


def dump_json(data: Any, fmt: str) -> str:
    if fmt == "json-pretty":
        return json.dumps(data, indent=4, sort_keys=True)
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return node_priorities(value)
    return str(value)


def node_priorities(nodes: dict[str, Any]) -> str:
    """{node: prio} as Proxmox writes it: 'node1:2,node2' (priority 0 left out)."""
    order = sorted(nodes.items(), key=lambda item: (-int(item[1] or 0), item[0]))
    return ",".join(f"{node}:{prio}" if prio else node for node, prio in order)


def status_text(entries: list[dict[str, Any]], manager: dict[str, Any] | None) -> str:
    lines = [f"{e['type']} {e['status']}" for e in entries]
    if manager is not None:
        lines.append("full cluster state:")
        # Perl's JSON pretty+canonical output, which Proxmox prints here, indents by 3
        lines.append(json.dumps(manager, indent=3, sort_keys=True))
    return "\n".join(lines)


def config_text(resources: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """Proxmox's `ha-manager config`: returns (text, warnings for stderr)."""
    lines: list[str] = []
    warnings: list[str] = []
    for rec in sorted(resources, key=lambda r: r["sid"]):
        lines.append(rec["sid"])
        for key in sorted(rec):
            if key in ("digest", "sid", "type", "errors", "params"):
                continue
            lines.append(f"\t{key} {_value(rec[key])}")
        params = dict(rec.get("params") or {})
        # the agent's own settings, spelled as they are given to `add`
        for key in ("command", "agent"):
            if key in params:
                lines.append(f"\t{key} {params.pop(key)}")
        for key in sorted(params):
            lines.append(f"\tparam {key}={params[key]}")
        for prop, err in sorted((rec.get("errors") or {}).items()):
            warnings.append(f"error: property '{prop}' - {err}")
        lines.append("")
    return "\n".join(lines), warnings


def groupconfig_text(groups: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for rec in sorted(groups, key=lambda g: g["group"]):
        lines.append(f"group: {rec['group']}")
        for key in sorted(rec):
            if key in ("digest", "group", "type"):
                continue
            lines.append(f"\t{key} {_value(rec[key])}")
        lines.append("")
    return "\n".join(lines)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A bordered table like Proxmox's CLIFormatter text output."""
    cells = [[_value(row.get(col, "")) for col in columns] for row in rows]
    widths = [max([len(col)] + [len(r[i]) for r in cells]) for i, col in enumerate(columns)]

    def rule(left: str, mid: str, right: str) -> str:
        return left + mid.join("─" * (w + 2) for w in widths) + right

    def line(values: list[str]) -> str:
        return "│" + "│".join(f" {v:<{w}} " for v, w in zip(values, widths, strict=True)) + "│"

    out = [rule("┌", "┬", "┐"), line(columns), rule("╞", "╪", "╡")]
    for i, r in enumerate(cells):
        out.append(line(r))
        out.append(rule("├", "┼", "┤") if i < len(cells) - 1 else rule("└", "┴", "┘"))
    if not cells:
        out.append(rule("└", "┴", "┘"))
    return "\n".join(out)


RULE_LIST_COLUMNS = ["rule", "type", "resources", "nodes", "strict", "affinity", "disable", "comment"]
RULE_CONFIG_COLUMNS = ["enabled", "state", "rule", "type", "resources", "comment"]


def rules_text(rules: list[dict[str, Any]], config_view: bool) -> str:
    if config_view:
        rows = [{**r, "enabled": 0 if r.get("disable") else 1,
                 "state": "ignored (conflicts)" if r.get("errors") else "in use"} for r in rules]
        return table(rows, RULE_CONFIG_COLUMNS)
    columns = [c for c in RULE_LIST_COLUMNS if any(c in r for r in rules) or c in ("rule", "type")]
    return table(rules, columns)


def events_text(events: list[dict[str, Any]]) -> str:
    """The store's history: 'SEQ  TIME  OP  detail' (rejections marked REJECTED)."""
    lines = []
    for ev in events:
        stamp = ev.get("ts")
        when = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(stamp)))
                if isinstance(stamp, int | float) and stamp else "-")
        mark = "" if ev.get("ok", True) else "REJECTED "
        lines.append(f"{ev.get('seq')}\t{when}\t{ev.get('op')}\t{mark}{ev.get('detail', '')}")
    return "\n".join(lines)


# what an unset datacenter HA setting means (Proxmox's defaults)
DC_DEFAULTS: dict[str, dict[str, Any]] = {section: dict(values) for section, values in DATACENTER_DEFAULTS.items()}


def property_string(values: dict[str, Any]) -> str:
    """{k: v} as a Proxmox property string: 'ha=static,ha-rebalance-on-start=1'."""
    return ",".join(f"{key}={_value(values[key])}" for key in sorted(values, key=lambda k: (k != "ha", k)))


def datacenter_text(options: dict[str, Any], nodes: list[dict[str, Any]]) -> str:
    """`ha-manager datacenter show`: datacenter.cfg lines, defaults marked, node capacity."""
    lines = []
    for section in ("ha", "crs"):
        values = options.get(section)
        if values:
            lines.append(f"{section}: {property_string(values)}")
        else:
            lines.append(f"{section}: {property_string(DC_DEFAULTS[section])} (default)")
    if options.get("digest"):
        lines.append(f"digest: {options['digest']}")
    for node in sorted(nodes, key=lambda n: n["node"]):
        if node.get("maxcpu") and node.get("maxmem"):
            lines.append(f"node {node['node']}: maxcpu {node['maxcpu']}, "
                         f"maxmem {node['maxmem'] / (1 << 30):.1f} GiB")
        else:
            lines.append(f"node {node['node']}: no static stats published")
    return "\n".join(lines)
