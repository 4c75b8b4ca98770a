"""Command vocabulary v2 on a real SQLite state: datacenter settings, node capacity,
field-level edits and digests; old (v1) databases and commands keep working."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from harepl.store import reads, schema
from harepl.store import vocabulary as C
from harepl.store.apply import apply
from harepl.store.schema import connect


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


# --- datacenter settings ------------------------------------------------------------------

def test_dc_options_merge_delete_and_read_back() -> None:
    conn = connect()
    assert reads.datacenter(conn) == {}
    ok(conn, C.dc_options_set({"ha": {"shutdown_policy": "migrate"}}, ts=1.0))
    ok(conn, C.dc_options_set({"crs": {"ha": "static", "ha-rebalance-on-start": 1}}, ts=2.0))
    assert reads.datacenter(conn) == {"ha": {"shutdown_policy": "migrate"},
                                      "crs": {"ha": "static", "ha-rebalance-on-start": True}}
    ok(conn, C.dc_options_set({}, delete=["crs.ha-rebalance-on-start", "ha"], ts=3.0))
    assert reads.datacenter(conn) == {"crs": {"ha": "static"}}


@pytest.mark.parametrize("options, delete, message", [
    ({"ha": {"shutdown_policy": "sometimes"}}, None,
     "ha.shutdown_policy: expected one of conditional, freeze, failover, migrate (got 'sometimes')"),
    ({"crs": {"ha": "dynamic"}}, None, "crs.ha: expected one of basic, static (got 'dynamic')"),
    ({"crs": {"rebalance": 1}}, None, "unknown datacenter option 'crs.rebalance'"),
    ({"cluster": {"x": 1}}, None, "unknown datacenter section 'cluster'"),
    ({"crs": {"ha-rebalance-on-start": "maybe"}}, None, "crs.ha-rebalance-on-start: expected a boolean"),
    ({}, ["crs.nope"], "unknown datacenter option 'crs.nope'"),
    ({}, None, "nothing to change"),
    ({"crs": {"ha": "static"}}, ["crs"], "cannot set and delete 'crs' at once"),
])
def test_bad_dc_options_are_one_line_rejections(options: dict[str, Any], delete: list[str] | None,
                                                message: str) -> None:
    conn = connect()
    ok(conn, C.dc_options_set({"ha": {"shutdown_policy": "freeze"}}, ts=1.0))
    error = rejected(conn, C.dc_options_set(options, delete=delete, ts=2.0), "invalid")
    assert message in error
    assert reads.datacenter(conn) == {"ha": {"shutdown_policy": "freeze"}}


def test_dc_options_digest() -> None:
    conn = connect()
    seen = reads.digest(reads.datacenter(conn))
    ok(conn, C.dc_options_set({"crs": {"ha": "static"}}, digest=seen, ts=1.0))
    # a second writer that read before the first write is refused
    error = rejected(conn, C.dc_options_set({"crs": {"ha": "basic"}}, digest=seen, ts=2.0), "conflict")
    assert error == C.DIGEST_MISMATCH
    ok(conn, C.dc_options_set({"crs": {"ha": "basic"}}, digest=reads.digest(reads.datacenter(conn)), ts=3.0))


def test_node_stats_published_and_unchanged_republish_is_quiet() -> None:
    conn = connect()
    ok(conn, C.node_stats_set("n1", 4, 8 << 30, ts=1.0))
    ok(conn, C.node_stats_set("n2", 2, 4 << 30, ts=1.0))
    assert reads.node_stats(conn) == {"n1": {"maxcpu": 4.0, "maxmem": float(8 << 30)},
                                      "n2": {"maxcpu": 2.0, "maxmem": float(4 << 30)}}
    n_events = len(reads.events(conn))
    ok(conn, C.node_stats_set("n1", 4, 8 << 30, ts=2.0))
    assert len(reads.events(conn)) == n_events
    rejected(conn, C.node_stats_set("n1", 0, 8 << 30, ts=3.0), "invalid")


# --- field-level edits and digests ------------------------------------------------------------

def test_two_group_edits_from_one_read_both_survive() -> None:
    conn = connect()
    base(conn)
    # both operators read the group, then each changes a different field
    ok(conn, C.group_update("g1", {"comment": "db nodes"}, ts=2.0))
    ok(conn, C.group_update("g1", {"nofailback": True}, ts=2.0))
    ok(conn, C.group_update("g1", {"nodes": {"n1": 1, "n3": 5}}, ts=2.0))
    assert reads.group(conn, "g1") == {"nodes": {"n1": 1, "n3": 5}, "restricted": False,
                                       "nofailback": True, "comment": "db nodes"}
    ok(conn, C.group_update("g1", {}, delete=["comment", "nofailback"], ts=3.0))
    assert reads.group(conn, "g1") == {"nodes": {"n1": 1, "n3": 5}, "restricted": False, "nofailback": False}
    rejected(conn, C.group_update("nope", {"comment": "x"}, ts=4.0), "missing")
    rejected(conn, C.group_update("g1", {}, ts=4.0), "invalid")
    rejected(conn, C.group_update("g1", {"comment": "x"}, delete=["comment"], ts=4.0), "invalid")


def test_stale_digest_is_refused_for_every_edit() -> None:
    conn = connect()
    base(conn)
    g, r, s = reads.group(conn, "g1"), reads.rule(conn, "r1"), reads.service(conn, "exec:a")
    dg, dr, ds = reads.digest(g), reads.digest(r), reads.digest(s)
    # the first writer with a current digest wins ...
    ok(conn, C.group_update("g1", {"comment": "one"}, digest=dg, ts=2.0))
    ok(conn, C.rule_update("r1", {"comment": "one"}, digest=dr, ts=2.0))
    ok(conn, C.resource_update("exec:a", {"comment": "one"}, digest=ds, ts=2.0))
    # ... and whoever read before it is refused, whole-object replacement or field edit
    for cmd in (C.group_update("g1", {"comment": "two"}, digest=dg, ts=3.0),
                C.make("group_set", name="g1", config={**g, "comment": "two"}, digest=dg, ts=3.0),
                C.rule_update("r1", {"disable": True}, digest=dr, ts=3.0),
                C.make("rule_set", rule_id="r1", rule={**r, "disable": True}, digest=dr, ts=3.0),
                C.resource_update("exec:a", {"state": "stopped"}, digest=ds, ts=3.0),
                C.resource_set("exec:a", {"state": "stopped"}, digest=ds, ts=3.0)):
        assert rejected(conn, cmd, "conflict") == C.DIGEST_MISMATCH
    assert reads.group(conn, "g1")["comment"] == "one"
    assert reads.service(conn, "exec:a")["state"] == "started"
    # a digest of a deleted object never matches
    ok(conn, C.resource_remove("exec:b", ts=4.0))
    rejected(conn, C.resource_set("exec:b", {"state": "stopped"}, digest=ds, ts=4.0), "missing")
    ok(conn, C.rule_remove("r1", ts=4.0))
    rejected(conn, C.make("rule_set", rule_id="r1", rule=r, digest=dr, ts=4.0), "conflict")


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


def test_rule_update_keeps_the_rule_well_formed() -> None:
    conn = connect()
    base(conn)
    ok(conn, C.rule_update("r1", {"strict": True}, ts=2.0))
    ok(conn, C.rule_update("r1", {"nodes": {"n2": 1}}, ts=2.0))
    assert reads.rule(conn, "r1") == {"type": "node-affinity", "resources": ["exec:a"], "nodes": {"n2": 1},
                                      "strict": True}
    rejected(conn, C.rule_update("r1", {"affinity": "negative"}, ts=3.0), "invalid")
    rejected(conn, C.make("rule_update", rule_id="r1", changes={"type": "resource-affinity"}, ts=3.0), "invalid")


# --- versions ------------------------------------------------------------------------------

def test_v1_commands_still_apply_and_v2_fields_need_v2() -> None:
    conn = connect()
    v1 = C.group_set("g1", {"nodes": {"n1": 1}}, ts=1.0)
    v1["v"] = 1
    ok(conn, v1)
    with_digest = C.make("group_set", name="g1", config={"nodes": {"n1": 2}}, digest="0" * 40, ts=2.0)
    with_digest["v"] = 1
    assert "unknown field(s) digest" in rejected(conn, with_digest, "invalid")
    new_op = C.dc_options_set({"crs": {"ha": "static"}}, ts=2.0)
    new_op["v"] = 1
    assert "unknown operation 'dc_options_set' in command version 1" in rejected(conn, new_op, "invalid")


def _v1_database(path: Path) -> None:
    """A state file exactly as harepl's schema version 1 created it, with some state."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("BEGIN")
    for stmt in schema.DDL.split(";"):
        if stmt.strip():
            conn.execute(stmt)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    conn.execute("INSERT INTO meta (key, value) VALUES ('applied_count', '0')")
    conn.execute("COMMIT")
    conn.execute("INSERT INTO groups (name, nodes, restricted, nofailback) VALUES ('g1', '{\"n1\":1}', 0, 0)")
    conn.close()


