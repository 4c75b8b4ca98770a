"""The TUI's pure parts: rows, ages, history bookkeeping, and the `harepl tui` command line."""

from __future__ import annotations

from click.testing import CliRunner

from harepl.cli.main import cli
from tui import actions, model


def snap(**manager: object) -> model.Snapshot:
    return model.Snapshot(
        status=[{"type": "quorum", "status": "OK", "quorate": 1},
                {"type": "service", "sid": "vm:100", "node": "n2", "state": "migrate to n3"}],
        manager={"quorum": {"node": "n1", "quorate": True},
                 "manager_status": {"master_node": "n1", "node_status": {"n1": "online", "n2": "fence"},
                                    "service_status": {"vm:100": {"state": "migrate", "node": "n2"}}},
                 "lrm_status": {"n1": {"mode": "active", "state": "active", "timestamp": 1000.0},
                                "n2": {"mode": "maintenance", "state": "maintenance", "timestamp": 900.0}},
                 **manager},
        nodes=[{"node": "n1", "status": "online", "master": True, "lrm_mode": "active", "lrm_state": "active"},
               {"node": "n2", "status": "fence", "master": False, "lrm_mode": "maintenance",
                "lrm_state": "maintenance"}],
        resources=[{"sid": "vm:100", "state": "started", "node": "n1", "group": "g",
                    "errors": {"group": "group 'g' does not exist"}},
                   {"sid": "ct:101", "state": "stopped", "node": "n1"}],
        wall_time_s=1010.0)


def test_rows() -> None:
    s = snap()
    assert model.node_rows(s) == [("n1", ("n1 ★", "online", "active", "10s")),
                                  ("n2", ("n2", "fence", "old timestamp - dead?", "110s"))]
    assert model.service_rows(s) == [("vm:100", ("vm:100", "n2", "migrate to n3", "started", "g (missing)")),
                                     ("ct:101", ("ct:101", "n1", "queued", "stopped", "-"))]
    assert [(label, kind) for label, _, kind in model.header_parts(s)] == [
        ("quorum", "ok"), ("master", "ok"), ("nodes", "warn"), ("services", ""), ("api node", "")]
    assert model.header_parts(s)[2][1] == "1/2 online"


def test_format_age_and_state_class() -> None:
    assert [model.format_age(a) for a in (None, -1, 5.4, 119, 600, 9000)] == ["-", "0s", "5s", "119s", "10m", "2h"]
    assert [model.state_class(s) for s in ("started", "migrate to n3", "error", "disabled", "fence")] == [
        "ok", "warn", "bad", "dim", "bad"]


def test_event_log_is_incremental_and_hides_status_writes() -> None:
    log = model.EventLog()
    evs = [{"seq": 1, "op": "resource_add", "ok": True, "detail": '{"sid":"vm:100","config":{}}'},
           {"seq": 2, "op": "lrm_status_set", "ok": True, "detail": '{"node":"n1","epoch":1}'},
           {"seq": 3, "op": "crm_command_enqueue", "ok": True, "detail": '{"cmd":"migrate vm:100 n2"}'},
           {"seq": 4, "op": "lrm_status_set", "ok": False, "detail": '{"error":"stale epoch"}'}]
    assert log.add(evs) == 3
    assert log.add(evs) == 0                                    # seen already: ignored
    assert log.last_seq == 4 and log.status_writes == 1
    assert [e["seq"] for e in log.for_service("vm:100")] == [1, 3]
    assert [e["seq"] for e in log.for_service("vm:10")] == []
    assert model.event_summary(evs[2]) == "migrate vm:100 n2"
    assert model.event_summary(evs[3]) == "REJECTED error=stale epoch"


def test_actions_describe_api_requests() -> None:
    a = actions.migrate("vm:100", "n2")
    assert (a.method, a.path, a.body, a.title) == ("POST", "/resources/vm:100/migrate", {"node": "n2"},
                                                   "migrate vm:100 to n2")
    assert actions.set_state("exec:a b", "disabled").path == "/resources/exec:a%20b"
    assert actions.stop("vm:1", 0).body == {"timeout": 0}
    assert actions.maintenance("n1", False).title == "disable maintenance on n1"


def test_cli_entry() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0 and "tui" in result.output
    result = runner.invoke(cli, ["tui", "--help"])
    assert result.exit_code == 0 and "--api" in result.output
    for args, env, fragment in (
            (["tui", "--api", "https://h:1"], {}, "unsupported API address 'https://h:1'"),
            (["tui", "--api", "http://h:1"], {"HAREPL_TOKEN": ""}, "HAREPL_TOKEN is required"),
            (["tui"], {"HAREPL_API": "http://h:1", "HAREPL_TOKEN": ""}, "HAREPL_TOKEN is required"),
            (["tui", "--interval", "0"], {}, "--interval")):
        result = runner.invoke(cli, args, env=env)
        assert result.exit_code == 2, (args, result.output)
        assert fragment in result.output and "Traceback" not in result.output


def test_transitions() -> None:
    old = snap()
    new = snap(manager_status={"master_node": "n2", "node_status": {"n1": "unknown", "n2": "fence"},
                               "service_status": {"vm:100": {"state": "started", "node": "n3"},
                                                  "ct:101": {"state": "stopped", "node": "n1"}}})
    new = model.Snapshot(new.status, new.manager, new.nodes, new.resources[:1], new.wall_time_s)
    assert model.transitions(old, new) == [
        (None, "master changed from 'n1' to 'n2'"),
        (None, "node 'n1': state changed from 'online' => 'unknown'"),
        ("ct:101", "service 'ct:101': now managed, state 'stopped' on 'n1'"),
        ("vm:100", "service 'vm:100': state changed from 'migrate' to 'started'"),
        ("vm:100", "service 'vm:100': node changed from 'n2' to 'n3'"),
        ("ct:101", "service 'ct:101': removed from the configuration")]
    assert model.transitions(old, old) == []
    log = model.EventLog()
    assert log.observe(model.transitions(old, new), 5.0) == 6 and log.version == 1
    assert [e["detail"]["text"] for e in log.for_service("vm:100")] == [
        "service 'vm:100': state changed from 'migrate' to 'started'",
        "service 'vm:100': node changed from 'n2' to 'n3'"]


def test_group_and_rule_rows() -> None:
    assert model.group_rows([{"group": "g", "nodes": {"a": 0, "b": 3, "c": 3}, "restricted": True,
                              "nofailback": False, "comment": "x"}]) == [
        ("g", ("g", "b:3,c:3,a", "yes", "no", "x"))]
    assert model.rule_rows([{"rule": "r", "type": "resource-affinity", "resources": ["vm:1", "vm:2"],
                             "affinity": "positive"}]) == [
        ("r", ("r", "resource-affinity", "vm:1,vm:2", "positive", "-", "enabled", ""))]
