"""systemd's readiness protocol (sd_notify(3)) without a dependency: one datagram per
state change to the socket named by $NOTIFY_SOCKET (a path, or '@name' in the abstract
namespace). Without $NOTIFY_SOCKET (not started by systemd as Type=notify) it does
nothing. deploy/harepl.service is Type=notify: READY=1 once the Raft port and the API
are up, then STATUS= saying whether the node has quorum or waits for it, as it changes."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable


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


def report_readiness(has_quorum: Callable[[], bool], node: str, stop: threading.Event,
                     period_s: float = 1.0) -> None:
    """READY=1 at once (the daemon is up: joined, or known to wait for quorum), then
    STATUS= whenever quorum comes or goes, until `stop`; returns at once without systemd."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    last: bool | None = None
    while not stop.is_set():
        try:
            quorate = bool(has_quorum())
        except Exception:  # noqa: BLE001 - a status line must never take the daemon down
            quorate = False
        if quorate != last:
            status = f"STATUS=node {node}: " + ("quorate" if quorate else "waiting for quorum")
            notify(*(("READY=1", status) if last is None else (status,)))
            last = quorate
        stop.wait(period_s)
