"""Finding and signalling a lab node's processes (Linux /proc).

A lab node is its daemon's session (the daemon is started with setsid, so its session id
is its PID) plus anything that carries the node's marker in its environment — a service
that left the session (setsid/daemonize) must still die when the node "loses power".
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable

MARKER_ENV = "HAREPL_LAB_NODE"


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    # comm may contain spaces and parentheses: fields start after the last ')'
    return raw[raw.rfind(")") + 2:].split()


def session_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[3]) if fields else None


def state_of(pid: int) -> str | None:
    """One-letter process state ('R', 'S', 'T' stopped, 'Z' zombie, ...) or None if gone."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def alive(pid: int) -> bool:
    state = state_of(pid)
    return state is not None and state not in ("Z", "X")


def _has_marker(pid: int, marker: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return False
    return f"{MARKER_ENV}={marker}".encode() in env.split(b"\0")


def node_pids(sid: int | None, marker: str | None) -> list[int]:
    """Live processes of one node: members of session `sid` or carriers of `marker`."""
    me = os.getpid()
    found: list[int] = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid == me:
            continue
        fields = _stat_fields(pid)
        if not fields or fields[0] in ("Z", "X"):
            continue
        if (sid is not None and int(fields[3]) == sid) or (marker and _has_marker(pid, marker)):
            found.append(pid)
    return found


def signal_pids(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def kill_node(sid: int | None, marker: str | None, timeout_s: float = 5.0) -> list[int]:
    """SIGKILL every process of the node until none is left (a dying parent may fork
    once more). Returns the PIDs that were still there at the end (normally none)."""
    deadline = time.monotonic() + timeout_s
    while True:
        pids = node_pids(sid, marker)
        if not pids or time.monotonic() > deadline:
            return pids
        signal_pids(pids, signal.SIGKILL)
        time.sleep(0.05)
