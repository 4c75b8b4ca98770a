"""core/fencing.py: Proxmox's fence.cfg, levels and parallel devices, and the decisions
(pure)."""

from __future__ import annotations

import pytest

from harepl.core.fencing import (
    DeviceResult,
    FenceConfigError,
    NodeFence,
    after_result,
    fence_step,
    parse_fence_cfg,
)

# Proxmox's shape: two power supplies (parallel, level 1), then the BMC (level 2)
PVE_CFG = """
# pve-ha fence config
device apc:1 fence_apc ip=192.168.0.10 username=fence password="pw 1"
device apc:2 fence_apc ip=192.168.0.11 username=fence password=pw2
connect apc:1 node=node1 plug=1
connect apc:2 node=node1 plug=1
connect apc:1 node=node2 plug=2
device ipmi fence_ipmilan lanplus=1 cipher=3 l=admin p=s3cret harepl_timeout=7
connect ipmi node=node1 ip=10.0.0.1
"""


def test_levels_and_parallel_devices() -> None:
    cfg = parse_fence_cfg(PVE_CFG)
    levels = cfg.levels("node1")
    assert [[c.device for c in lv] for lv in levels] == [["apc:1", "apc:2"], ["ipmi:1"]]
    assert levels[0][0].stdin("off") == "action=off\nip=192.168.0.10\nusername=fence\npassword=pw 1\nplug=1\n"
    ipmi = levels[1][0]
    assert ipmi.timeout_s == 7 and ("username", "admin") in ipmi.args and ("password", "s3cret") in ipmi.args
    assert "s3cret" not in ipmi.shown() and "password=***" in ipmi.shown()
    assert [[c.device for c in lv] for lv in cfg.levels("node2")] == [["apc:1"]]
    assert cfg.levels("node3") == [] and cfg.nodes() == ["node1", "node2"]


@pytest.mark.parametrize("text, error", [
    ("connect apc node=node1\n", "line 1: device 'apc' must be declared before"),
    ("device apc fence_apc ip=x\ndevice apc fence_apc ip=y\n", "line 2: device 'apc:1' already declared"),
    ("device apc fence_apc ip=x\nconnect apc:2 node=n1\n", "line 2: no parallel device 'apc:2'"),
    ("device apc fence_apc ip=x\nconnect apc n1\n", "line 2: node=NODENAME needed"),
    ("device apc /bin/rm ip=x\n", "line 1: agent '/bin/rm' is not a fence agent name"),
    ("device apc fence_apc ipx\n", "line 1: argument 'ipx' is not key=value"),
    ("device apc fence_apc harepl_timeout=0\n", "line 1: harepl_timeout must be"),
])
def test_config_errors(text: str, error: str) -> None:
    with pytest.raises(FenceConfigError, match=error):
        parse_fence_cfg(text)


def test_watchdog_mode_waits_for_the_lease() -> None:
    assert fence_step("watchdog", 2, NodeFence()).lease_wait
    assert fence_step("both", 0, NodeFence()).lease_wait  # no device for this node


def test_levels_in_order_then_fallback_or_retry() -> None:
    for mode in ("both", "hardware"):
        st = NodeFence()
        assert fence_step(mode, 2, st).run_level == 0
        after_result(st, 2, DeviceResult(False, "apc: timed out"))
        assert fence_step(mode, 2, st).run_level == 1
        after_result(st, 2, DeviceResult(False, "ipmi: exit 1"))
        step = fence_step(mode, 2, st)
        if mode == "both":  # every device failed: the watchdog wait, as without devices
            assert step.lease_wait and step.run_level is None and "waiting for the watchdog" in step.status
        else:  # hardware only: keep trying, and say so
            assert not step.lease_wait and step.run_level == 0 and "failed 1 time(s)" in step.status


def test_a_confirmed_off_is_recorded_before_the_lease_is_taken() -> None:
    st = NodeFence()
    after_result(st, 1, DeviceResult(True, "ipmi:1: off confirmed"))
    step = fence_step("both", 1, st, now=10.0)
    assert step.record and not step.take_lease_now  # this round's manager_status records it
    st.recorded_at = 10.0
    assert not fence_step("both", 1, st, now=10.0).take_lease_now  # same round: not yet
    assert fence_step("both", 1, st, now=10.5).take_lease_now
