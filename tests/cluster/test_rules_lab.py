"""Issue 9 on a real 3-node lab (daemons, Raft store, the `ha-manager` binary): every
refusal and feedback of the rule checker and of moves, exact text and exit code, and
the CRM dropping a rule that became infeasible (after `remove --purge`)."""

from __future__ import annotations

import json

import pytest

from tests.cluster.labtools import Cluster, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


def _refused(proc, text: str) -> None:  # type: ignore[no-untyped-def]
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.strip() == f"Error: {text}", proc.stderr


def test_rule_checker_and_moves_on_a_lab(cluster: Cluster) -> None:
    for sid, node in (("exec:a", "node1"), ("exec:b", "node2"), ("exec:c", "node3")):
        cluster.add_exec("node1", sid, node)
    for sid, node in (("exec:a", "node1"), ("exec:b", "node2"), ("exec:c", "node3")):
        cluster.wait_running(sid, node)

    cluster.ha("node1", "rules", "add", "resource-affinity", "keep", "--resources", "exec:a,exec:b",
               "--affinity", "positive")
    _refused(cluster.ha("node2", "rules", "add", "resource-affinity", "apart", "--resources", "exec:a,exec:b",
                        "--affinity", "negative", check=False),
             "Rule 'apart' is invalid. resources: rule shares two or more resources with a positive resource "
             "affinity rule (conflicts with 'keep')")
    cluster.ha("node1", "rules", "add", "node-affinity", "pin-c", "--resources", "exec:c", "--nodes", "node3")
    _refused(cluster.ha("node3", "rules", "add", "node-affinity", "pin-c2", "--resources", "exec:c",
                        "--nodes", "node1", check=False),
             "Rule 'pin-c2' is invalid. resources: resource 'exec:c' is already used in another node affinity rule "
             "(conflicts with 'pin-c')")
    rules = json.loads(cluster.ha("node2", "rules", "list", "--output-format", "json").stdout)
    assert sorted(r["rule"] for r in rules) == ["keep", "pin-c"] and not any("errors" in r for r in rules)

    # the positive pair comes together (exec:b to exec:a or the other way)
    wait_for(lambda: cluster.running_on("exec:a") == cluster.running_on("exec:b") is not None, "a and b together")
    cluster.ha("node1", "rules", "add", "resource-affinity", "ac-apart", "--resources", "exec:a,exec:c",
               "--affinity", "negative")
    here = cluster.running_on("exec:a")
    assert here in ("node1", "node2")
    _refused(cluster.ha("node1", "migrate", "exec:a", "node3", check=False),
             "cannot migrate resource 'exec:a' to node 'node3': - resource 'exec:c' on target node 'node3' in "
             "negative affinity with resource 'exec:a'")
    other = "node2" if here == "node1" else "node1"
    moved = cluster.ha("node3", "migrate", "exec:a", other)
    assert moved.stdout == (f"also migrate resource 'exec:b' in positive affinity with resource 'exec:a' to "
                            f"target node '{other}'\n")
    cluster.wait_running("exec:a", other)
    cluster.wait_running("exec:b", other)

    # remove (purge by default): 'keep' is left with exec:b alone - shown and dropped as infeasible
    cluster.ha("node2", "remove", "exec:a")
    rules = {r["rule"]: r for r in json.loads(cluster.ha("node1", "rules", "list", "--output-format", "json").stdout)}
    assert rules["keep"]["resources"] == ["exec:b"] and rules["ac-apart"]["resources"] == ["exec:c"]
    assert rules["keep"]["errors"] == {"resources": "rule is ineffective as there are less than two resources"}
    config = cluster.ha("node1", "rules", "config").stdout
    assert "ignored (conflicts)" in config
    master = cluster.manager_status("node1")["manager_status"]["master_node"]
    wait_for(lambda: "Drop rule 'keep', because rule is ineffective as there are less than two resources."
             in cluster.log(master), "the CRM dropping 'keep'")

    cluster.ha("node1", "add", "exec:x", "--command", "sleep 1000", "--state", "ignored")
    _refused(cluster.ha("node1", "migrate", "exec:x", "node2", check=False), "resource 'exec:x' is not HA managed")
