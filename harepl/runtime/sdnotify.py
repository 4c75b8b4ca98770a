"""systemd's readiness protocol (sd_notify(3)) without a dependency: one datagram per
state change to the socket named by $NOTIFY_SOCKET (a path, or '@name' in the abstract
namespace). Without $NOTIFY_SOCKET (not started by systemd as Type=notify) it does
nothing. deploy/harepl.service is Type=notify: READY=1 once the Raft port and the API
are up, with STATUS= saying whether the node has quorum or waits for it."""

from __future__ import annotations

import os
import socket


def notify(*fields: str) -> bool:
    """Send 'KEY=value' fields, e.g. notify("READY=1", "STATUS=waiting for quorum")."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr or not fields:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto("\n".join(fields).encode("utf-8"), addr)
    except OSError:
        return False
    return True
