"""Issue 9 at the CLI, end to end on a real API server and store: every refusal of the
rule checker and every feedback of a move, exact text (Proxmox's words, one line)."""

from __future__ import annotations

import json
import time

from harepl.runtime.api.local_backend import LocalApi
from harepl.store import reads
from tests.cli.support import one_error_line


def _three(ha) -> None:  # type: ignore[no-untyped-def]
    for sid, node in (("exec:a", "node1"), ("exec:b", "node2"), ("exec:c", "node3")):
        ha("add", sid, "--command", "sleep 1000", "--node", node)


def _error(result) -> str:  # type: ignore[no-untyped-def]
    return result.output.strip().removeprefix("Error: ")


def test_together_then_apart_is_refused(api: LocalApi, ha) -> None:  # type: ignore[no-untyped-def]
    _three(ha)
    ha("rules", "add", "resource-affinity", "keep", "--resources", "exec:a,exec:b", "--affinity", "positive")
    res = ha("rules", "add", "resource-affinity", "apart", "--resources", "exec:a,exec:b",
             "--affinity", "negative", ok=False)
    one_error_line(res, 2, "")
    assert _error(res) == ("Rule 'apart' is invalid. resources: rule shares two or more resources with a "
                           "positive resource affinity rule (conflicts with 'keep')")
    assert sorted(reads.rules(api.backend.conn)) == ["keep"]      # nothing written


def test_each_check_refuses_add_and_set(api: LocalApi, ha) -> None:  # type: ignore[no-untyped-def]
    _three(ha)
    ha("add", "exec:d", "--command", "sleep 1000", "--node", "node1")
    cases = [
        (["resource-affinity", "lonely", "--resources", "exec:a", "--affinity", "negative"],
         "Rule 'lonely' is invalid. resources: rule is ineffective as there are less than two resources"),
        (["resource-affinity", "wide", "--resources", "exec:a,exec:b,exec:c,exec:d", "--affinity", "negative"],
         "Rule 'wide' is invalid. resources: rule defines more resources than available nodes"),
    ]
    for args, message in cases:
        res = ha("rules", "add", *args, ok=False)
        one_error_line(res, 2, "")
        assert _error(res) == message
    ha("rules", "add", "node-affinity", "pin-a", "--resources", "exec:a", "--nodes", "node1")
    res = ha("rules", "add", "node-affinity", "pin-a2", "--resources", "exec:a", "--nodes", "node2", ok=False)
    assert _error(res) == ("Rule 'pin-a2' is invalid. resources: resource 'exec:a' is already used in "
                           "another node affinity rule (conflicts with 'pin-a')")
    ha("rules", "add", "node-affinity", "pin-b", "--resources", "exec:b", "--nodes", "node1")
    res = ha("rules", "add", "resource-affinity", "ab-apart", "--resources", "exec:a,exec:b",
             "--affinity", "negative", ok=False)
    assert _error(res) == ("Rule 'ab-apart' is invalid. resources: two or more resources are restricted to "
                           "less nodes than available to the resources (conflicts with 'pin-a', 'pin-b')")
    res = ha("rules", "add", "resource-affinity", "ab-together", "--resources", "exec:a,exec:b",
             "--affinity", "positive", ok=False)
    assert _error(res) == ("Rule 'ab-together' is invalid. resources: resources are in multiple node affinity "
                           "rules (conflicts with 'pin-a', 'pin-b')")
    ha("rules", "add", "node-affinity", "prio-c", "--resources", "exec:c", "--nodes", "node1:2,node2")
    res = ha("rules", "add", "resource-affinity", "cd-apart", "--resources", "exec:c,exec:d",
             "--affinity", "negative", ok=False)
    assert _error(res) == ("Rule 'cd-apart' is invalid. resources: resources are in node affinity rules with "
                           "multiple priorities (conflicts with 'prio-c')")
    # set: a change that makes the rule infeasible is refused, nothing changes
    ha("rules", "add", "resource-affinity", "cd-together", "--resources", "exec:c,exec:d", "--affinity",
       "positive", "--disable")
    res = ha("rules", "set", "resource-affinity", "cd-together", "--disable", "0", ok=False)
    one_error_line(res, 2, "")
    assert _error(res) == ("Rule 'cd-together' is invalid. resources: resources are in node affinity rules "
                           "with multiple priorities (conflicts with 'prio-c')")
    assert reads.rules(api.backend.conn)["cd-together"]["disable"] is True


