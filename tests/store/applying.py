"""Helpers of the apply tests: apply a command and check it succeeded or was refused
(with nothing but the rejection's own bookkeeping changed), and a small base state."""

from __future__ import annotations

import sqlite3
from typing import Any

from harepl.store import reads
from harepl.store import vocabulary as C
from harepl.store.apply import apply


def ok(conn: sqlite3.Connection, cmd: dict[str, Any]) -> dict[str, Any]:
    r = apply(conn, C.encode(cmd))
    assert r["ok"], r
    return r


def rejected(conn: sqlite3.Connection, cmd: dict[str, Any], reason: str) -> str:
    before = reads.dump(conn)
    r = apply(conn, C.encode(cmd))
    assert not r["ok"] and r["reason"] == reason, r
    assert "\n" not in r["error"]
    after = reads.dump(conn)
    # nothing but the bookkeeping of the rejection itself changed
    strip = ("INSERT INTO \"applied\"", "INSERT INTO \"events\"", "INSERT INTO \"meta\"")
    assert [s for s in before.splitlines() if not s.startswith(strip)] == \
        [s for s in after.splitlines() if not s.startswith(strip)]
    assert reads.events(conn, limit=1, rejected_only=True)[-1]["id"] == cmd["id"]
    return str(r["error"])


def base(conn: sqlite3.Connection) -> None:
    ok(conn, C.group_set("g1", {"nodes": {"n1": 2, "n2": 1}}, ts=1.0))
    ok(conn, C.resource_add("exec:a", {"node": "n1", "params": {"command": "sleep 1", "x": "1"}}, ts=1.0))
    ok(conn, C.resource_add("exec:b", {"node": "n2"}, ts=1.0))
    ok(conn, C.rule_set("r1", {"type": "node-affinity", "resources": ["exec:a"], "nodes": {"n1": 1}}, ts=1.0))
