"""systemd agent: command building and output mapping everywhere; a real lifecycle only
where systemd is PID 1 (it is not in this container: that test skips, and says why)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harepl.runtime.agents import ERROR, AgentConfigError, Status, SystemdAgent, systemd_available
from harepl.runtime.agents.systemd import normalize_unit, parse_is_active, systemctl_argv


def test_argv():
    assert systemctl_argv("start", "nginx.service") == ["systemctl", "start", "--", "nginx.service"]
    assert systemctl_argv("stop", "nginx.service") == ["systemctl", "stop", "--", "nginx.service"]
    assert systemctl_argv("monitor", "a.service") == ["systemctl", "is-active", "--", "a.service"]
    assert systemctl_argv("validate", "a.service") == ["systemctl", "cat", "--", "a.service"]
    with pytest.raises(ValueError):
        systemctl_argv("migrate", "a.service")


@pytest.mark.skipif(systemd_available(), reason="checks the no-systemd answer")
def test_validate_without_systemd_says_so():
    res = SystemdAgent("systemd:nginx", {}).validate()
    assert res.exit_code == ERROR and res.message == "systemd is not running here"


def test_unit_names():
    assert normalize_unit("systemd:x", "nginx") == "nginx.service"
    assert normalize_unit("systemd:x", "getty@tty1.service") == "getty@tty1.service"
    assert normalize_unit("systemd:x", "backup.timer") == "backup.timer"
    assert SystemdAgent("systemd:nginx", {}).unit == "nginx.service"
    for bad in ("", "a b", "-x", "a;rm", None):
        with pytest.raises(AgentConfigError):
            normalize_unit("systemd:x", bad)


@pytest.mark.parametrize("out,status", [
    ("active\n", Status.RUNNING), ("activating\n", Status.RUNNING), ("reloading", Status.RUNNING),
    ("inactive\n", Status.STOPPED), ("deactivating", Status.STOPPED), ("failed\n", Status.FAILED),
    ("unknown\n", Status.UNKNOWN), ("", Status.UNKNOWN),
])
def test_parse_is_active(out, status):
    assert parse_is_active(out) is status


@pytest.mark.skipif(not systemd_available(), reason="systemd is not PID 1 here (no /run/systemd/system): "
                    "the real systemctl lifecycle cannot run; only the command logic is tested")
def test_real_unit_lifecycle():
    # A runtime unit of our own (under /run, gone at reboot), removed afterwards.
    unit = "harepl-test-sleep.service"
    path = Path("/run/systemd/system") / unit
    path.write_text("[Service]\nExecStart=/bin/sleep 1000\n")
    subprocess.run(["systemctl", "daemon-reload"], check=True)
    a = SystemdAgent(f"systemd:{unit}", {"unit": unit})
    try:
        assert a.status() is Status.STOPPED
        assert a.validate().ok
        assert SystemdAgent("systemd:harepl-no-such-unit", {}).validate().exit_code == 6
        assert a.start().ok
        assert a.start().ok
        assert a.status() is Status.RUNNING
        assert a.stop().ok
        assert a.stop().ok
        assert a.status() is Status.STOPPED
    finally:
        subprocess.run(["systemctl", "stop", unit], check=False)
        path.unlink(missing_ok=True)
        subprocess.run(["systemctl", "daemon-reload"], check=False)