def test_rules_config_shows_ignored_with_errors(api: LocalApi, ha) -> None:  # type: ignore[no-untyped-def]
    _three(ha)
    ha("rules", "add", "resource-affinity", "ab", "--resources", "exec:a,exec:b", "--affinity", "positive")
    ha("remove", "exec:b")                                      # purge leaves 'ab' with one resource
    assert reads.rules(api.backend.conn)["ab"]["resources"] == ["exec:a"]
    rules = json.loads(ha("rules", "config", "--output-format", "json").output)
    assert rules[0]["errors"] == {"resources": "rule is ineffective as there are less than two resources"}
    config = ha("rules", "config").output.splitlines()
    assert [c.strip() for c in config[3].split("│")[1:-1]][:3] == ["1", "ignored (conflicts)", "ab"]


def test_remove_purges_rules(api: LocalApi, ha) -> None:  # type: ignore[no-untyped-def]
    _three(ha)
    ha("rules", "add", "resource-affinity", "abc", "--resources", "exec:a,exec:b,exec:c", "--affinity",
       "negative")
    ha("rules", "add", "node-affinity", "pin-a", "--resources", "exec:a", "--nodes", "node1")
    ha("remove", "exec:a")
    assert reads.rules(api.backend.conn) == {
        "abc": {"type": "resource-affinity", "resources": ["exec:b", "exec:c"], "affinity": "negative"}}
    ha("remove", "exec:b", "--purge", "0")                      # Proxmox's --purge 0: rules untouched
    assert reads.rules(api.backend.conn)["abc"]["resources"] == ["exec:b", "exec:c"]
    assert "exec:b" not in reads.service_config(api.backend.conn)


def _status(api: LocalApi, ss: dict) -> None:  # type: ignore[type-arg]
    api.backend.write_manager_status("node1", {
        "master_node": "node1", "timestamp": time.time(),
        "node_status": {"node1": "online", "node2": "online", "node3": "online"}, "service_status": ss})


def test_migrate_feedback(api: LocalApi, ha) -> None:  # type: ignore[no-untyped-def]
    _three(ha)
    ha("rules", "add", "resource-affinity", "apart", "--resources", "exec:a,exec:c", "--affinity", "negative")
    _status(api, {"exec:a": {"state": "started", "node": "node1", "uid": "1"},
                  "exec:b": {"state": "started", "node": "node2", "uid": "2"},
                  "exec:c": {"state": "started", "node": "node3", "uid": "3"}})
    res = ha("migrate", "exec:a", "node3", ok=False)
    one_error_line(res, 2, "")
    assert _error(res) == ("cannot migrate resource 'exec:a' to node 'node3': - resource 'exec:c' on target "
                           "node 'node3' in negative affinity with resource 'exec:a'")
    res = ha("crm-command", "relocate", "exec:a", "node3", ok=False)
    assert _error(res) == ("cannot relocate resource 'exec:a' to node 'node3': - resource 'exec:c' on target "
                           "node 'node3' in negative affinity with resource 'exec:a'")
    ha("rules", "add", "resource-affinity", "ab", "--resources", "exec:a,exec:b", "--affinity", "positive")
    res = ha("migrate", "exec:a", "node2")
    assert res.output == ("also migrate resource 'exec:b' in positive affinity with resource 'exec:a' to "
                          "target node 'node2'\n")
    data = json.loads(json.dumps(api.backend.read_state().resources["exec:a"]))
    assert data["node"] == "node1"


def test_ignored_resource_is_not_ha_managed(api: LocalApi, ha) -> None:  # type: ignore[no-untyped-def]
    ha("add", "exec:x", "--command", "sleep 1000", "--state", "ignored")
    for args in (["migrate", "exec:x", "node2"], ["relocate", "exec:x", "node2"],
                 ["crm-command", "stop", "exec:x", "0"]):
        res = ha(*args, ok=False)
        one_error_line(res, 2, "")
        assert _error(res) == "resource 'exec:x' is not HA managed"


def test_static_sizes_are_resource_parameters(api: LocalApi, ha) -> None:  # type: ignore[no-untyped-def]
    ha("add", "exec:big", "--command", "sleep 1000", "--param", "maxcpu=4", "--param", "maxmem=8G")
    assert api.backend.read_state().resources["exec:big"]["params"]["maxmem"] == "8G"
    res = ha("add", "exec:bad", "--command", "sleep 1000", "--param", "maxmem=lots", ok=False)
    one_error_line(res, 2, "")
    assert _error(res) == "parameter 'maxmem' must be a number (bytes, or with K/M/G/T), got 'lots'"
