"""apply() handlers of command vocabulary version 2 (`harepl.store.commands_v2`).

Field-level edits merged inside apply (no read-modify-write by the proposer), digest
checks, the datacenter HA settings and node capacity. Same rules as every handler
(`harepl.store.apply`): deterministic, only `conn`, a refusal is `Rejected`.
Importing `harepl.store.apply` registers them.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from . import apply as A
from . import commands as C
from . import reads
from .apply import (
    _RES_DEFAULTS,
    _RES_INSERT,
    _UNCHANGED,
    Rejected,
    _check_digest,
    _fence_optional,
    _resource_row,
    _service_to_edit,
    _write_group,
    canon,
)


def _edit(c: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    changes, delete = dict(c["changes"]), list(c.get("delete", []))
    params = changes.get("params") or {}
    both = sorted((set(changes) & set(delete))
                  | {k for k in delete if k.startswith("params.") and k[len("params."):] in params})
    if both:
        raise Rejected("invalid", f"cannot set and delete {both[0]!r} at once")
    if not changes and not delete:
        raise Rejected("invalid", "nothing to change")
    return changes, delete


def _group_update(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    _fence_optional(conn, c)
    cur = reads.group(conn, c["name"])
    if cur is None:
        raise Rejected("missing", f"no such group {c['name']!r}")
    _check_digest(c, cur)
    changes, delete = _edit(c)
    g = {**cur, **changes}
    for key in delete:
        if key == "comment":
            g.pop(key, None)
        else:
            g[key] = False  # restricted / nofailback: the default
    _write_group(conn, c["name"], g)
    return {"name": c["name"]}


def _rule_shape(rule_id: str, rule: dict[str, Any]) -> None:
    if not rule.get("resources"):
        raise Rejected("invalid", f"rule {rule_id!r} needs resources")
    if rule["type"] == "node-affinity":
        if not rule.get("nodes") or "affinity" in rule:
            raise Rejected("invalid", f"node-affinity rule {rule_id!r} needs nodes and takes no affinity")
    elif "affinity" not in rule or len(rule["resources"]) < 2 or "nodes" in rule or "strict" in rule:
        raise Rejected("invalid", f"resource-affinity rule {rule_id!r} needs an affinity and at least two "
                                  "resources, and takes no nodes or strict")


def _rule_update(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    _fence_optional(conn, c)
    rid = c["rule_id"]
    cur = reads.rule(conn, rid)
    if cur is None:
        raise Rejected("missing", f"no such rule {rid!r}")
    _check_digest(c, cur)
    changes, delete = _edit(c)
    rule = {**cur, **changes}
    for key in delete:
        rule.pop(key, None)
    _rule_shape(rid, rule)
    conn.execute("INSERT OR REPLACE INTO rules (id, type, body) VALUES (?, ?, ?)", (rid, rule["type"], canon(rule)))
    return {"rule_id": rid}


def _resource_update(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    sid = c["sid"]
    cur = _service_to_edit(conn, c)
    changes, delete = _edit(c)
    if changes.get("type", cur["type"]) != cur["type"]:
        raise Rejected("invalid", f"service {sid!r} is of type {cur['type']!r}; its type cannot change")
    # params merge key by key; a service without any keeps none (NULL, not {})
    has_params = "params" in cur or "params" in changes
    params = {**(cur.get("params") or {}), **(changes.pop("params", None) or {})}
    cfg = {**cur, **changes}
    for key in delete:
        if key == "params":
            params, has_params = {}, False
        elif key.startswith("params."):
            params.pop(key[len("params."):], None)
        elif key in _RES_DEFAULTS:
            cfg[key] = _RES_DEFAULTS[key]
        else:
            cfg.pop(key, None)
    cfg.pop("params", None)
    if has_params:
        cfg["params"] = params
    conn.execute("DELETE FROM resources WHERE sid = ?", (sid,))
    conn.execute(_RES_INSERT, _resource_row(sid, cfg))
    return {"sid": sid}


def _dc_options_set(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    _fence_optional(conn, c)
    cur = reads.datacenter(conn)
    _check_digest(c, cur)
    options, delete = c["options"], c.get("delete", [])
    if not any(options.values()) and not delete:
        raise Rejected("invalid", "nothing to change")
    for item in delete:
        section, _, key = item.partition(".")
        if (key or section) in options.get(section, {}) or (not key and options.get(section)):
            raise Rejected("invalid", f"cannot set and delete {item!r} at once")
    new = {section: dict(values) for section, values in cur.items()}
    for section, values in options.items():
        new.setdefault(section, {}).update(values)
    for item in delete:
        section, _, key = item.partition(".")
        if key:
            new.get(section, {}).pop(key, None)
        else:
            new.pop(section, None)
    new = {section: values for section, values in new.items() if values}
    conn.execute("INSERT OR REPLACE INTO settings (key, value) VALUES ('datacenter', ?)", (canon(new),))
    return {"datacenter": new}


def _node_stats_set(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    row = conn.execute("SELECT maxcpu, maxmem FROM node_stats WHERE node = ?", (c["node"],)).fetchone()
    conn.execute("INSERT OR REPLACE INTO node_stats (node, maxcpu, maxmem, ts) VALUES (?, ?, ?, ?)",
                 (c["node"], c["maxcpu"], c["maxmem"], c["ts"]))
    # published at every daemon start: only a change is history
    return {} if row is None or tuple(row) != (c["maxcpu"], c["maxmem"]) else {_UNCHANGED: True}


A._HANDLERS.update({
    "group_update": _group_update, "rule_update": _rule_update, "resource_update": _resource_update,
    "dc_options_set": _dc_options_set, "node_stats_set": _node_stats_set,
})
assert set(A._HANDLERS) == set(C.OPS)