def test_existing_v1_data_dir_is_migrated_on_open_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _v1_database(path)
    conn = connect(str(path))
    assert schema.version(conn) == schema.SCHEMA_VERSION
    assert reads.group(conn, "g1") == {"nodes": {"n1": 1}, "restricted": False, "nofailback": False}
    ok(conn, C.dc_options_set({"ha": {"shutdown_policy": "failover"}}, ts=1.0))
    assert reads.datacenter(conn) == {"ha": {"shutdown_policy": "failover"}}


def test_v1_snapshot_restored_in_memory_upgrades_at_the_next_apply(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _v1_database(path)
    old = sqlite3.connect(path)
    blob = old.serialize()
    old.close()
    # what the Raft layer does with a received snapshot: deserialize into a live connection
    restored, fresh = connect(), connect()
    restored.deserialize(blob)
    restored.execute("PRAGMA foreign_keys = ON")
    assert schema.version(restored) == 1
    assert reads.datacenter(restored) == {} and reads.node_stats(restored) == {}
    fresh.deserialize(blob)
    cmds = [C.dc_options_set({"crs": {"ha": "static"}}, ts=1.0), C.node_stats_set("n1", 2, 1 << 30, ts=1.0)]
    for conn in (restored, fresh):
        for cmd in cmds:
            ok(conn, cmd)
    assert schema.version(restored) == schema.SCHEMA_VERSION
    assert reads.dump(restored) == reads.dump(fresh)
    assert reads.datacenter(restored) == {"crs": {"ha": "static"}}


def test_same_v2_commands_give_identical_databases() -> None:
    script = [
        C.group_set("g1", {"nodes": {"n1": 1}}, ts=1.0),
        C.dc_options_set({"ha": {"shutdown_policy": "migrate"}}, ts=1.0),
        C.dc_options_set({"crs": {"ha": "bogus"}}, ts=1.5),
        C.group_update("g1", {"comment": "a"}, ts=2.0),
        C.group_update("g1", {"restricted": True}, digest="f" * 40, ts=2.0),
        C.node_stats_set("n1", 2, 1 << 30, ts=3.0),
        C.node_stats_set("n2", 8, 16 << 30, ts=3.0),
        C.dc_options_set({"crs": {"ha": "static"}}, delete=["ha.shutdown_policy"], ts=4.0),
    ]
    dumps = []
    results = []
    for _ in range(2):
        conn = connect()
        results.append([apply(conn, C.encode(c)) for c in script])
        dumps.append(reads.dump(conn))
    assert dumps[0] == dumps[1] and results[0] == results[1]
    assert [r["ok"] for r in results[0]] == [True, True, False, True, False, True, True, True]
