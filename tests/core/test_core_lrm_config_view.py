"""LRM decisions, configuration parsing and the status view."""

from __future__ import annotations

import pytest

from harepl.core import lrm
from harepl.core.config import ConfigError, normalize_service_config, parse_groups, parse_rules
from harepl.core.status_view import format_status
from harepl.core.types import ERROR, ETRY_AGAIN, EWRONG_NODE, SUCCESS, ServiceStatus


@pytest.mark.parametrize(
    "shutdown, reboot, policy, manual, want_mode, want_stop",
    [
        (True, False, "conditional", False, "shutdown", True),
        (True, True, "conditional", False, "restart", True),  # reboot: stop + freeze
        (True, False, "freeze", False, "restart", True),
        (True, True, "failover", False, "shutdown", True),
        (True, False, "migrate", False, "maintenance", False),
        (False, False, "conditional", False, "restart", False),  # LRM restart: freeze only
        (True, False, "failover", True, "maintenance", False),  # manual maintenance wins
        (True, False, "bogus", False, "shutdown", True),
    ],
)
def test_shutdown_policies(shutdown, reboot, policy, manual, want_mode, want_stop) -> None:  # type: ignore[no-untyped-def]
    d = lrm.decide_shutdown(shutdown, reboot, policy, manual)
    assert (d.mode, d.stop_all) == (want_mode, want_stop)


@pytest.mark.parametrize(
    "cmd, code, tries, max_restart, want_code, want_tries",
    [
        ("started", SUCCESS, 1, 1, SUCCESS, 0),
        ("started", ERROR, 0, 1, ETRY_AGAIN, 1),  # retry locally first
        ("started", ERROR, 1, 1, ERROR, 0),  # retries used up: tell the CRM
        ("started", ERROR, 0, 0, ERROR, 0),
        ("request_stop", ERROR, 0, 1, ERROR, 0),  # the restart policy is for starts only
        ("started", EWRONG_NODE, 0, 1, EWRONG_NODE, 0),
    ],
)
def test_restart_policy(cmd, code, tries, max_restart, want_code, want_tries) -> None:  # type: ignore[no-untyped-def]
    got_code, got_tries, _ = lrm.handle_service_exitcode(cmd, code, tries, max_restart)
    assert (got_code, got_tries) == (want_code, want_tries)


def test_active_count_and_fence_request() -> None:
    ss: dict[str, ServiceStatus] = {
        "a": {"state": "started", "node": "n1", "uid": "1"},
        "b": {"state": "stopped", "node": "n1", "uid": "2"},
        "c": {"state": "freeze", "node": "n1", "uid": "3"},
        "d": {"state": "error", "node": "n1", "uid": "4"},
        "e": {"state": "fence", "node": "n2", "uid": "5"},
    }
    assert lrm.active_service_count(ss, "n1") == 1
    assert not lrm.is_fence_requested(ss, "n1", "online")
    assert lrm.is_fence_requested(ss, "n2", "online")
    assert lrm.is_fence_requested(ss, "n1", "fence")
    runs = lrm.services_to_run({**ss, "f": {"state": "recovery", "node": "n1", "uid": "6"}}, "n1")
    assert [r[0] for r in runs] == ["a", "b", "d"]  # not frozen, not in recovery


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"vm:1": {"state": "started"}}, "without assigned node"),
        ({"vm:1": {"node": "n1", "state": "running"}}, "unknown requested state"),
        ({"bad id": {"node": "n1"}}, "invalid resource id"),
        ({"vm:1": {"node": "n1", "max_restart": "x"}}, "expected an integer"),
    ],
)
def test_bad_service_config_is_one_clear_error(raw, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        normalize_service_config(raw)


def test_service_config_normalisation() -> None:
    sc = normalize_service_config({"vm:1": {"node": "n1", "state": "enabled", "max_restart": "2"}})
    assert sc["vm:1"] == {"type": "vm", "state": "started", "node": "n1", "max_restart": 2,
                          "max_relocate": 1, "failback": True}
    assert normalize_service_config({"ct:2": {"node": "n1"}})["ct:2"]["state"] == "disabled"


def test_section_config_errors() -> None:
    with pytest.raises(ConfigError, match="line 1"):
        parse_groups("not a section\n")
    with pytest.raises(ConfigError, match="unknown rule type"):
        parse_rules("weird: x\n\tresources vm:1\n")
    rules = parse_rules("node-affinity: r\n\tnodes n1:2,n2\n\tresources vm:1,vm:2\n\tstrict 1\n")
    assert rules["r"]["nodes"] == {"n1": 2, "n2": 0} and rules["r"]["strict"] is True


def test_status_view_format() -> None:
    lines = format_status(
        True,
        {"master_node": "node1", "timestamp": 100,
         "node_status": {"node1": "online", "node2": "online"},
         "service_status": {"vm:101": {"state": "started", "node": "node1", "uid": "u"},
                            "vm:102": {"state": "migrate", "node": "node1", "target": "node2", "uid": "v"}}},
        {"node1": {"state": "active", "mode": "active", "timestamp": 101},
         "node2": {"state": "wait_for_agent_lock", "mode": "active", "timestamp": 10}},
        {"vm:101": {"node": "node1", "state": "started"}, "vm:103": {"node": "node2", "state": "ignored"}},
        fmt_time=lambda t: f"T{t:g}", now=110, stale_after_s=60,
    )
    assert lines == [
        "quorum OK",
        "master node1 (active, T100)",
        "lrm node1 (active, T101)",
        "lrm node2 (old timestamp - dead?, T10)",
        "service vm:101 (node1, started)",
        "service vm:102 (node1, migrate to node2)",
        "service vm:103 (node2, ignored)",
    ]


def test_status_view_an_lrm_that_cannot_arm_its_watchdog() -> None:
    """Issue 10: a service the CRM wants started on a node whose LRM cannot arm its
    watchdog (so it starts nothing) is not shown as `started`."""
    lines = format_status(
        True,
        {"master_node": "node1", "timestamp": 100, "node_status": {"node1": "online", "node2": "online"},
         "service_status": {"vm:101": {"state": "started", "node": "node1", "uid": "u"},
                            "vm:102": {"state": "started", "node": "node2", "uid": "v"}}},
        {"node1": {"state": "wait_for_agent_lock", "mode": "active", "timestamp": 101,
                   "watchdog_error": "watchdog mux at /run/x.sock: [Errno 2] No such file or directory"},
         "node2": {"state": "active", "mode": "active", "timestamp": 101}},
        {}, fmt_time=lambda t: f"T{t:g}",
    )
    assert lines[2:] == [
        "lrm node1 (idle, cannot arm watchdog: watchdog mux at /run/x.sock: [Errno 2] No such file or directory, T101)",
        "lrm node2 (active, T101)",
        "service vm:101 (node1, start pending: its lrm cannot arm the watchdog)",
        "service vm:102 (node2, started)",
    ]


def test_status_view_shows_what_fence_devices_did() -> None:
    lines = format_status(True, {"master_node": "node1", "timestamp": 1, "node_status": {"node2": "fence"},
                                 "fence_status": {"node2": "every fence device failed 2 time(s) (x) - retrying, "
                                                           "level 1"}},
                          {}, {}, fmt_time=lambda t: "T")
    assert "fence node2 (every fence device failed 2 time(s) (x) - retrying, level 1)" in lines
