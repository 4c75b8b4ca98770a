"""The vocabulary across domains: digests refuse every stale edit, version-1 commands and
databases keep working, version-2 commands replay identically."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from harepl.store import envelope, fields, reads, schema
from harepl.store import vocabulary as C
from harepl.store.apply import apply
from harepl.store.envelope import CommandError, Field, Op, Registry, optional, required
from harepl.store.schema import connect
from tests.store.applying import base, ok, rejected


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


# --- the registry ----------------------------------------------------------------------------

#: what every committed log was written in: version -> op -> fields in check order (? = optional).
#: A new version may only add to this; changing a line would change how old logs replay.
WIRE = {
    1: {"lease_acquire": "lease holder seen_epoch seen_seq", "lease_renew": "lease holder epoch",
        "lease_release": "lease holder epoch", "manager_status_set": "status epoch",
        "lrm_status_set": "node status epoch?", "crm_command_enqueue": "cmd epoch?",
        "crm_command_consume": "upto_seq epoch", "resource_add": "sid config epoch?",
        "resource_set": "sid changes delete? epoch?", "resource_remove": "sid epoch?",
        "resource_move": "sid from_node to_node epoch", "group_set": "name config epoch?",
        "group_remove": "name epoch?", "rule_set": "rule_id rule epoch?", "rule_remove": "rule_id epoch?",
        "node_add": "node addr? epoch?", "node_remove": "node epoch?", "noop": ""},
}
WIRE[2] = {**WIRE[1],
           "resource_set": "sid changes delete? epoch? digest?", "group_set": "name config epoch? digest?",
           "rule_set": "rule_id rule epoch? digest?",
           "group_update": "name changes delete? epoch? digest?",
           "rule_update": "rule_id changes delete? epoch? digest?",
           "resource_update": "sid changes delete? epoch? digest?",
           "dc_options_set": "options delete? epoch? digest?", "node_stats_set": "node maxcpu maxmem"}
WIRE[3] = {**WIRE[2], "resource_purge": "sid epoch?"}  # and dc_options_set's new values (same fields)


def test_every_version_of_the_vocabulary_is_what_its_logs_were_written_in() -> None:
    assert C.SUPPORTED_VERSIONS == tuple(WIRE)
    for version, ops in WIRE.items():
        declared = {}
        for name in C.REGISTRY.names():
            op = C.REGISTRY.lookup(name, version)
            if op is not None:
                declared[name] = " ".join(f + ("" if spec.required else "?") for f, spec in op.spec(version).items())
        assert declared == ops, version


def test_min_version_follows_the_since_of_the_op_and_of_each_field() -> None:
    assert C.min_version("group_set") == 1
    assert C.min_version("group_set", {"digest"}) == 2
    assert C.min_version("group_update", {"name", "changes"}) == 2
    assert C.min_version("group_set", {"bogus"}) == C.VERSION  # validate() names the problem
    assert C.make("resource_set", sid="vm:1", changes={}, digest=None)["v"] == 1  # None: left out


def test_an_op_redeclared_at_a_later_version_keeps_its_old_meaning_for_old_commands() -> None:
    def old(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
        return {"meaning": "old"}

    def new(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
        return {"meaning": "new"}

    first = Op("x_set", old, since=1, fields={"a": required(fields.name)})
    second = Op("x_set", new, since=2, fields={"b": required(fields.count)})
    registry = Registry([second, first])
    assert registry.lookup("x_set", 1) is first and registry.lookup("x_set", 2) is second
    assert envelope.validate({"v": 1, "id": "i", "op": "x_set", "ts": 0, "a": "n1"}, registry)["a"] == "n1"
    with pytest.raises(CommandError, match="unknown field"):
        envelope.validate({"v": 2, "id": "i", "op": "x_set", "ts": 0, "a": "n1"}, registry)
    assert envelope.min_version(registry, "x_set", {"b"}) == 2
    with pytest.raises(ValueError, match="declared twice"):
        Registry([first, first])


def test_fields_declared_before_their_op_appear_with_it() -> None:
    op = Op("y_set", lambda conn, c: {}, since=2, fields={"epoch": optional(fields.count)})
    assert op.fields["epoch"].since == 2
    with pytest.raises(ValueError):
        Op("z_set", lambda conn, c: {}, since=1, fields={"late": Field(fields.count, required=True, since=2)})
