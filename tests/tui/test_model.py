"""The TUI's pure parts: rows, the health bar, plain words, history bookkeeping, action
expectations, and the `harepl tui` command line."""

from __future__ import annotations

from click.testing import CliRunner

from harepl.cli.main import cli
from tui import actions, model, words


def snap(**manager: object) -> model.Snapshot:
    return model.Snapshot(
        status=[],
        manager={"quorum": {"node": "n1", "quorate": True},
                 "manager_status": {"master_node": "n1", "node_status": {"n1": "online", "n2": "fence"},
                                    "service_status": {"vm:100": {"state": "migrate", "node": "n2",
                                                                  "target": "n3"}}},
                 "lrm_status": {"n1": {"mode": "active", "state": "active", "timestamp": 1000.0},
                                "n2": {"mode": "maintenance", "state": "maintenance", "timestamp": 900.0}},
                 **manager},
        nodes=[{"node": "n1", "status": "online", "master": True, "lrm_mode": "active", "lrm_state": "active"},
               {"node": "n2", "status": "fence", "master": False, "lrm_mode": "maintenance",
                "lrm_state": "maintenance"}],
        resources=[{"sid": "vm:100", "state": "started", "node": "n1", "group": "g", "max_relocate": 2,
                    "errors": {"group": "group 'g' does not exist"}},
                   {"sid": "ct:101", "state": "stopped", "node": "n1"}],
        wall_time_s=1010.0)


def test_rows() -> None:
    s = snap()
    assert model.node_rows(s) == [
        ("n1", ("n1 ★", "● online", "● active", "active", "● armed", "~10s", "0")),
        ("n2", ("n2", "▲ fence", "✖ old timestamp", "maintenance", "?", "~110s", "1"))]
    assert model.service_rows(s) == [
        ("vm:100", ("vm:100", "● started", "→ migrate", "n2", "n3", "-/1", "0/2", "-", "-", "-")),
        ("ct:101", ("ct:101", "○ stopped", "… queued", "n1", "-", "-/1", "0/1", "-", "-", "-"))]
    with_leases = model.Snapshot(s.status, s.manager, s.nodes, s.resources, s.wall_time_s,
                                 lease_age={"n1": 0.4}, watchdog={"n1": "armed"}, restarts={"vm:100": 1})
    assert model.node_rows(with_leases)[0][1][4:6] == ("● armed", "0.4s")
    assert model.node_rows(with_leases)[1][1][4:6] == ("○ closed", "~110s")
    assert model.service_rows(with_leases)[0][1][5] == "1/1"


def test_health_bar() -> None:
    assert model.health_parts(snap()) == [
        ("✔ quorate", "ok"), ("master n1", "ok"), ("nodes 1/2 online (n2 fenced/unknown)", "bad"),
        ("fencing armed", "ok"), ("services 2: 1 migrate, 1 queued", "ok")]
    lost = snap(quorum={"node": "n1", "quorate": False})
    assert model.health_parts(lost)[0] == ("✖ NO QUORUM on n1", "bad")
    disarmed = snap(manager_status={"master_node": "n1", "disarm": {"mode": "freeze", "state": "disarmed"}})
    assert model.health_parts(disarmed)[3] == ("fencing disarmed (mode freeze)", "warn")
    devices = snap(datacenter={"ha": {"fencing": "both"}},
                   manager_status={"master_node": "n1", "fence_status": {"n2": "off confirmed by ipmi"}})
    assert model.health_parts(devices)[3] == ("fencing armed (both); n2: off confirmed by ipmi", "ok")
    no_watchdog = snap(lrm_status={"n1": {"mode": "active", "state": "active", "timestamp": 1009.0,
                                          "watchdog_error": "no /dev/watchdog"}})
    assert no_watchdog.watchdog_of("n1") == "error"


def test_words() -> None:
    assert [words.format_age(a) for a in (None, -1, 5.44, 119, 600, 9000)] == ["-", "0.0s", "5.4s", "119s",
                                                                               "10m", "2h"]
    assert [words.state_class(s) for s in ("● started", "→ migrate", "✖ error", "○ stopped", "fence")] == [
        "ok", "warn", "bad", "dim", "bad"]
    assert words.plain(["a", "b"]) == "a, b" and words.plain({"x": [1, 2]}) == "x 1, 2"
    assert words.plain(None) == "-" and words.plain(True) == "yes"
    line = words.event_line
    assert line({"op": "crm_command_enqueue", "detail": '{"cmd":"stop vm:1 30"}'}) == \
        "asked the CRM to stop vm:1 (timeout 30s)"
    assert line({"op": "dc_options_set", "detail": '{"options":{"ha":{"shutdown_policy":"migrate"}}}'}) == \
        "datacenter settings changed (ha: shutdown_policy migrate)"
    assert line({"op": "lrm_status_set", "ok": False, "detail": '{"node":"n1","error":"stale epoch"}'}) == \
        "REFUSED the LRM of n1 wrote its status (stale epoch)"
    assert line({"op": "future_op", "detail": '{"a":[1,2],"b":{"c":null}}'}) == "future op: a 1, 2, b c -"


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


