"""Version 2 of the store's command vocabulary (see `harepl.store.commands`).

Adds field-level edits (group/rule/resource_update), an optional `digest` on the
whole-object writes, the datacenter HA settings (`DC_OPTIONS`, op dc_options_set) and a
node's static capacity (node_stats_set). Importing `harepl.store.commands` registers
these ops; version-1 commands keep their exact meaning.
"""

from __future__ import annotations

import re
from typing import Any

from . import commands as C
from .commands import (
    CRS_MODES,
    OPS_V1,
    REBALANCE_METHODS,
    SHUTDOWN_POLICIES,
    CommandError,
    Validator,
    _bool,
    _dict,
    _int,
    _name,
    _name_list,
    _node_prios,
    _rule,
    _service_changes,
    _str,
)


def _digest(field: str, v: Any) -> str:
    if not isinstance(v, str) or not re.fullmatch(r"[0-9a-f]{40}", v):
        raise CommandError(f"{field}: expected a SHA1 digest of 40 hex digits (got {v!r})")
    return v


def _positive(field: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise CommandError(f"{field}: expected a positive integer (got {v!r})")
    return v


def _choice(*allowed: str) -> Validator:
    def check(field: str, v: Any) -> str:
        if v not in allowed:
            raise CommandError(f"{field}: expected one of {', '.join(allowed)} (got {v!r})")
        return str(v)
    return check


def _rounds(field: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1000:
        raise CommandError(f"{field}: expected an integer from 1 to 1000 (got {v!r})")
    return v


#: datacenter HA settings (Proxmox datacenter.cfg 'ha' and 'crs'): section -> key -> check
DC_OPTIONS: dict[str, dict[str, Validator]] = {
    "ha": {"shutdown_policy": _choice(*SHUTDOWN_POLICIES)},
    "crs": {"ha": _choice(*CRS_MODES), "ha-rebalance-on-start": _bool, "ha-auto-rebalance": _bool,
            "ha-auto-rebalance-hold-duration": _rounds,
            "ha-auto-rebalance-method": _choice(*REBALANCE_METHODS)},
}


def dc_option_check(section: str, key: str, value: Any) -> Any:
    """Validate one datacenter setting; CommandError with one line naming it."""
    if section not in DC_OPTIONS:
        raise CommandError(f"unknown datacenter section '{section}' (known: {', '.join(sorted(DC_OPTIONS))})")
    keys = DC_OPTIONS[section]
    if key not in keys:
        raise CommandError(f"unknown datacenter option '{section}.{key}' "
                           f"(known in {section}: {', '.join(sorted(keys))})")
    return keys[key](f"{section}.{key}", value)


def _dc_options(field: str, v: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for section, values in _dict(field, v).items():
        if section not in DC_OPTIONS:
            dc_option_check(section, "", None)
        out[section] = {key: dc_option_check(section, key, value)
                        for key, value in _dict(f"{field}.{section}", values).items()}
    return out


def _dc_delete(field: str, v: Any) -> list[str]:
    for item in _name_list(field, v):
        section, _, key = item.partition(".")
        if section not in DC_OPTIONS or (key and key not in DC_OPTIONS[section]):
            raise CommandError(f"{field}: unknown datacenter option {item!r}")
    return sorted(set(v))


GROUP_KEYS = ("nodes", "restricted", "nofailback", "comment")
GROUP_DELETABLE = ("comment", "restricted", "nofailback")
RULE_CHANGE_KEYS = ("resources", "nodes", "strict", "affinity", "disable", "comment")
RULE_DELETABLE = ("comment", "disable", "strict")
RES_DELETABLE = ("group", "comment", "params", "max_restart", "max_relocate", "failback")


def _group_changes(field: str, v: Any) -> dict[str, Any]:
    d = dict(_dict(field, v))
    unknown = sorted(set(d) - set(GROUP_KEYS))
    if unknown:
        raise CommandError(f"{field}: unknown key(s) {', '.join(unknown)}")
    if "nodes" in d:
        _node_prios(f"{field}.nodes", d["nodes"])
        if not d["nodes"]:
            raise CommandError(f"{field}.nodes: a group needs at least one node")
    for k in ("restricted", "nofailback"):
        if k in d:
            d[k] = _bool(f"{field}.{k}", d[k])
    if "comment" in d:
        _str(f"{field}.comment", d["comment"])
    return d


def _rule_changes(field: str, v: Any) -> dict[str, Any]:
    d = dict(_dict(field, v))
    unknown = sorted(set(d) - set(RULE_CHANGE_KEYS))
    if unknown:
        extra = " (a rule's type cannot change)" if "type" in unknown else ""
        raise CommandError(f"{field}: unknown key(s) {', '.join(unknown)}{extra}")
    checked = _rule(field, {**d, "type": "node-affinity"})  # the per-field checks of a rule
    if "comment" in d:
        _str(f"{field}.comment", d["comment"])
    return {k: checked[k] for k in d}


def _one_of_list(allowed: tuple[str, ...], prefix: str | None = None) -> Validator:
    def check(field: str, v: Any) -> list[str]:
        for key in _name_list(field, v):
            if key in allowed:
                continue
            if prefix and key.startswith(prefix) and len(key) > len(prefix):
                continue
            raise CommandError(f"{field}: cannot delete {key!r} (deletable: {', '.join(allowed)}"
                               f"{', ' + prefix + 'KEY' if prefix else ''})")
        return sorted(set(v))
    return check


_DIGEST: dict[str, tuple[Validator, bool]] = {"digest": (_digest, False)}
_OPERATOR: dict[str, tuple[Validator, bool]] = {"epoch": (_int, False), **_DIGEST}

# version 2: the v1 ops (three of them also take a digest) and the new ones
OPS_V2: dict[str, dict[str, tuple[Validator, bool]]] = {
    **OPS_V1,
    "group_set": {**OPS_V1["group_set"], **_DIGEST},
    "rule_set": {**OPS_V1["rule_set"], **_DIGEST},
    "resource_set": {**OPS_V1["resource_set"], **_DIGEST},
    "group_update": {"name": (_name, True), "changes": (_group_changes, True),
                     "delete": (_one_of_list(GROUP_DELETABLE), False), **_OPERATOR},
    "rule_update": {"rule_id": (_name, True), "changes": (_rule_changes, True),
                    "delete": (_one_of_list(RULE_DELETABLE), False), **_OPERATOR},
    "resource_update": {"sid": (_name, True), "changes": (_service_changes, True),
                        "delete": (_one_of_list(RES_DELETABLE, "params."), False), **_OPERATOR},
    "dc_options_set": {"options": (_dc_options, True), "delete": (_dc_delete, False), **_OPERATOR},
    "node_stats_set": {"node": (_name, True), "maxcpu": (_positive, True), "maxmem": (_positive, True)},
}

C.OPS_BY_VERSION[2] = OPS_V2
C.OPS.update(OPS_V2)

