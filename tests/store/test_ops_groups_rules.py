"""ops.groups_rules on a real SQLite state: field-level edits of groups and rules."""

from __future__ import annotations

from harepl.store import reads
from harepl.store import vocabulary as C
from harepl.store.schema import connect
from tests.store.applying import base, ok, rejected


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


def test_rule_update_keeps_the_rule_well_formed() -> None:
    conn = connect()
    base(conn)
    ok(conn, C.rule_update("r1", {"strict": True}, ts=2.0))
    ok(conn, C.rule_update("r1", {"nodes": {"n2": 1}}, ts=2.0))
    assert reads.rule(conn, "r1") == {"type": "node-affinity", "resources": ["exec:a"], "nodes": {"n2": 1},
                                      "strict": True}
    rejected(conn, C.rule_update("r1", {"affinity": "negative"}, ts=3.0), "invalid")
    rejected(conn, C.make("rule_update", rule_id="r1", changes={"type": "resource-affinity"}, ts=3.0), "invalid")
