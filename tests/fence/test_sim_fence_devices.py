"""Fence devices in the simulator (issue 10): the real CRM and LRM roles, the simulated
devices of harepl/sim/env.py (`sim.fence_devices`), the simulator's invariants after
every step (a lease taken while its node still runs a service is a violation)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from harepl.sim.hardware import InvariantBroken
from harepl.sim.runner import PROFILES, Simulation, load_scenario

NODES = ("node1", "node2", "node3")


def run(tmp_path: Path, fencing: str | None, devices: dict[str, list[str]], cut: str = "network node3 off",
        profile: str = "fast") -> tuple[str, Simulation]:
    d = tmp_path / f"scen-{fencing}-{'-'.join(devices.get('node3', []))}"
    d.mkdir()
    (d / "hardware_status").write_text(json.dumps({n: {"power": "off", "network": "off"} for n in NODES}))
    (d / "cmdlist").write_text(json.dumps([[f"power {n} on" for n in NODES], [cut], [], [], [], [], [], []]))
    (d / "service_config").write_text(json.dumps({"vm:103": {"node": "node3", "state": "started"}}))
    (d / "manager_status").write_text("{}")
    if fencing:
        (d / "datacenter.cfg").write_text(json.dumps({"ha": {"fencing": fencing}}))
    lines: list[str] = []
    sim = Simulation(load_scenario(d), PROFILES[profile], lines.append)
    sim.fence_devices = devices  # type: ignore[attr-defined]
    try:
        sim.run()
    except InvariantBroken as exc:
        raise AssertionError(f"{exc}\n" + "\n".join(lines[-60:])) from None
    return "\n".join(lines), sim


def at(log: str, pattern: str) -> float:
    for line in log.splitlines():
        if re.search(pattern, line):
            return float(line.split()[1])
    raise AssertionError(f"no line matching {pattern!r}")


RECOVERED = r"recover service 'vm:103' from fenced node 'node3' to node"


def test_a_confirmed_power_off_ends_the_wait(tmp_path: Path) -> None:
    wd_log, _ = run(tmp_path, None, {})
    hw_log, sim = run(tmp_path, "both", {"node3": ["ok"]})
    assert "fence device node3:1 (ok): off" in hw_log and "killed by poweroff" in hw_log
    assert "took its lease at once" in hw_log
    assert sim.hw.nodes["node3"].power == "off"
    cut = at(hw_log, "execute network node3 off")
    assert at(hw_log, RECOVERED) - cut < at(wd_log, RECOVERED) - at(wd_log, "execute network node3 off")
    assert "vm:103" in sum(sim.status()["running"].values(), [])


def test_both_falls_back_to_the_watchdog_when_every_device_fails(tmp_path: Path) -> None:
    log, _ = run(tmp_path, "both", {"node3": ["fail", "timeout"]})
    assert "fence device level 1 of node 'node3': failed" in log
    assert "fence device level 2 of node 'node3': failed" in log
    assert "took its lease at once" not in log
    assert re.search(RECOVERED, log)  # after the lease wait, as with the watchdog alone


def test_hardware_alone_keeps_trying_and_says_so(tmp_path: Path) -> None:
    log, sim = run(tmp_path, "hardware", {"node3": ["fail"]})
    assert not re.search(RECOVERED, log)
    ms = sim.hw.manager_status
    assert "every fence device failed" in ms["fence_status"]["node3"]
    assert log.count("fence device level 1 of node 'node3': failed") >= 2


def test_a_second_level_that_works(tmp_path: Path) -> None:
    log, sim = run(tmp_path, "hardware", {"node3": ["timeout", "ok"]})
    assert "fence device level 1 of node 'node3': failed" in log and "took its lease at once" in log
    assert re.search(RECOVERED, log) and sim.hw.nodes["node3"].power == "off"


def test_a_node_that_renews_after_a_confirmed_off_keeps_its_lease(tmp_path: Path) -> None:
    """A lying device: the compare-and-swap on the lease as seen when the fence began fails
    once the node renewed since; nothing is recovered on that fence."""
    _, sim = run(tmp_path, None, {})
    held = sorted(n for n in NODES if f"ha_agent_{n}_lock" in sim.hw.leases and n != "node3")
    node = held[0]  # the node the service was recovered to: it holds its lease
    env = sim.roles[next(n for n in ("node1", "node2") if n != node)].crm_env
    sim.fence_devices = {node: ["lie"]}  # type: ignore[attr-defined]
    assert env.fence_device(node, 0) is None
    res = env.fence_device(node, 0)
    assert res is not None and res.off
    sim.hw.leases[f"ha_agent_{node}_lock"].time += 1.0  # it renewed meanwhile: it is alive
    assert env.take_fenced_node_lease(node) is False
    assert sim.hw.leases[f"ha_agent_{node}_lock"].node == node
