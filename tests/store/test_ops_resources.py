"""ops.resources on a real SQLite state: field-level edits of a service."""

from __future__ import annotations

from harepl.store import reads
from harepl.store import vocabulary as C
from harepl.store.schema import connect
from tests.store.applying import base, ok, rejected


def test_resource_update_merges_params_key_by_key() -> None:
    conn = connect()
    base(conn)
    ok(conn, C.resource_update("exec:a", {"params": {"y": "2"}}, ts=2.0))
    ok(conn, C.resource_update("exec:a", {"max_restart": 3}, delete=["params.x"], ts=2.0))
    s = reads.service(conn, "exec:a")
    assert s["params"] == {"command": "sleep 1", "y": "2"} and s["max_restart"] == 3
    ok(conn, C.resource_update("exec:a", {"group": "g1"}, delete=["max_restart"], ts=3.0))
    s = reads.service(conn, "exec:a")
    assert s["group"] == "g1" and s["max_restart"] == 1
    rejected(conn, C.resource_update("exec:a", {"group": "nogroup"}, ts=4.0), "constraint")
    rejected(conn, C.resource_update("exec:a", {"type": "ocf"}, ts=4.0), "invalid")
    rejected(conn, C.resource_update("exec:a", {"params": {"y": "3"}}, delete=["params.y"], ts=4.0), "invalid")
    # a parameter named like the tail of a deletable key is no clash
    ok(conn, C.resource_update("exec:a", {"params": {"art": "1"}}, delete=["max_restart"], ts=5.0))
