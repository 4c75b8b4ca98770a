"""Configuration parsing and normalisation (pure; text and dicts in, typed dicts out).

- service config of a simulator scenario: Proxmox's simulator's semantics (a missing
  state is 'disabled', `vocabulary.SCENARIO_DEFAULT_REQUESTED_STATE`; 'enabled' ->
  'started'; defaults max_restart=1, max_relocate=1, failback=True; type from the sid
  prefix);
- groups / rules: Proxmox's section-config text format (`group: NAME` + indented
  `key value` lines) or the already-parsed dict shape (`harepl.core.types`);
- groups -> node-affinity rules, as current Proxmox migrates them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from harepl.core.types import GroupConfig, RuleConfig, ServiceConfig
from harepl.core.vocabulary import (
    AFFINITIES,
    NODE_NAME_RE,
    REQUESTED_STATE_ALIASES,
    REQUESTED_STATES,
    RULE_TYPES,
    SCENARIO_DEFAULT_REQUESTED_STATE,
    SERVICE_DEFAULTS,
    SID_RE,
    Affinity,
    RuleType,
)

NODE_RE = NODE_NAME_RE  # the one node-name rule (harepl.core.vocabulary)


class ConfigError(ValueError):
    """Malformed configuration; the message is one line saying what is wrong."""


def parse_sid(sid: str) -> tuple[str, str]:
    m = SID_RE.match(sid)
    if not m:
        raise ConfigError(f"invalid resource id '{sid}' (expected TYPE:NAME, e.g. vm:101)")
    return m["type"], m["name"]


def _as_int(value: object, what: str) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    raise ConfigError(f"{what}: expected an integer, got {value!r}")


def _as_bool(value: object, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false", "yes", "no"):
        return value.strip().lower() in ("1", "true", "yes")
    raise ConfigError(f"{what}: expected a boolean, got {value!r}")


def normalize_service(sid: str, raw: Mapping[str, Any]) -> ServiceConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"service '{sid}': expected an object")
    stype, _ = parse_sid(sid)
    node = raw.get("node")
    if not isinstance(node, str) or not node:
        raise ConfigError(f"service '{sid}' without assigned node")
    state = str(raw.get("state") or SCENARIO_DEFAULT_REQUESTED_STATE)
    state = str(REQUESTED_STATE_ALIASES.get(state, state))
    if state not in REQUESTED_STATES:
        raise ConfigError(f"service '{sid}': unknown requested state '{state}'")
    cfg: ServiceConfig = {
        "type": str(raw.get("type") or stype),
        "state": state,
        "node": node,
        "max_restart": _as_int(raw.get("max_restart", SERVICE_DEFAULTS["max_restart"]),
                               f"service '{sid}' max_restart"),
        "max_relocate": _as_int(raw.get("max_relocate", SERVICE_DEFAULTS["max_relocate"]),
                                f"service '{sid}' max_relocate"),
        "failback": _as_bool(raw.get("failback", SERVICE_DEFAULTS["failback"]), f"service '{sid}' failback"),
    }
    for key in ("group", "comment", "lock"):
        if raw.get(key) is not None:
            cfg[key] = str(raw[key])  # type: ignore[literal-required,unused-ignore]
    if isinstance(raw.get("params"), Mapping):
        cfg["params"] = {str(k): str(v) for k, v in raw["params"].items()}
    return cfg


def normalize_service_config(raw: Mapping[str, Any]) -> dict[str, ServiceConfig]:
    if not isinstance(raw, Mapping):
        raise ConfigError("service config: expected an object of sid -> settings")
    return {sid: normalize_service(sid, raw[sid]) for sid in sorted(raw)}


def parse_section_config(text: str, what: str) -> list[tuple[str, str, dict[str, str]]]:
    """Parse Proxmox's section-config text into (type, id, {key: value}) in file order."""
    sections: list[tuple[str, str, dict[str, str]]] = []
    current: dict[str, str] | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            m = re.match(r"^([a-z][a-z0-9-]*):\s*(\S+)\s*$", line)
            if not m:
                raise ConfigError(f"{what} line {lineno}: expected 'TYPE: ID', got {line.strip()!r}")
            current = {}
            sections.append((m[1], m[2], current))
            continue
        if current is None:
            raise ConfigError(f"{what} line {lineno}: property outside of a section")
        parts = line.strip().split(None, 1)
        current[parts[0]] = parts[1].strip() if len(parts) > 1 else ""
    return sections


