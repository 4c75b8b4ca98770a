"""harepl.core.rules against Proxmox's own rule-checker tests (tests/core/pve_rules_cfgs,
copied from pve-ha-manager's src/test/rules_cfgs) and handwritten cases."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harepl.core import rules as R
from harepl.core.config import parse_rules
from harepl.core.placement import compile_rules

CFGS = Path(__file__).parent / "pve_rules_cfgs"
NODES = ["node1", "node2", "node3"]


def _expect(path: Path) -> tuple[list[str], dict, dict]:
    text = path.read_text()
    log = text.split("--- Log ---\n", 1)[1].split("--- Config ---\n", 1)[0]
    config, compiled = text.split("--- Config ---\n", 1)[1].split("--- Compiled Config ---\n", 1)
    return [line for line in log.splitlines() if line], json.loads(config), json.loads(compiled)


@pytest.mark.parametrize("cfg", sorted(p.name for p in CFGS.glob("*.cfg")))
def test_proxmox_rules_cfg(cfg: str) -> None:
    messages, config, compiled = _expect(CFGS / f"{cfg}.expect")
    # a bare boolean key ('disable' alone on its line) means 1 in Proxmox's section config;
    # harepl.core.config.parse_rules wants the value (its owner's to change)
    text = re.sub(r"(?m)^(\s+)(disable|strict)\s*$", r"\1\2 1", (CFGS / cfg).read_text())
    rules = parse_rules(text)
    out = R.transform(rules, NODES)
    assert out.messages == messages
    # the transformed rule set: the same ids, each with the same resources
    assert sorted(out.rules) == sorted(config["ids"])
    for rid, rule in config["ids"].items():
        assert out.rules[rid].resources == set(rule["resources"]), rid
    c = compile_rules(rules, NODES)
    want_na = {sid: {n: p["priority"] for n, p in v["nodes"].items()}
               for sid, v in compiled["node-affinity"].items()}
    assert {sid: dict(v) for sid, v in c.node_affinity.items()} == want_na
    ra = compiled["resource-affinity"]
    assert {k: set(v) for k, v in c.positive.items()} == {k: set(v) for k, v in ra["positive"].items()}
    assert {k: set(v) for k, v in c.negative.items()} == {k: set(v) for k, v in ra["negative"].items()}


def _ra(affinity: str, *sids: str) -> dict:
    return {"type": "resource-affinity", "affinity": affinity, "resources": list(sids)}


def test_together_and_apart_both_refused() -> None:
    rules = {"keep": _ra("positive", "exec:a", "exec:b"), "apart": _ra("negative", "exec:a", "exec:b")}
    errors = R.check_feasibility(rules, NODES)
    assert errors == {
        "keep": {"resources": ["rule shares two or more resources with a negative resource affinity rule"]},
        "apart": {"resources": ["rule shares two or more resources with a positive resource affinity rule"]},
    }
    c = compile_rules(rules, NODES)
    assert not c.positive and not c.negative
    assert R.invalid_rule_message("apart", R.joined_errors(errors["apart"])) == (
        "Rule 'apart' is invalid. resources: rule shares two or more resources with a positive "
        "resource affinity rule")


def test_disabled_rules_are_not_checked() -> None:
    rules = {"keep": _ra("positive", "a:1", "a:2"), "apart": {**_ra("negative", "a:1", "a:2"), "disable": True}}
    assert R.check_feasibility(rules, NODES) == {}
    assert compile_rules(rules, NODES).positive == {"a:1": frozenset({"a:2"}), "a:2": frozenset({"a:1"})}


def test_second_node_affinity_rule_for_a_resource() -> None:
    rules = {"r1": {"type": "node-affinity", "resources": ["a:1"], "nodes": {"node1": 0}},
             "r2": {"type": "node-affinity", "resources": ["a:1"], "nodes": {"node2": 0}}}
    out = R.transform(rules, NODES)
    assert out.messages == [
        "Drop rule 'r1', because resource 'a:1' is already used in another node affinity rule.",
        "Drop rule 'r2', because resource 'a:1' is already used in another node affinity rule.",
    ]
    assert compile_rules(rules, NODES).node_affinity == {}


def test_purge_resource() -> None:
    rules = {"two": _ra("positive", "a:1", "a:2"), "one": {"type": "node-affinity", "resources": ["a:1"],
                                                           "nodes": {"node1": 0}},
             "other": _ra("negative", "a:2", "a:3")}
    assert R.purge_resource(rules, "a:1") == ({"two": ["a:2"]}, ["one"])
