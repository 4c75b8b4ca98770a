"""Groups and rules: where services may run.

A group is {"nodes": {node: prio}, "restricted", "nofailback", "comment"?}; a rule is
{"type": "node-affinity"|"resource-affinity", "resources": [sid, ...], "nodes"?,
"strict"?, "affinity"?: "positive"|"negative", "disable"?, "comment"?}.  ``*_set`` is
an upsert of the whole object; ``*_update`` (version 2) a field-level edit merged inside
apply, so two operators editing different fields of one object both win.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from harepl.core.vocabulary import AFFINITIES, GROUP_DELETABLE, RULE_DELETABLE, RULE_TYPES, RuleType

from .. import reads
from ..envelope import CommandError, Op, optional, required
from ..fields import boolean, deletable, name, node_prios, obj, string
from .common import DIGEST, EPOCH, Rejected, canon, check_digest, edit, fence_optional

GROUP_KEYS = ("nodes", "restricted", "nofailback", "comment")
RULE_CHANGE_KEYS = ("resources", "nodes", "strict", "affinity", "disable", "comment")
# GROUP_DELETABLE (restricted / nofailback go back to false), RULE_DELETABLE, the rule
# types and affinities are harepl.core.vocabulary's


# -- groups ------------------------------------------------------------------------------


def _group_config(field: str, v: Any) -> dict[str, Any]:
    d = dict(obj(field, v))
    unknown = sorted(set(d) - {"nodes", "restricted", "nofailback", "comment"})
    if unknown:
        raise CommandError(f"{field}: unknown key(s) {', '.join(unknown)}")
    if "nodes" not in d:
        raise CommandError(f"{field}: missing 'nodes'")
    node_prios(f"{field}.nodes", d["nodes"])
    d["restricted"] = boolean(f"{field}.restricted", d.get("restricted", False))
    d["nofailback"] = boolean(f"{field}.nofailback", d.get("nofailback", False))
    if d.get("comment") is not None:
        string(f"{field}.comment", d["comment"])
    return d


def _group_changes(field: str, v: Any) -> dict[str, Any]:
    d = dict(obj(field, v))
    unknown = sorted(set(d) - set(GROUP_KEYS))
    if unknown:
        raise CommandError(f"{field}: unknown key(s) {', '.join(unknown)}")
    if "nodes" in d:
        node_prios(f"{field}.nodes", d["nodes"])
        if not d["nodes"]:
            raise CommandError(f"{field}.nodes: a group needs at least one node")
    for k in ("restricted", "nofailback"):
        if k in d:
            d[k] = boolean(f"{field}.{k}", d[k])
    if "comment" in d:
        string(f"{field}.comment", d["comment"])
    return d


def _write_group(conn: sqlite3.Connection, group: str, g: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO groups (name, nodes, restricted, nofailback, comment) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(name) DO UPDATE SET nodes = excluded.nodes, restricted = excluded.restricted, "
        "nofailback = excluded.nofailback, comment = excluded.comment",
        (group, canon(g["nodes"]), int(g["restricted"]), int(g["nofailback"]), g.get("comment")))


def _group_set(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """group_set: upsert (digest from version 2)."""
    fence_optional(conn, c)
    check_digest(c, reads.group(conn, c["name"]))
    _write_group(conn, c["name"], c["config"])
    return {"name": c["name"]}


GROUP_SET = Op("group_set", _group_set, since=1, fields={
    "name": required(name), "config": required(_group_config), "epoch": EPOCH, "digest": DIGEST})


def _group_update(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """group_update (version 2): field-level edit."""
    fence_optional(conn, c)
    cur = reads.group(conn, c["name"])
    if cur is None:
        raise Rejected("missing", f"no such group {c['name']!r}")
    check_digest(c, cur)
    changes, delete = edit(c)
    g = {**cur, **changes}
    for key in delete:
        if key == "comment":
            g.pop(key, None)
        else:
            g[key] = False  # restricted / nofailback: the default
    _write_group(conn, c["name"], g)
    return {"name": c["name"]}


GROUP_UPDATE = Op("group_update", _group_update, since=2, fields={
    "name": required(name), "changes": required(_group_changes),
    "delete": optional(deletable(GROUP_DELETABLE)), "epoch": EPOCH, "digest": DIGEST})


def _group_remove(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """group_remove: a group still used by a service: the foreign key makes SQLite refuse
    ('constraint')."""
    fence_optional(conn, c)
    if conn.execute("DELETE FROM groups WHERE name = ?", (c["name"],)).rowcount == 0:
        raise Rejected("missing", f"no such group {c['name']!r}")
    return {"name": c["name"]}


GROUP_REMOVE = Op("group_remove", _group_remove, since=1, fields={"name": required(name), "epoch": EPOCH})


# -- rules -------------------------------------------------------------------------------


def _rule(field: str, v: Any) -> dict[str, Any]:
    d = dict(obj(field, v))
    if d.get("type") not in RULE_TYPES:
        raise CommandError(f"{field}.type: expected node-affinity or resource-affinity")
    res = d.get("resources", [])
    if not isinstance(res, list) or not all(isinstance(s, str) for s in res):
        raise CommandError(f"{field}.resources: expected a list of service ids")
    d["resources"] = res
    if "nodes" in d:
        node_prios(f"{field}.nodes", d["nodes"])
    if "strict" in d:
        d["strict"] = boolean(f"{field}.strict", d["strict"])
    if "affinity" in d and d["affinity"] not in AFFINITIES:
        raise CommandError(f"{field}.affinity: expected positive or negative")
    if "disable" in d:
        d["disable"] = boolean(f"{field}.disable", d["disable"])
    return d


def _rule_changes(field: str, v: Any) -> dict[str, Any]:
    d = dict(obj(field, v))
    unknown = sorted(set(d) - set(RULE_CHANGE_KEYS))
    if unknown:
        extra = " (a rule's type cannot change)" if "type" in unknown else ""
        raise CommandError(f"{field}: unknown key(s) {', '.join(unknown)}{extra}")
    checked = _rule(field, {**d, "type": RuleType.NODE_AFFINITY.value})  # the per-field checks of a rule
    if "comment" in d:
        string(f"{field}.comment", d["comment"])
    return {k: checked[k] for k in d}


def _rule_shape(rule_id: str, rule: dict[str, Any]) -> None:
    if not rule.get("resources"):
        raise Rejected("invalid", f"rule {rule_id!r} needs resources")
    if rule["type"] == RuleType.NODE_AFFINITY:
        if not rule.get("nodes") or "affinity" in rule:
            raise Rejected("invalid", f"node-affinity rule {rule_id!r} needs nodes and takes no affinity")
    elif "affinity" not in rule or len(rule["resources"]) < 2 or "nodes" in rule or "strict" in rule:
        raise Rejected("invalid", f"resource-affinity rule {rule_id!r} needs an affinity and at least two "
                                  "resources, and takes no nodes or strict")


def _rule_set(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """rule_set: upsert (digest from version 2).  (Its shape is not checked here: version
    1 never did, and a committed log must replay the same.)"""
    fence_optional(conn, c)
    check_digest(c, reads.rule(conn, c["rule_id"]))
    conn.execute("INSERT OR REPLACE INTO rules (id, type, body) VALUES (?, ?, ?)",
                 (c["rule_id"], c["rule"]["type"], canon(c["rule"])))
    return {"rule_id": c["rule_id"]}


RULE_SET = Op("rule_set", _rule_set, since=1, fields={
    "rule_id": required(name), "rule": required(_rule), "epoch": EPOCH, "digest": DIGEST})


def _rule_update(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """rule_update (version 2): field-level edit; the result must be a well-formed rule."""
    fence_optional(conn, c)
    rid = c["rule_id"]
    cur = reads.rule(conn, rid)
    if cur is None:
        raise Rejected("missing", f"no such rule {rid!r}")
    check_digest(c, cur)
    changes, delete = edit(c)
    rule = {**cur, **changes}
    for key in delete:
        rule.pop(key, None)
    _rule_shape(rid, rule)
    conn.execute("INSERT OR REPLACE INTO rules (id, type, body) VALUES (?, ?, ?)", (rid, rule["type"], canon(rule)))
    return {"rule_id": rid}


RULE_UPDATE = Op("rule_update", _rule_update, since=2, fields={
    "rule_id": required(name), "changes": required(_rule_changes),
    "delete": optional(deletable(RULE_DELETABLE)), "epoch": EPOCH, "digest": DIGEST})


def _rule_remove(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """rule_remove."""
    fence_optional(conn, c)
    if conn.execute("DELETE FROM rules WHERE id = ?", (c["rule_id"],)).rowcount == 0:
        raise Rejected("missing", f"no such rule {c['rule_id']!r}")
    return {"rule_id": c["rule_id"]}


RULE_REMOVE = Op("rule_remove", _rule_remove, since=1, fields={"rule_id": required(name), "epoch": EPOCH})



def _resource_purge(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """resource_purge (version 3): remove a resource and take it out of every rule that
    names it, deleting the rules it leaves without resources (Proxmox's
    `delete_service_from_config` with purge), in one command. A rule left with one
    resource stays: the rule checker then shows it ignored, as Proxmox does."""
    fence_optional(conn, c)
    sid = c["sid"]
    if conn.execute("DELETE FROM resources WHERE sid = ?", (sid,)).rowcount == 0:
        raise Rejected("missing", f"no such service {sid!r}")
    updated, deleted = [], []
    for rid, rule in sorted(reads.rules(conn).items()):
        resources = list(rule.get("resources") or ())
        if sid not in resources:
            continue
        rest = [s for s in resources if s != sid]
        if rest:
            conn.execute("UPDATE rules SET body = ? WHERE id = ?", (canon({**rule, "resources": rest}), rid))
            updated.append(rid)
        else:
            conn.execute("DELETE FROM rules WHERE id = ?", (rid,))
            deleted.append(rid)
    return {"sid": sid, "rules_updated": updated, "rules_deleted": deleted}


RESOURCE_PURGE = Op("resource_purge", _resource_purge, since=3, fields={"sid": required(name), "epoch": EPOCH})

OPS = (GROUP_SET, GROUP_UPDATE, GROUP_REMOVE, RULE_SET, RULE_UPDATE, RULE_REMOVE, RESOURCE_PURGE)


def group_set(name: str, config: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return GROUP_SET.make(name=name, config=config, **kw)


def group_update(name: str, changes: dict[str, Any], delete: list[str] | None = None,
                 digest: str | None = None, **kw: Any) -> dict[str, Any]:
    return GROUP_UPDATE.make(name=name, changes=changes, delete=delete, digest=digest, **kw)


def group_remove(name: str, **kw: Any) -> dict[str, Any]:
    return GROUP_REMOVE.make(name=name, **kw)


def rule_set(rule_id: str, rule: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return RULE_SET.make(rule_id=rule_id, rule=rule, **kw)


def rule_update(rule_id: str, changes: dict[str, Any], delete: list[str] | None = None,
                digest: str | None = None, **kw: Any) -> dict[str, Any]:
    return RULE_UPDATE.make(rule_id=rule_id, changes=changes, delete=delete, digest=digest, **kw)


def rule_remove(rule_id: str, **kw: Any) -> dict[str, Any]:
    return RULE_REMOVE.make(rule_id=rule_id, **kw)


def resource_purge(sid: str, **kw: Any) -> dict[str, Any]:
    return RESOURCE_PURGE.make(sid=sid, **kw)
