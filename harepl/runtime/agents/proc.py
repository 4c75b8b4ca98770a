"""Small /proc helpers: process identity (start time against pid reuse), group and session
membership, and killing a process group with SIGTERM then SIGKILL."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcStat:
    pid: int
    state: str  # R, S, D, Z, T, ...
    ppid: int
    pgrp: int
    session: int
    starttime: int  # clock ticks since boot; (pid, starttime) identifies a process


def read_stat(pid: int) -> ProcStat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(")") + 2 :].split()
    try:
        return ProcStat(pid, rest[0], int(rest[1]), int(rest[2]), int(rest[3]), int(rest[19]))
    except (IndexError, ValueError):
        return None


def alive(pid: int, starttime: int | None = None) -> bool:
    """True if ``pid`` exists, is not a zombie and (if given) has the recorded start time."""
    st = read_stat(pid)
    if st is None or st.state in ("Z", "X"):
        return False
    return starttime is None or st.starttime == starttime


def all_stats() -> list[ProcStat]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = read_stat(int(name))
            if st is not None:
                out.append(st)
    return out


def group_members(pgid: int, session: int | None = None) -> list[int]:
    """Live (non-zombie) pids in process group ``pgid`` (and session, if given)."""
    try:
        os.killpg(pgid, 0)  # cheap, definitive "nobody left" before scanning /proc
    except ProcessLookupError:
        return []
    except PermissionError:
        pass
    return [
        s.pid
        for s in all_stats()
        if s.pgrp == pgid and s.state not in ("Z", "X") and (session is None or s.session == session)
    ]


def session_members(session: int) -> list[int]:
    return [s.pid for s in all_stats() if s.session == session and s.state not in ("Z", "X")]


def kill_group(pgid: int, stop_timeout_s: float, session: int | None = None, poll_s: float = 0.05) -> bool:
    """SIGTERM the group, wait up to ``stop_timeout_s`` for it to be empty, then SIGKILL and wait
    (bounded) again. Returns True when no member is left. The session check guards against a
    reused group id after every member is gone."""
    if not group_members(pgid, session):
        return True
    if stop_timeout_s <= 0:
        _signal_group(pgid, signal.SIGKILL)  # hard stop
    else:
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + stop_timeout_s
    while time.monotonic() < deadline:
        if not group_members(pgid, session):
            return True
        time.sleep(poll_s)
    for _ in range(50):  # SIGKILL cannot be caught; only D-state sleepers can delay it
        members = group_members(pgid, session)
        if not members:
            return True
        _signal_group(pgid, signal.SIGKILL)
        time.sleep(poll_s)
    return not group_members(pgid, session)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
