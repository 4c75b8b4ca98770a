"""Resources (HA services): add, whole-object set, field-level update, an LRM's move,
remove.

A service config is {"type", "state", "node", "group", "max_restart", "max_relocate",
"failback", "comment", "params"}; ``node`` is required on add, ``state`` "enabled" means
"started", a missing ``type`` comes from the sid's prefix ("vm:100").
"""

from __future__ import annotations

import sqlite3
from typing import Any

from harepl.core.vocabulary import (
    REQUESTED_STATE_ALIASES,
    REQUESTED_STATES,
    RESOURCE_DELETABLE,
    SERVICE_DEFAULTS,
    SERVICE_KEYS,
    SERVICE_TYPES,
)

from .. import reads
from ..envelope import CommandError, Op, agent_lease, optional, required
from ..fields import boolean, count, deletable, name, name_list, obj, string
from .common import DIGEST, EPOCH, Rejected, canon, check_digest, edit, fence, fence_optional

# The vocabulary (types, requested states, keys, defaults, what resource_update may
# delete) is harepl.core.vocabulary's; a service added without ``state`` is started
# (Proxmox's Config.pm read_and_check_resources_config).  Changing one of them changes
# what `apply` decides for committed entries: see that module's rules first.
_RES_DEFAULTS = SERVICE_DEFAULTS
#: what resource_set (version 1) may delete
_RES_OPTIONAL = ("group", "comment", "params")


def service_config(field: str, v: Any, partial: bool = False) -> dict[str, Any]:
    """Validate and normalise a service config."""
    d = dict(obj(field, v))
    unknown = sorted(set(d) - set(SERVICE_KEYS))
    if unknown:
        raise CommandError(f"{field}: unknown key(s) {', '.join(unknown)}")
    if "state" in d:
        if isinstance(d["state"], str) and d["state"] in REQUESTED_STATE_ALIASES:
            d["state"] = REQUESTED_STATE_ALIASES[d["state"]].value  # "enabled" is "started"
        if d["state"] not in REQUESTED_STATES:
            raise CommandError(f"{field}.state: expected one of {', '.join(REQUESTED_STATES)}")
    if "type" in d and d["type"] not in SERVICE_TYPES:
        raise CommandError(f"{field}.type: expected one of {', '.join(SERVICE_TYPES)}")
    if "node" in d:
        name(f"{field}.node", d["node"])
    if "group" in d and d["group"] is not None:
        name(f"{field}.group", d["group"])
    for k in ("max_restart", "max_relocate"):
        if k in d:
            count(f"{field}.{k}", d[k])
    if "failback" in d:
        d["failback"] = boolean(f"{field}.failback", d["failback"])
    if "comment" in d and d["comment"] is not None:
        string(f"{field}.comment", d["comment"])
    if "params" in d and d["params"] is not None:
        obj(f"{field}.params", d["params"])
    if not partial and "node" not in d:
        raise CommandError(f"{field}: missing 'node'")
    return d


def _service_changes(field: str, v: Any) -> dict[str, Any]:
    return service_config(field, v, partial=True)


def _resource_row(sid: str, cfg: dict[str, Any]) -> tuple[Any, ...]:
    return (sid, cfg["type"], cfg["state"], cfg["node"], cfg.get("group"), cfg["max_restart"],
            cfg["max_relocate"], 1 if cfg["failback"] else 0, cfg.get("comment"),
            None if cfg.get("params") is None else canon(cfg["params"]))


