"""`ha-manager datacenter show|set` and `--digest` against a real API on the real store."""

from __future__ import annotations

import json

import pytest

from harepl.runtime.api.local_backend import LocalApi
from harepl.store import reads
from harepl.store import vocabulary as C
from tests.cli.support import one_error_line


def test_show_defaults_then_set_and_show(api: LocalApi, ha) -> None:  # type: ignore[no-untyped-def]
    api.backend.apply_raw(C.node_stats_set("node1", 2, 4 << 30))
    shown = ha("datacenter", "show").output.splitlines()
    assert shown[:2] == ["ha: shutdown_policy=conditional (default)", "crs: ha=basic (default)"]
    assert shown[2] == f"digest: {reads.digest({})}"
    assert shown[3:] == ["node node1: maxcpu 2, maxmem 4.0 GiB", "node node2: no static stats published",
                         "node node3: no static stats published"]
    ha("datacenter", "set", "--shutdown-policy", "migrate", "--crs", "ha=static,ha-rebalance-on-start=1")
    assert api.backend.read_state().datacenter == {"ha": {"shutdown_policy": "migrate"},
                                                   "crs": {"ha": "static", "ha-rebalance-on-start": True}}
    shown = ha("datacenter", "show").output.splitlines()
    assert shown[:2] == ["ha: shutdown_policy=migrate", "crs: ha=static,ha-rebalance-on-start=1"]
    data = json.loads(ha("datacenter", "show", "--output-format", "json").output)
    assert data["options"]["crs"] == {"ha": "static", "ha-rebalance-on-start": True}
    assert data["node_stats"]["node1"] == {"maxcpu": 2, "maxmem": 4 << 30}
    ha("datacenter", "set", "--delete", "crs.ha-rebalance-on-start")
    ha("datacenter", "set", "--ha", "shutdown_policy=freeze")
    assert api.backend.read_state().datacenter == {"ha": {"shutdown_policy": "freeze"}, "crs": {"ha": "static"}}
    # status --verbose shows them with the full cluster state
    assert '"shutdown_policy": "freeze"' in ha("status", "--verbose").output


@pytest.mark.parametrize("args, fragment", [
    (["--shutdown-policy", "sometimes"], "ha.shutdown_policy: expected one of conditional, freeze, failover, migrate"),
    (["--crs", "ha=clairvoyant"], "crs.ha: expected one of basic, static, dynamic"),
    (["--crs", "ha-auto-rebalance-margin=2"], "crs.ha-auto-rebalance-margin: expected a number from 0 to 1"),
    (["--crs", "ha-auto-rebalance-threshold=x"], "crs.ha-auto-rebalance-threshold must be a number"),
    (["--crs", "ha-auto-rebalance-method=guess"],
     "crs.ha-auto-rebalance-method: expected one of bruteforce, topsis, exhaustive"),
    (["--crs", "scheduler=static"], "unknown datacenter option 'crs.scheduler'"),
    (["--delete", "ha.nope"], "cannot delete unknown datacenter option 'ha.nope'"),
    (["--shutdown-policy", "freeze", "--ha", "shutdown_policy=migrate"], "give the shutdown policy once"),
    ([], "nothing to change"),
])
def test_bad_datacenter_set_is_one_line_exit_2(api: LocalApi, ha, args: list[str],  # type: ignore[no-untyped-def]
                                               fragment: str) -> None:
    before = reads.applied_count(api.backend.conn)
    one_error_line(ha("datacenter", "set", *args, ok=False), 2, fragment)
    assert reads.applied_count(api.backend.conn) == before


def test_digest_option_refuses_a_stale_edit(api: LocalApi, ha) -> None:  # type: ignore[no-untyped-def]
    ha("groupadd", "web", "--nodes", "node1:2,node2")
    ha("add", "fa:1", "--group", "web")
    ha("add", "fa:2")  # fa:1 has its group's node-affinity rule already: one per resource
    ha("rules", "add", "node-affinity", "pin", "--resources", "fa:2", "--nodes", "node1")
    group = json.loads(ha("groupconfig", "--output-format", "json").output)[0]
    resource = json.loads(ha("config", "--output-format", "json").output)[0]
    rule = json.loads(ha("rules", "list", "--output-format", "json").output)[0]
    options = json.loads(ha("datacenter", "show", "--output-format", "json").output)["options"]
    ha("groupset", "web", "--comment", "one", "--digest", group["digest"])
    ha("set", "fa:1", "--comment", "one", "--digest", resource["digest"])
    ha("rules", "set", "node-affinity", "pin", "--comment", "one", "--digest", rule["digest"])
    ha("datacenter", "set", "--crs", "ha=static", "--digest", options["digest"])
    for args in (["groupset", "web", "--nofailback", "1", "--digest", group["digest"]],
                 ["set", "fa:1", "--state", "stopped", "--digest", resource["digest"]],
                 ["rules", "set", "node-affinity", "pin", "--strict", "1", "--digest", rule["digest"]],
                 ["datacenter", "set", "--crs", "ha=basic", "--digest", options["digest"]]):
        one_error_line(ha(*args, ok=False), 2, "config changed meanwhile (digest mismatch) - reload and retry")
    state = api.backend.read_state()
    assert state.groups["web"]["nofailback"] is False and state.resources["fa:1"]["state"] == "started"
    assert "strict" not in state.rules["pin"] or state.rules["pin"]["strict"] is False
    assert state.datacenter == {"crs": {"ha": "static"}}
    one_error_line(ha("groupset", "web", "--comment", "x", "--digest", "abc", ok=False), 2,
                   "digest must be the 40 hex digits")


def test_proxmox_crs_settings_are_accepted(api: LocalApi, ha) -> None:  # type: ignore[no-untyped-def]
    """Issue 9: crs ha=dynamic, the threshold, the margin and the method name bruteforce, as
    the simulator implements them; a command at version 3 only when a value needs it."""
    ha("datacenter", "set", "--crs", "ha=static,ha-auto-rebalance=1")
    assert [e for e in reads.events(api.backend.conn, 1)][-1]["op"] == "dc_options_set"
    ha("datacenter", "set", "--crs", "ha=dynamic,ha-auto-rebalance-threshold=0.25,ha-auto-rebalance-margin=0.2,"
       "ha-auto-rebalance-method=bruteforce,ha-auto-rebalance-hold-duration=6")
    assert api.backend.read_state().datacenter == {"crs": {
        "ha": "dynamic", "ha-auto-rebalance": True, "ha-auto-rebalance-threshold": 0.25,
        "ha-auto-rebalance-margin": 0.2, "ha-auto-rebalance-method": "bruteforce",
        "ha-auto-rebalance-hold-duration": 6}}
    assert C.dc_options_set({"crs": {"ha": "static"}})["v"] == 2
    assert C.dc_options_set({"crs": {"ha": "dynamic"}})["v"] == 3
    assert C.make("dc_options_set", options={"crs": {"ha-auto-rebalance-margin": 0.5}})["v"] == 3
    assert C.make("dc_options_set", options={"crs": {"ha": "basic"}})["v"] == 2