def test_actions_describe_api_requests_and_their_outcome() -> None:
    a = actions.migrate("vm:100", "n3")
    assert (a.method, a.path, a.body, a.title) == ("POST", "/resources/vm:100/migrate", {"node": "n3"},
                                                   "migrate vm:100 to n3")
    assert actions.set_state("exec:a b", "disabled").path == "/resources/exec:a%20b"
    assert actions.stop("vm:1", 0).body == {"timeout": 0}
    assert actions.maintenance("n1", False).title == "disable maintenance on n1"
    s = snap()
    follow = actions.Follow(a, started_s=1000.0)
    assert follow.check(s) is None                              # moving
    done = snap(manager_status={"service_status": {"vm:100": {"state": "started", "node": "n3"}}})
    assert follow.check(done) == (True, "migrate vm:100 to n3: done: vm:100 is started on n3 (after 10.0s)")
    stayed = snap(manager_status={"service_status": {"vm:100": {"state": "started", "node": "n2"}}})
    assert follow.check(stayed) == (False, "migrate vm:100 to n3: FAILED: the CRM did not move vm:100: "
                                           "it is started on n2 (after 10.0s)")
    late = actions.Follow(actions.migrate("vm:100", "n3"), started_s=0.0)
    assert late.check(stayed) == (False, "migrate vm:100 to n3: not done after 1010s (still queued or under way)")


def test_cli_entry() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0 and "tui" in result.output
    result = runner.invoke(cli, ["tui", "--help"])
    assert result.exit_code == 0 and "--api" in result.output and "--read-only" in result.output
    for args, env, fragment in (
            (["tui", "--api", "https://h:1"], {}, "unsupported API address 'https://h:1'"),
            (["tui", "--api", "http://h:1"], {"HAREPL_TOKEN": ""}, "HAREPL_TOKEN is required"),
            (["tui"], {"HAREPL_API": "http://h:1", "HAREPL_TOKEN": ""}, "HAREPL_TOKEN is required"),
            (["tui", "--interval", "0"], {}, "--interval")):
        result = runner.invoke(cli, args, env=env)
        assert result.exit_code == 2, (args, result.output)
        assert fragment in result.output and "Traceback" not in result.output


def test_transitions_and_changes() -> None:
    old = snap()
    new = snap(manager_status={"master_node": "n2", "node_status": {"n1": "unknown", "n2": "fence"},
                               "service_status": {"vm:100": {"state": "started", "node": "n3"},
                                                  "ct:101": {"state": "stopped", "node": "n1"}}})
    new = model.Snapshot(new.status, new.manager, new.nodes, new.resources[:1], new.wall_time_s + 5)
    assert model.transitions(old, new) == [
        (None, "master changed from n1 to n2"),
        (None, "node n1: online → unknown"),
        ("ct:101", "service ct:101: now managed, stopped on n1"),
        ("vm:100", "service vm:100: migrate → started on n3 (was n2)"),
        ("ct:101", "service ct:101: removed from the configuration")]
    assert model.transitions(old, old) == []
    changes: dict[str, model.Change] = {}
    model.track_changes(old, new, changes)
    assert changes == {"vm:100": model.Change(1015.0, "started", "arrived from n2")}


def test_group_and_rule_rows() -> None:
    assert model.group_rows([{"group": "g", "nodes": {"a": 0, "b": 3, "c": 3}, "restricted": True,
                              "nofailback": False, "comment": "x"}]) == [
        ("g", ("g", "b:3,c:3,a", "yes", "no", "x"))]
    assert model.rule_rows([{"rule": "r", "type": "resource-affinity", "resources": ["vm:1", "vm:2"],
                             "affinity": "positive"}]) == [
        ("r", ("r", "resource-affinity", "vm:1,vm:2", "positive", "-", "enabled", ""))]
