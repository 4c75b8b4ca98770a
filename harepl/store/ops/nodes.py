"""Nodes: the cluster's member list (node_add, node_remove) and each node's static
capacity (node_stats_set, version 2)."""

from __future__ import annotations

import sqlite3
from typing import Any

from ..envelope import Op, optional, required
from ..fields import name, positive, string
from .common import EPOCH, UNCHANGED, Rejected, fence_optional


def _add(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """node_add: a new node, with its address if given ('exists' if it is known)."""
    fence_optional(conn, c)
    if conn.execute("SELECT 1 FROM nodes WHERE name = ?", (c["node"],)).fetchone():
        raise Rejected("exists", f"node {c['node']!r} already exists")
    conn.execute("INSERT INTO nodes (name, addr, added_ts) VALUES (?, ?, ?)",
                 (c["node"], c.get("addr"), c["ts"]))
    return {"node": c["node"]}


ADD = Op("node_add", _add, since=1, fields={"node": required(name), "addr": optional(string), "epoch": EPOCH})


def _remove(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """node_remove: the node's lease row stays: its epoch must never be reused by a later
    holder."""
    fence_optional(conn, c)
    if conn.execute("DELETE FROM nodes WHERE name = ?", (c["node"],)).rowcount == 0:
        raise Rejected("missing", f"no such node {c['node']!r}")
    return {"node": c["node"]}


REMOVE = Op("node_remove", _remove, since=1, fields={"node": required(name), "epoch": EPOCH})


def _stats_set(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """node_stats_set: a node's static capacity (CPUs, bytes of memory), published at
    every daemon start: only a change is history."""
    row = conn.execute("SELECT maxcpu, maxmem FROM node_stats WHERE node = ?", (c["node"],)).fetchone()
    conn.execute("INSERT OR REPLACE INTO node_stats (node, maxcpu, maxmem, ts) VALUES (?, ?, ?, ?)",
                 (c["node"], c["maxcpu"], c["maxmem"], c["ts"]))
    return {} if row is None or tuple(row) != (c["maxcpu"], c["maxmem"]) else {UNCHANGED: True}


STATS_SET = Op("node_stats_set", _stats_set, since=2, fields={
    "node": required(name), "maxcpu": required(positive), "maxmem": required(positive)})

OPS = (ADD, REMOVE, STATS_SET)


def node_add(node: str, addr: str | None = None, **kw: Any) -> dict[str, Any]:
    return ADD.make(node=node, addr=addr, **kw)


def node_remove(node: str, **kw: Any) -> dict[str, Any]:
    return REMOVE.make(node=node, **kw)


def node_stats_set(node: str, maxcpu: int, maxmem: int, **kw: Any) -> dict[str, Any]:
    return STATS_SET.make(node=node, maxcpu=maxcpu, maxmem=maxmem, **kw)
