"""Read helpers: the state shapes of harepl.core.types from a state database.

All functions take a sqlite3 connection and return plain JSON-able values.  They are
local reads: through `harepl.store.client.Client` they run behind a barrier when the
caller needs them linearizable.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Any

from .envelope import MANAGER_LEASE, agent_lease


def manager_status(conn: sqlite3.Connection) -> dict[str, Any]:
    """The last manager_status written by a CRM master ({} if none yet)."""
    row = conn.execute("SELECT body FROM manager_status WHERE id = 1").fetchone()
    return json.loads(row[0]) if row else {}


def lrm_status(conn: sqlite3.Connection, node: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT body FROM lrm_status WHERE node = ?", (node,)).fetchone()
    return json.loads(row[0]) if row else None


def vocab_versions(conn: sqlite3.Connection) -> dict[str, int]:
    """node -> the newest command version its harepl knows, as its LRM status says
    (nodes that never wrote one are not running; a status without it: version 1)."""
    out: dict[str, int] = {}
    for node, body in conn.execute("SELECT node, body FROM lrm_status"):
        v = json.loads(body).get("vocab", 1)
        out[node] = v if isinstance(v, int) and not isinstance(v, bool) else 1
    return out


def lrm_statuses(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    return {n: json.loads(b) for n, b in conn.execute("SELECT node, body FROM lrm_status ORDER BY node")}


def _service_from_row(row: tuple[Any, ...]) -> dict[str, Any]:
    _sid, typ, state, node, grp, max_restart, max_relocate, failback, comment, params = row
    d: dict[str, Any] = {"type": typ, "state": state, "node": node, "max_restart": max_restart,
                         "max_relocate": max_relocate, "failback": bool(failback)}
    if grp is not None:
        d["group"] = grp
    if comment is not None:
        d["comment"] = comment
    if params is not None:
        d["params"] = json.loads(params)
    return d


_RES_COLS = "sid, type, state, node, grp, max_restart, max_relocate, failback, comment, params"


def service(conn: sqlite3.Connection, sid: str) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {_RES_COLS} FROM resources WHERE sid = ?", (sid,)).fetchone()
    return _service_from_row(row) if row else None


def service_config(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """sid -> service config (harepl.core.types.ServiceConfig)."""
    return {r[0]: _service_from_row(r)
            for r in conn.execute(f"SELECT {_RES_COLS} FROM resources ORDER BY sid")}


def groups(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, nodes, restricted, nofailback, comment in conn.execute(
            "SELECT name, nodes, restricted, nofailback, comment FROM groups ORDER BY name"):
        g: dict[str, Any] = {"nodes": json.loads(nodes), "restricted": bool(restricted),
                             "nofailback": bool(nofailback)}
        if comment is not None:
            g["comment"] = comment
        out[name] = g
    return out


def group(conn: sqlite3.Connection, name: str) -> dict[str, Any] | None:
    return groups(conn).get(name)


def rule(conn: sqlite3.Connection, rule_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT body FROM rules WHERE id = ?", (rule_id,)).fetchone()
    return json.loads(row[0]) if row else None


def digest(obj: Any) -> str:
    """SHA1 (hex) of an object's canonical JSON, as read here: what an edit that must not
    overwrite a concurrent change states it read (Proxmox's config `digest`)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - change detection, not security


def _no_table(exc: sqlite3.OperationalError) -> bool:
    # a database restored from an older snapshot gets its new tables at the next apply
    return "no such table" in str(exc)


def datacenter(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """The datacenter HA settings ({"ha": {...}, "crs": {...}}; {} when none are set)."""
    try:
        row = conn.execute("SELECT value FROM settings WHERE key = 'datacenter'").fetchone()
    except sqlite3.OperationalError as exc:
        if _no_table(exc):
            return {}
        raise
    return json.loads(row[0]) if row else {}


def node_stats(conn: sqlite3.Connection) -> dict[str, dict[str, float]]:
    """node -> {"maxcpu": CPUs, "maxmem": bytes}, as each node published them."""
    try:
        rows = conn.execute("SELECT node, maxcpu, maxmem FROM node_stats ORDER BY node").fetchall()
    except sqlite3.OperationalError as exc:
        if _no_table(exc):
            return {}
        raise
    return {n: {"maxcpu": float(c), "maxmem": float(m)} for n, c, m in rows}


def rules(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    return {rid: json.loads(body) for rid, body in conn.execute("SELECT id, body FROM rules ORDER BY id")}


def crm_commands(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    """Queued CRM commands, oldest first, as (seq, command string)."""
    return [(s, c) for s, c in conn.execute("SELECT seq, cmd FROM crm_commands ORDER BY seq")]


def leases(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """name -> {"holder", "epoch", "seq", "acquired_ts", "renewed_ts"}."""
    return {n: {"holder": h, "epoch": e, "seq": s, "acquired_ts": a, "renewed_ts": r}
            for n, h, e, s, a, r in conn.execute(
                "SELECT name, holder, epoch, seq, acquired_ts, renewed_ts FROM leases ORDER BY name")}


def lease(conn: sqlite3.Connection, name: str) -> dict[str, Any]:
    """One lease; a never-acquired lease reads as holder None, epoch 0, seq 0."""
    return leases(conn).get(name) or {"holder": None, "epoch": 0, "seq": 0,
                                      "acquired_ts": None, "renewed_ts": None}


def manager_lease(conn: sqlite3.Connection) -> dict[str, Any]:
    return lease(conn, MANAGER_LEASE)


def agent_lease_of(conn: sqlite3.Connection, node: str) -> dict[str, Any]:
    return lease(conn, agent_lease(node))


def nodes(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    return {n: {"addr": a, "added_ts": t}
            for n, a, t in conn.execute("SELECT name, addr, added_ts FROM nodes ORDER BY name")}


def events(conn: sqlite3.Connection, limit: int = 100, rejected_only: bool = False) -> list[dict[str, Any]]:
    """Most recent history events, newest last."""
    where = "WHERE ok = 0" if rejected_only else ""
    rows = conn.execute(f"SELECT seq, ts, id, op, ok, detail FROM events {where} ORDER BY seq DESC LIMIT ?",
                        (limit,)).fetchall()
    return [{"seq": s, "ts": t, "id": i, "op": o, "ok": bool(k), "detail": d} for s, t, i, o, k, d in reversed(rows)]


def result_of(conn: sqlite3.Connection, cid: str) -> dict[str, Any] | None:
    """The recorded first result of command id `cid`, if still remembered."""
    row = conn.execute("SELECT result FROM applied WHERE id = ?", (cid,)).fetchone()
    return json.loads(row[0]) if row else None


def applied_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT value FROM meta WHERE key = 'applied_count'").fetchone()[0])


def dump(conn: sqlite3.Connection) -> str:
    """SQLite's own text dump; equal on every node that applied the same commands."""
    return "\n".join(conn.iterdump())
