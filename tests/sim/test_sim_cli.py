"""`harepl sim run`: exit codes, one-line errors, invariants, no writes into the scenario.

Scenarios are built here in Proxmox's folder format (our own, small).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from harepl.cli.main import cli
from harepl.sim.cli import run_scenario

HW3 = {n: {"power": "off", "network": "off"} for n in ("node1", "node2", "node3")}


def make_scenario(tmp_path: Path, cmdlist: object, services: object = None, **files: str) -> Path:
    d = tmp_path / "scen"
    d.mkdir()
    (d / "hardware_status").write_text(json.dumps(HW3))
    (d / "cmdlist").write_text(json.dumps(cmdlist) if not isinstance(cmdlist, str) else cmdlist)
    (d / "service_config").write_text(json.dumps(services if services is not None else {
        "vm:101": {"node": "node1", "state": "started"},
        "vm:103": {"node": "node3", "state": "started"},
    }))
    (d / "manager_status").write_text("{}")
    for name, text in files.items():
        (d / name.replace("_cfg", ".cfg")).write_text(text)
    return d


def run(args: list[str]) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["sim", "run", *args])
    return res.exit_code, res.output


POWER_ON = ["power node1 on", "power node2 on", "power node3 on"]


def test_failover_scenario_runs_and_recovers(tmp_path: Path) -> None:
    scen = make_scenario(tmp_path, [POWER_ON, ["network node3 off"]])
    before = sorted(p.name for p in scen.iterdir())
    log, status = tmp_path / "log", tmp_path / "status.json"
    code, out = run([str(scen), "--log", str(log), "--status-json", str(status)])
    assert code == 0, out
    text = log.read_text()
    assert "node1/crm: recover service 'vm:103' from fenced node 'node3' to node 'node2'" in text
    # the fence came only after the lease of node3 was taken over
    assert text.index("got lock 'ha_agent_node3_lock'") < text.index("recover service 'vm:103'")
    st = json.loads(status.read_text())
    assert st["manager_status"]["service_status"]["vm:103"]["node"] == "node2"
    assert "vm:103" in st["running"]["node2"]
    assert sorted(p.name for p in scen.iterdir()) == before  # nothing written into the folder


def test_same_scenario_same_log(tmp_path: Path) -> None:
    scen = make_scenario(tmp_path, [POWER_ON, ["service vm:101 migrate node2"], ["reboot node2"]])
    a, _, _ = run_scenario(scen)
    b, _, _ = run_scenario(scen)
    assert a == b and any("state changed from 'migrate' to 'started'" in ln for ln in a)


@pytest.mark.parametrize(
    "cmdlist, services, message",
    [
        ("[[", None, "cmdlist: bad JSON"),
        ([["explode node1"]], None, "unknown command 'explode node1'"),
        ([["power node9 on"]], None, "unknown node 'node9'"),
        ([["service vm:101 migrate node7"]], None, "unknown node 'node7'"),
        ([["power node1 sideways"]], None, "bad action"),
        ([POWER_ON], {"vm:1": {"node": "node8"}}, "unknown node 'node8'"),
        ([POWER_ON], {"vm:1": {"state": "started"}}, "without assigned node"),
        ([["stall node1 soon"]], None, "bad count in 'stall node1 soon'"),
        ([["agent vm:101 explode"]], None, "bad command 'agent vm:101 explode'"),
        ([["link node1 node9 off"]], None, "unknown node 'node9'"),
        ([["store node1 slow 0"]], None, "bad count in 'store node1 slow 0'"),
        ([["disk node2 half"]], None, "bad command 'disk node2 half' (disk NODE full|ok)"),
    ],
)
def test_malformed_input_exit_2_one_line(tmp_path: Path, cmdlist: object, services: object, message: str) -> None:
    scen = make_scenario(tmp_path, cmdlist, services)
    log = tmp_path / "log"
    code, out = run([str(scen), "--log", str(log)])
    assert code == 2
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in out
    assert not log.exists()  # no partial write


def test_fault_verbs_run_from_the_command_line(tmp_path: Path) -> None:
    scen = make_scenario(tmp_path, [POWER_ON, ["stall node3 2", "agent vm:101 die-after-start", "link node1 node2 off",
                                               "store node2 slow 1", "disk node1 full"],
                                    ["disk node1 ok", "link node1 node2 on", "store node2 ok", "store leader-change 1"]])
    log = tmp_path / "log"
    code, out = run([str(scen), "--log", str(log), "--profile", "fast"])
    assert code == 0, out
    text = log.read_text()
    assert "daemon of 'node3' resumes after its stall" in text and "INVARIANT" not in text


def test_missing_folder_and_missing_file(tmp_path: Path) -> None:
    code, out = run([str(tmp_path / "nope"), "--log", str(tmp_path / "log")])
    assert code == 2 and "not a directory" in out
    scen = make_scenario(tmp_path, [POWER_ON])
    (scen / "hardware_status").unlink()
    code, out = run([str(scen), "--log", str(tmp_path / "log")])
    assert code == 2 and "hardware_status: missing" in out


def test_unsafe_timing_breaks_the_invariant_exit_3(tmp_path: Path) -> None:
    """The deliberately unsafe profile lets a lease expire (30 s) before the cut-off node's
    watchdog fires (60 s): the CRM takes node3's lease while vm:103 still runs there, and
    would recover it. The checker must catch exactly that at the take (a fence that fenced
    nothing), and the same scenario is safe with the pve timing."""
    scen = make_scenario(tmp_path, [POWER_ON, ["network node3 off"]])
    log = tmp_path / "log"
    code, out = run([str(scen), "--log", str(log), "--profile", "unsafe-short-lease"])
    assert code == 3
    assert "lease of 'node3' taken by 'node1' while 'node3' still runs vm:103" in out
    last = log.read_text().splitlines()[-1]
    assert "INVARIANT BROKEN at" in last and "vm:103" in last
    code, _ = run([str(scen), "--log", str(log), "--profile", "pve"])
    assert code == 0


@pytest.mark.parametrize("profile", ["default", "fast"])
def test_fast_profiles_fail_over_sooner(tmp_path: Path, profile: str) -> None:
    scen = make_scenario(tmp_path, [POWER_ON, ["network node3 off"]])
    lines, sim, violation = run_scenario(scen, profile)
    assert violation is None
    assert sim.hw.manager_status["service_status"]["vm:103"]["node"] in ("node1", "node2")
    cut = next(float(ln.split()[1]) for ln in lines if "execute network node3 off" in ln)
    rec = next(float(ln.split()[1]) for ln in lines if "recover service 'vm:103'" in ln)
    assert 0 < rec - cut <= sim.profile.lock_timeout_s + 2 * sim.profile.round_s


def test_demo_prints_status() -> None:
    res = CliRunner().invoke(cli, ["sim", "demo"])
    assert res.exit_code == 0, res.output
    assert "quorum OK" in res.output and "service ct:103 (node" in res.output
    assert "master node1 (active" in res.output


@pytest.mark.parametrize(
    "sid, want",
    [("fa:130", (3, 0, 0, None)), ("fa:1001", (0, 0, 1, None)), ("fa:120001", (2, 0, 0, "node1")),
     ("fa:110", (1, 0, 0, None)), ("fa:1501", (5, 0, 1, None))],
)
def test_failing_resource_ids(sid: str, want: tuple[int, int, int, str | None]) -> None:
    from harepl.sim.env import decode_fail_id

    assert decode_fail_id(sid) == want


def test_asynchronous_workers_start_every_service_with_a_worker_limit(tmp_path: Path) -> None:
    """With at most 2 asynchronous resource actions at once, five services on one node all
    start (none starves behind services re-queued every round), and never more than two
    actions run at the same time."""
    services = {f"vm:20{i}": {"node": "node1", "state": "started"} for i in range(1, 6)}
    # two stopped services sort first and are re-queued every round (a stop is always
    # re-run): they must not take both worker slots forever
    services["vm:101"] = {"node": "node1", "state": "stopped"}
    services["vm:102"] = {"node": "node1", "state": "stopped"}
    scen = make_scenario(tmp_path, [POWER_ON], services)
    lines, sim, violation = run_scenario(scen, "async")
    assert violation is None
    assert sorted(sim.status()["running"]["node1"]) == [f"vm:20{i}" for i in range(1, 6)]
    starts = [ln for ln in lines if "node1/lrm: starting service" in ln]
    assert len(starts) == 5
    # each round at most max_workers jobs complete
    per_time: dict[str, int] = {}
    for ln in starts:
        per_time[ln.split()[1]] = per_time.get(ln.split()[1], 0) + 1
    assert max(per_time.values()) <= 2 and len(per_time) >= 3


def test_fenced_node_rejoins_and_runs_services_again(tmp_path: Path) -> None:
    """The CRM took node2's lease to fence it; once node2 is powered on, its new LRM
    (a new process, no epoch) must get its own lease again and run services."""
    scen = make_scenario(tmp_path, [POWER_ON, ["power node2 off"], ["delay 0"], ["power node2 on"],
                                    ["service vm:101 migrate node2"]],
                         {"vm:101": {"node": "node1", "state": "started"},
                          "vm:102": {"node": "node2", "state": "started"}})
    lines, sim, violation = run_scenario(scen)
    assert violation is None
    assert not any("is not current" in ln for ln in lines)
    assert "vm:101" in sim.status()["running"]["node2"]


def test_reboot_carries_out_a_pending_migration(tmp_path: Path) -> None:
    """A node asked to reboot while the CRM migrates one of its services finishes that
    migration (instead of stopping the service and waiting for the move forever)."""
    scen = make_scenario(tmp_path, [POWER_ON, ["service vm:101 migrate node2", "reboot node1"]],
                         {"vm:101": {"node": "node1", "state": "started"}})
    lines, sim, violation = run_scenario(scen)
    assert violation is None
    assert any("node1/lrm: exit (loop end)" in ln for ln in lines)
    assert sim.hw.manager_status["service_status"]["vm:101"]["state"] == "started"