_RES_INSERT = ("INSERT INTO resources (sid, type, state, node, grp, max_restart, max_relocate, failback, "
               "comment, params) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _write(conn: sqlite3.Connection, sid: str, cfg: dict[str, Any]) -> None:
    conn.execute("DELETE FROM resources WHERE sid = ?", (sid,))
    conn.execute(_RES_INSERT, _resource_row(sid, cfg))


def _add(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """resource_add: a new service ('exists' if it does)."""
    fence_optional(conn, c)
    sid = c["sid"]
    if conn.execute("SELECT 1 FROM resources WHERE sid = ?", (sid,)).fetchone():
        raise Rejected("exists", f"service {sid!r} already exists")
    cfg = {**_RES_DEFAULTS, **c["config"]}
    if "type" not in cfg:
        prefix = sid.split(":", 1)[0] if ":" in sid else ""
        if prefix not in SERVICE_TYPES:
            raise Rejected("invalid", f"service {sid!r}: no 'type' and no known type prefix")
        cfg["type"] = prefix
    conn.execute(_RES_INSERT, _resource_row(sid, cfg))
    return {"sid": sid}


ADD = Op("resource_add", _add, since=1, fields={
    "sid": required(name), "config": required(service_config), "epoch": EPOCH})


def _service_to_edit(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """The service an edit command names, after its fence and digest checks."""
    fence_optional(conn, c)
    cur = reads.service(conn, c["sid"])
    if cur is None:
        raise Rejected("missing", f"no such service {c['sid']!r}")
    check_digest(c, cur)
    return cur


def _set(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """resource_set: partial update by the proposer; ``delete`` lists optional keys.
    From version 2 an optional ``digest`` refuses it if the service changed since read."""
    sid = c["sid"]
    cur = _service_to_edit(conn, c)
    cfg = {**cur, **c["changes"]}
    for key in c.get("delete", []):
        if key not in _RES_OPTIONAL:
            raise Rejected("invalid", f"cannot delete {key!r} (only {', '.join(_RES_OPTIONAL)})")
        cfg.pop(key, None)
    _write(conn, sid, cfg)
    return {"sid": sid}


SET = Op("resource_set", _set, since=1, fields={
    "sid": required(name), "changes": required(_service_changes), "delete": optional(name_list),
    "epoch": EPOCH, "digest": DIGEST})


def _update(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """resource_update (version 2): field-level edit merged inside apply; ``params`` are
    merged key by key and ``delete`` may name ``params.KEY``; deleting max_restart,
    max_relocate or failback means "back to the default"."""
    sid = c["sid"]
    cur = _service_to_edit(conn, c)
    changes, delete = edit(c)
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
    _write(conn, sid, cfg)
    return {"sid": sid}


UPDATE = Op("resource_update", _update, since=2, fields={
    "sid": required(name), "changes": required(_service_changes),
    "delete": optional(deletable(RESOURCE_DELETABLE, "params.")), "epoch": EPOCH, "digest": DIGEST})


def _move(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """resource_move (fenced on 'agent:<from_node>'): an LRM's migration moving the
    configured node (Proxmox moves the guest's config file).  Rejected ('conflict') unless
    the service is configured on from_node."""
    fence(conn, agent_lease(c["from_node"]), c["epoch"], c["from_node"])
    row = conn.execute("SELECT node FROM resources WHERE sid = ?", (c["sid"],)).fetchone()
    if row is None:
        raise Rejected("missing", f"no such service {c['sid']!r}")
    if row[0] != c["from_node"]:
        raise Rejected("conflict", f"service {c['sid']!r} is configured on {row[0]!r}, not {c['from_node']!r}")
    conn.execute("UPDATE resources SET node = ? WHERE sid = ?", (c["to_node"], c["sid"]))
    return {"sid": c["sid"], "node": c["to_node"]}


MOVE = Op("resource_move", _move, since=1, fields={
    "sid": required(name), "from_node": required(name), "to_node": required(name), "epoch": required(count)})


def _remove(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """resource_remove."""
    fence_optional(conn, c)
    if conn.execute("DELETE FROM resources WHERE sid = ?", (c["sid"],)).rowcount == 0:
        raise Rejected("missing", f"no such service {c['sid']!r}")
    return {"sid": c["sid"]}


REMOVE = Op("resource_remove", _remove, since=1, fields={"sid": required(name), "epoch": EPOCH})

OPS = (ADD, SET, UPDATE, MOVE, REMOVE)


def resource_add(sid: str, config: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return ADD.make(sid=sid, config=config, **kw)


def resource_set(sid: str, changes: dict[str, Any], delete: list[str] | None = None,
                 **kw: Any) -> dict[str, Any]:
    return SET.make(sid=sid, changes=changes, delete=delete, **kw)


def resource_update(sid: str, changes: dict[str, Any], delete: list[str] | None = None,
                    digest: str | None = None, **kw: Any) -> dict[str, Any]:
    return UPDATE.make(sid=sid, changes=changes, delete=delete, digest=digest, **kw)


def resource_move(sid: str, from_node: str, to_node: str, epoch: int, **kw: Any) -> dict[str, Any]:
    return MOVE.make(sid=sid, from_node=from_node, to_node=to_node, epoch=epoch, **kw)


def resource_remove(sid: str, **kw: Any) -> dict[str, Any]:
    return REMOVE.make(sid=sid, **kw)
