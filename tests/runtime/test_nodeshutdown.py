"""Telling a node shutdown/reboot from a daemon restart, from systemd's queued jobs
(`systemctl --full --no-legend list-jobs`), as Proxmox's LRM does."""

from __future__ import annotations

import pytest

from harepl.runtime.nodeshutdown import parse_list_jobs

POWEROFF = """\
1402 poweroff.target                      start waiting
1405 systemd-poweroff.service             start waiting
1406 shutdown.target                      start waiting
1408 harepl.service                       stop  running
"""
REBOOT = """\
 993 reboot.target                        start waiting
 994 systemd-reboot.service               start waiting
 997 shutdown.target                      start waiting
1001 harepl.service                       stop  running
"""
RESTART = """\
2044 harepl.service                       restart running
"""


@pytest.mark.parametrize("text,expected", [
    (POWEROFF, (True, False)),
    (REBOOT, (True, True)),
    (RESTART, (False, False)),
    ("", (False, False)),
    # a unit merely named like a target, or a target being stopped, is not a shutdown
    ("12 my-shutdown.target.service start waiting\n", (False, False)),
    ("13 shutdown.target stop waiting\n", (False, False)),
    ("14 kexec.target start waiting\n", (True, True)),
    ("garbage\n\n   \n", (False, False)),
])
def test_parse_list_jobs(text: str, expected: tuple[bool, bool]) -> None:
    assert parse_list_jobs(text) == expected
