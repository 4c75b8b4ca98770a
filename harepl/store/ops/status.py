"""Status: the CRM master's manager_status and each node's LRM status.

Both are written every round; only a change is history (an unchanged write returns the
`UNCHANGED` flag and leaves no event).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from ..envelope import MANAGER_LEASE, Op, agent_lease, optional, required
from ..fields import count, name, obj
from .common import UNCHANGED, Rejected, canon, fence


def _manager_status_set(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """manager_status_set (fenced on 'manager'): the master's whole status."""
    fence(conn, MANAGER_LEASE, c["epoch"])
    body = canon(c["status"])
    row = conn.execute("SELECT body FROM manager_status WHERE id = 1").fetchone()
    conn.execute("INSERT OR REPLACE INTO manager_status (id, epoch, body, ts) VALUES (1, ?, ?, ?)",
                 (c["epoch"], body, c["ts"]))
    # written every CRM round: only a change is history
    return {} if row is None or row[0] != body else {UNCHANGED: True}


MANAGER_STATUS_SET = Op("manager_status_set", _manager_status_set, since=1, fields={
    "status": required(obj), "epoch": required(count)})


def _lrm_status_set(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """lrm_status_set (fenced on 'agent:<node>'): a node's LRM status.  Without an epoch
    (an LRM that never held its lease yet) it is accepted only while the node's lease is
    not held and the status has no ``results``."""
    lease = agent_lease(c["node"])
    if "epoch" in c:
        fence(conn, lease, c["epoch"])
    else:
        row = conn.execute("SELECT holder FROM leases WHERE name = ?", (lease,)).fetchone()
        if row is not None and row[0] is not None:
            raise Rejected("stale_epoch", f"lrm_status of {c['node']!r} without epoch while {lease!r} is held")
        if c["status"].get("results"):
            raise Rejected("invalid", "lrm_status with results needs the node lease epoch")
    body = canon(c["status"])
    row = conn.execute("SELECT body FROM lrm_status WHERE node = ?", (c["node"],)).fetchone()
    conn.execute("INSERT OR REPLACE INTO lrm_status (node, epoch, body, ts) VALUES (?, ?, ?, ?)",
                 (c["node"], c.get("epoch", 0), body, c["ts"]))
    return {} if row is None or row[0] != body else {UNCHANGED: True}


LRM_STATUS_SET = Op("lrm_status_set", _lrm_status_set, since=1, fields={
    "node": required(name), "status": required(obj), "epoch": optional(count)})

OPS = (MANAGER_STATUS_SET, LRM_STATUS_SET)


def manager_status_set(status: dict[str, Any], epoch: int, **kw: Any) -> dict[str, Any]:
    return MANAGER_STATUS_SET.make(status=status, epoch=epoch, **kw)


def lrm_status_set(node: str, status: dict[str, Any], epoch: int | None, **kw: Any) -> dict[str, Any]:
    return LRM_STATUS_SET.make(node=node, status=status, epoch=epoch, **kw)