def parse_node_priorities(value: str, what: str) -> dict[str, int]:
    nodes: dict[str, int] = {}
    for entry in re.split(r"[,;\s]+", value.strip()):
        if not entry:
            continue
        node, _, pri = entry.partition(":")
        if not NODE_RE.match(node) or (pri and not re.fullmatch(r"\d+", pri)):
            raise ConfigError(f"{what}: invalid node entry '{entry}'")
        nodes[node] = int(pri) if pri else 0
    return nodes


def parse_groups(data: str | Mapping[str, Any]) -> dict[str, GroupConfig]:
    if isinstance(data, str):
        groups: dict[str, GroupConfig] = {}
        for stype, gid, props in parse_section_config(data, "groups"):
            if stype != "group":
                raise ConfigError(f"groups: unknown section type '{stype}'")
            groups[gid] = {
                "nodes": parse_node_priorities(props.get("nodes", ""), f"group '{gid}'"),
                "restricted": _as_bool(props.get("restricted", "0"), f"group '{gid}' restricted"),
                "nofailback": _as_bool(props.get("nofailback", "0"), f"group '{gid}' nofailback"),
            }
        return groups
    out: dict[str, GroupConfig] = {}
    for gid, g in data.items():
        nodes = g.get("nodes", {})
        if isinstance(nodes, str):
            nodes = parse_node_priorities(nodes, f"group '{gid}'")
        out[gid] = {
            "nodes": {str(n): _as_int(p, f"group '{gid}'") for n, p in dict(nodes).items()},
            "restricted": _as_bool(g.get("restricted", False), f"group '{gid}' restricted"),
            "nofailback": _as_bool(g.get("nofailback", False), f"group '{gid}' nofailback"),
        }
    return out


def parse_rules(data: str | Mapping[str, Any]) -> dict[str, RuleConfig]:
    rules: dict[str, RuleConfig] = {}
    items: list[tuple[str, str, Mapping[str, Any]]]
    if isinstance(data, str):
        items = [(t, i, p) for t, i, p in parse_section_config(data, "rules")]
    else:
        items = [(str(r.get("type", "")), rid, r) for rid, r in data.items()]
    for rtype, rid, props in items:
        if rtype not in RULE_TYPES:
            raise ConfigError(f"rules: unknown rule type '{rtype}' for rule '{rid}'")
        res = props.get("resources", [])
        resources = [s for s in re.split(r"[,;\s]+", res) if s] if isinstance(res, str) else list(res)
        for sid in resources:
            parse_sid(sid)
        rule: RuleConfig = {
            "type": rtype,
            "resources": sorted(resources),
            "strict": _as_bool(props.get("strict", False), f"rule '{rid}' strict"),
            "disable": _as_bool(props.get("disable", False), f"rule '{rid}' disable"),
        }
        if rtype == RuleType.NODE_AFFINITY:
            nodes = props.get("nodes", "")
            rule["nodes"] = (
                parse_node_priorities(nodes, f"rule '{rid}'") if isinstance(nodes, str)
                else {str(n): _as_int(p, f"rule '{rid}'") for n, p in dict(nodes).items()}
            )
            rule["affinity"] = str(props.get("affinity", Affinity.POSITIVE))
        else:
            rule["affinity"] = str(props.get("affinity", ""))
            if rule["affinity"] not in AFFINITIES:
                raise ConfigError(f"rule '{rid}': affinity must be positive or negative")
        rules[rid] = rule
    return rules


def groups_to_rules(
    groups: Mapping[str, GroupConfig], services: Mapping[str, ServiceConfig]
) -> dict[str, RuleConfig]:
    """Node-affinity rules equivalent to the HA groups used by `services` (Proxmox's
    migrate_groups_to_rules): one rule per used group, restricted -> strict."""
    rules: dict[str, RuleConfig] = {}
    for gid in sorted(groups):
        members = sorted(sid for sid, cd in services.items() if cd.get("group") == gid)
        if not members:
            continue
        g = groups[gid]
        rules[f"ha-group-{gid}"] = {
            "type": RuleType.NODE_AFFINITY.value,
            "resources": members,
            "nodes": dict(g.get("nodes", {})),
            "strict": bool(g.get("restricted", False)),
            "affinity": Affinity.POSITIVE.value,
            "disable": False,
        }
    return rules


def apply_group_failback(
    groups: Mapping[str, GroupConfig], services: Mapping[str, ServiceConfig]
) -> dict[str, ServiceConfig]:
    """Services in a `nofailback` group get failback=False (Proxmox's
    migrate_groups_to_resources)."""
    out: dict[str, ServiceConfig] = {}
    for sid, cd in services.items():
        new = dict(cd)
        gid = cd.get("group")
        if gid and gid in groups and groups[gid].get("nofailback"):
            new["failback"] = False
        out[sid] = new  # type: ignore[assignment]
    return out
