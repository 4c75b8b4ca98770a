"""Is the node shutting down or rebooting, or is only the daemon being restarted?

The LRM's answer decides what the shutdown policy does (Proxmox's datacenter.cfg
`ha: shutdown_policy`): a daemon restart freezes services; a node shutdown or reboot
stops, freezes or migrates them.  Proxmox's LRM asks systemd for the queued jobs when it
is stopped; so do we (`systemctl --full list-jobs`: a queued start of shutdown.target or
reboot.target).  Without systemd (the lab, containers) the daemon is told by a signal:
SIGUSR1 = the node shuts down, SIGUSR2 = the node reboots (`harepl lab shutdown|reboot`).
"""

from __future__ import annotations

import subprocess

# targets whose queued start means the machine goes down / comes back
_DOWN_TARGETS = frozenset({"shutdown.target", "poweroff.target", "halt.target", "final.target"})
_REBOOT_TARGETS = frozenset({"reboot.target", "kexec.target", "soft-reboot.target"})

LIST_JOBS_TIMEOUT_S = 5.0


def parse_list_jobs(text: str) -> tuple[bool, bool]:
    """(shutdown, reboot) from `systemctl --full --no-legend list-jobs` output
    (columns: JOB UNIT TYPE STATE).  A reboot is also a shutdown."""
    shutdown = reboot = False
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 3 or cols[2] != "start":
            continue
        if cols[1] in _REBOOT_TARGETS:
            shutdown = reboot = True
        elif cols[1] in _DOWN_TARGETS:
            shutdown = True
    return shutdown, reboot


def systemd_shutdown_jobs() -> tuple[bool, bool]:
    """Ask systemd; (False, False) when it cannot answer (a restart is the safe guess:
    services are frozen, not stopped)."""
    try:
        res = subprocess.run(["systemctl", "--full", "--no-legend", "--no-pager", "list-jobs"],
                             capture_output=True, text=True, timeout=LIST_JOBS_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return False, False
    return parse_list_jobs(res.stdout)
