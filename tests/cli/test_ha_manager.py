"""`ha-manager` end to end: click's CliRunner against a real API server on the real store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
from click.testing import CliRunner

from harepl.cli.ha_manager import cli
from harepl.runtime.api.local_backend import LocalApi
from harepl.store import reads
from tests.cli.support import one_error_line


def test_add_config_set_remove(api: LocalApi, ha) -> None:  # type: ignore[no-untyped-def]
    ha("add", "exec:web", "--command", "sleep 1000", "--node", "node2", "--max_restart", "3",
       "--comment", "front end", "--param", "stop_timeout_s=5")
    ha("add", "ocf:dummy", "--agent", "heartbeat/Dummy", "--state", "stopped", "--failback", "0")
    assert api.backend.read_state().resources["exec:web"]["params"] == {"command": "sleep 1000",
                                                                         "stop_timeout_s": "5"}
    assert ha("config").output == (
        "exec:web\n\tcomment front end\n\tfailback 1\n\tmax_relocate 1\n\tmax_restart 3\n\tnode node2\n"
        "\tstate started\n\tcommand sleep 1000\n\tparam stop_timeout_s=5\n\n"
        "ocf:dummy\n\tfailback 0\n\tmax_relocate 1\n\tmax_restart 1\n\tnode node1\n"
        "\tstate stopped\n\tagent heartbeat/Dummy\n\n")
    ha("set", "exec:web", "--state", "disabled", "--delete", "comment", "--max-relocate", "2")
    cfg = api.backend.read_state().resources["exec:web"]
    assert cfg["state"] == "disabled" and cfg["max_relocate"] == 2 and "comment" not in cfg
    data = json.loads(ha("config", "--output-format", "json", "--type", "ocf").output)
    assert [r["sid"] for r in data] == ["ocf:dummy"]
    ha("remove", "exec:web")
    assert set(api.backend.read_state().resources) == {"ocf:dummy"}


def test_status_lines(api: LocalApi, ha) -> None:  # type: ignore[no-untyped-def]
    now = time.time()
    ha("add", "exec:web", "--command", "sleep 1000", "--node", "node2")
    api.backend.write_manager_status("node1", {
        "master_node": "node1", "timestamp": now,
        "node_status": {"node1": "online", "node2": "online"},
        "service_status": {"exec:web": {"state": "started", "node": "node2", "uid": "x", "running": 1}}})
    for node in ("node1", "node2"):
        api.backend.write_lrm_status(node, {"mode": "active", "state": "active", "results": {},
                                            "timestamp": now})
    stamp = time.ctime(now)
    assert ha("status").output == (
        f"quorum OK\nmaster node1 (active, {stamp})\nlrm node1 (active, {stamp})\n"
        f"lrm node2 (active, {stamp})\nservice exec:web (node2, started)\n")
    verbose = ha("status", "--verbose").output
    head, _, full = verbose.partition("full cluster state:\n")
    assert head.startswith("quorum OK\n")
    state = json.loads(full)
    assert state["manager_status"]["master_node"] == "node1"
    assert state["lrm_status"]["node2"]["state"] == "active"
    assert full.splitlines()[1].startswith("   \"")   # Perl's JSON pretty-printer indents by 3
    entries = json.loads(ha("status", "--output-format", "json").output)
    assert entries[-1]["sid"] == "exec:web" and entries[-1]["state"] == "started"


def test_crm_commands(api: LocalApi, ha) -> None:  # type: ignore[no-untyped-def]
    ha("add", "fa:100")
    ha("migrate", "fa:100", "node2")
    ha("relocate", "fa:100", "node3")
    ha("crm-command", "migrate", "fa:100", "node3")
    ha("crm-command", "stop", "fa:100", "0")
    ha("crm-command", "node-maintenance", "enable", "node2")
    ha("crm-command", "node-maintenance", "disable", "node2")
    assert [cmd for _seq, cmd in reads.crm_commands(api.backend.conn)] == [
        "migrate fa:100 node2", "relocate fa:100 node3", "migrate fa:100 node3", "stop fa:100 0",
        "enable-node-maintenance node2", "disable-node-maintenance node2"]


def test_groups(api: LocalApi, ha) -> None:  # type: ignore[no-untyped-def]
    ha("groupadd", "web", "--nodes", "node1:2,node2", "--restricted")
    ha("groupadd", "db", "--nodes", "node3", "--nofailback", "1", "--comment", "databases")
    assert ha("groupconfig").output == (
        "group: db\n\tcomment databases\n\tnodes node3\n\tnofailback 1\n\trestricted 0\n\n"
        "group: web\n\tnodes node1:2,node2\n\tnofailback 0\n\trestricted 1\n\n")
    ha("groupset", "web", "--nodes", "node2:5,node3:1", "--restricted", "0")
    assert api.backend.read_state().groups["web"] == {"nodes": {"node2": 5, "node3": 1},
                                                      "restricted": False, "nofailback": False}
    ha("add", "fa:1", "--group", "web")
    one_error_line(ha("groupremove", "web", ok=False), 2, "HA group 'web' is used by resource(s) fa:1")
    ha("groupremove", "db")
    assert [g["group"] for g in json.loads(ha("groupconfig", "--output-format", "json").output)] == ["web"]


def test_rules(api: LocalApi, ha) -> None:  # type: ignore[no-untyped-def]
    ha("add", "fa:1")
    ha("add", "fa:2")
    ha("add", "fa:3")
    ha("rules", "add", "resource-affinity", "apart", "--resources", "fa:1,fa:2", "--affinity", "negative")
    ha("rules", "add", "node-affinity", "pin", "--resources", "fa:3", "--nodes", "node1:2,node2",
       "--strict", "--comment", "keep it home")
    listed = ha("rules", "list").output.splitlines()
    assert [c.strip() for c in listed[1].split("│")[1:-1]] == ["rule", "type", "resources", "nodes", "strict",
                                                               "affinity", "comment"]
    assert [c.strip() for c in listed[3].split("│")[1:-1]] == ["apart", "resource-affinity", "fa:1,fa:2",
                                                               "", "", "negative", ""]
    assert [c.strip() for c in listed[5].split("│")[1:-1]] == ["pin", "node-affinity", "fa:3", "node1:2,node2",
                                                               "1", "", "keep it home"]
    config = ha("rules", "config").output.splitlines()
    assert config[1].split("│")[1:-1] == [" enabled ", " state  ", " rule  ", " type              ",
                                          " resources ", " comment      "]
    assert [c.strip() for c in config[3].split("│")[1:-1]] == ["1", "in use", "apart", "resource-affinity",
                                                               "fa:1,fa:2", ""]
    ha("rules", "set", "node-affinity", "pin", "--disable")
    rules = json.loads(ha("rules", "config", "--output-format", "json").output)
    assert [r["rule"] for r in rules if r.get("disable")] == ["pin"]
    one_error_line(ha("rules", "set", "resource-affinity", "pin", "--disable", "0", ok=False), 2,
                   "type cannot change")
    ha("rules", "remove", "apart")
    assert [r["rule"] for r in json.loads(ha("rules", "list", "--output-format", "json").output)] == ["pin"]


def test_events(api: LocalApi, ha) -> None:  # type: ignore[no-untyped-def]
    ha("add", "fa:7")
    api.backend.write_lrm_status("node1", {"mode": "active", "state": "active", "results": {}})
    assert "lrm_status_set" not in ha("events").output
    assert "lrm_status_set" in ha("events", "--all").output
    ha("add", "fa:8")
    lines = ha("events").output.splitlines()
    assert lines[-1].split("\t")[2] == "resource_add" and "fa:8" in lines[-1]
    latest = json.loads(ha("events", "--output-format", "json", "--limit", "1").output)
    assert [e["op"] for e in latest] == ["resource_add"]
    first = json.loads(ha("events", "--output-format", "json", "--after", "0", "--limit", "1").output)
    assert [e["seq"] for e in first] == [1]


@pytest.mark.parametrize("args, code, fragment", [
    (["add", "bogus:1"], 2, "unknown service type 'bogus'"),
    (["add", "exec:web"], 2, "needs a non-empty parameter 'command'"),
    (["add", "fa:1", "--param", "novalue"], 2, "--param needs KEY=VALUE"),
    (["add", "exec:x", "--command", "a", "--param", "command=b"], 2, "give command once"),
    (["add", "fa:1", "--node", "node9"], 2, "no such cluster node 'node9'"),
    (["set", "fa:404", "--state", "stopped"], 2, "no such resource 'fa:404'"),
    (["remove", "fa:404"], 2, "no such resource 'fa:404'"),
    (["migrate", "fa:404", "node2"], 2, "no such resource 'fa:404'"),
    (["groupset", "nogroup", "--comment", "x"], 2, "no such HA group 'nogroup'"),
    (["rules", "remove", "norule"], 2, "HA rule 'norule' does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(api: LocalApi, ha, args: list[str], code: int,  # type: ignore[no-untyped-def]
                                          fragment: str) -> None:
    before = reads.applied_count(api.backend.conn)
    one_error_line(ha(*args, ok=False), code, fragment)
    assert reads.applied_count(api.backend.conn) == before


def test_click_usage_errors_exit_2(ha) -> None:  # type: ignore[no-untyped-def]
    result = ha("add", "fa:1", "--state", "running", ok=False)
    assert result.exit_code == 2 and "Invalid value for '--state'" in result.output
    result = ha("crm-command", "stop", "fa:1", "-3", ok=False)
    assert result.exit_code == 2
    result = ha("status", "--output-format", "xml", ok=False)
    assert result.exit_code == 2


def test_daemon_unreachable_is_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    missing = str(tmp_path / "none.sock")
    result = runner.invoke(cli, ["status"], env={"HAREPL_API": missing})
    one_error_line(result, 1, f"cannot reach the harepl daemon at {missing}")
    result = runner.invoke(cli, ["status"], env={"HAREPL_API": "http://127.0.0.1:1", "HAREPL_TOKEN": "t"})
    one_error_line(result, 1, "cannot reach the harepl daemon at http://127.0.0.1:1")
    result = runner.invoke(cli, ["status"], env={"HAREPL_API": "http://127.0.0.1:1", "HAREPL_TOKEN": ""})
    one_error_line(result, 2, "HAREPL_TOKEN is required")


def test_tcp_with_token() -> None:
    path = tempfile.mkdtemp(prefix="hcli-", dir="/tmp")
    try:
        with LocalApi(path, tcp=("127.0.0.1", 0), token="tok-123") as running:
            host, port = running.handle.tcp_address  # type: ignore[misc]
            runner = CliRunner()
            env = {"HAREPL_API": f"http://{host}:{port}", "HAREPL_TOKEN": "tok-123"}
            assert runner.invoke(cli, ["add", "fa:9"], env=env).exit_code == 0
            assert runner.invoke(cli, ["status"], env=env).output.startswith("quorum OK\n")
            bad = runner.invoke(cli, ["status"], env={**env, "HAREPL_TOKEN": "nope"})
            one_error_line(bad, 2, "missing or wrong API token")
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_installed_entry_point_as_a_real_process(api: LocalApi) -> None:
    exe = os.path.join(os.path.dirname(sys.executable), "ha-manager")
    env = {**os.environ, "HAREPL_API": api.socket_path}
    done = subprocess.run([exe, "add", "fa:42", "--comment", "from a process"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    shown = subprocess.run([exe, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert shown.stdout == "quorum OK\nservice fa:42 (node1, queued)\n"
    bad = subprocess.run([exe, "migrate", "fa:42", "node9"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == "Error: no such cluster node 'node9'\n"
