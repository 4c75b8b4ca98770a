"""ops.groups_rules.resource_purge (version 3): a resource out of the config and out of
every rule at once, as Proxmox's delete_service_from_config with purge."""

from __future__ import annotations

from harepl.store import reads
from harepl.store import vocabulary as C
from harepl.store.schema import connect
from tests.store.applying import ok, rejected


def test_purge_removes_the_resource_from_every_rule_in_one_command() -> None:
    conn = connect()
    for sid in ("exec:a", "exec:b", "exec:c"):
        ok(conn, C.resource_add(sid, {"type": "exec", "state": "started", "node": "n1"}, ts=1.0))
    ok(conn, C.rule_set("abc", {"type": "resource-affinity", "resources": ["exec:a", "exec:b", "exec:c"],
                                "affinity": "negative"}, ts=1.0))
    ok(conn, C.rule_set("ab", {"type": "resource-affinity", "resources": ["exec:a", "exec:b"],
                               "affinity": "positive"}, ts=1.0))
    ok(conn, C.rule_set("pin", {"type": "node-affinity", "resources": ["exec:a"], "nodes": {"n1": 0}}, ts=1.0))
    ok(conn, C.rule_set("other", {"type": "node-affinity", "resources": ["exec:c"], "nodes": {"n1": 0}}, ts=1.0))
    cmd = C.resource_purge("exec:a", ts=2.0)
    assert cmd["v"] == 3
    result = ok(conn, cmd)
    assert (result["rules_updated"], result["rules_deleted"]) == (["ab", "abc"], ["pin"])
    assert "exec:a" not in reads.service_config(conn)
    rules = reads.rules(conn)
    assert sorted(rules) == ["ab", "abc", "other"]
    assert rules["ab"]["resources"] == ["exec:b"]             # left with one: shown ignored, as Proxmox
    assert rules["abc"]["resources"] == ["exec:b", "exec:c"]
    rejected(conn, C.resource_purge("exec:a", ts=3.0), "missing")
