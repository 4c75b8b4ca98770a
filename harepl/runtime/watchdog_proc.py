"""Process watchdog: a stand-in for ``/dev/watchdog`` that fences a node by killing its session.

Run by :class:`harepl.runtime.watchdog.ProcessWatchdog` (never by hand) as

    python watchdog_proc.py --node NAME --timeout-s T --session SID [--marker M] [--log FILE]

in its **own** session (so killing the node's session does not kill it, and SIGSTOP of the
daemon does not stop it). It reads its stdin, a pipe from the client: any byte feeds it,
``V`` is the magic close (disarm and exit 0). If not fed for ``T`` seconds of monotonic time
— including after the client died or closed the pipe without ``V``, as with /dev/watchdog —
it logs one line

    watchdog: node NAME not fed for N s, killing session SID (K processes)

and SIGKILLs every process of session SID (and, with ``--marker``, every process whose
environment has ``HAREPL_LAB_NODE=M``, the lab's mark for a node's processes) and every
service cgroup of the node (``<cgroup v2 root>/harepl/<node scope>``, see
``agents/cgroup.py``: a service that left the session, e.g. ``setsid cmd &`` with a clean
environment, is still in its cgroup), repeating until none is left, then exits 1. If
there were service cgroups it also logs

    watchdog: node NAME: killed the service cgroups under PATH

SIGINT/SIGHUP are ignored; SIGTERM/SIGKILL end it (a tester's escape hatch; production
nodes use the device backend).

Standard library only, so it starts fast and needs no package imports (``agents/cgroup.py``
is standard library only too and is loaded by its path).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import select
import signal
import sys
import time
from pathlib import Path
from types import ModuleType

MARKER_ENV = "HAREPL_LAB_NODE"
CGROUP_PY = Path(__file__).resolve().parent / "agents" / "cgroup.py"


def _cgroup_module() -> ModuleType | None:
    """agents/cgroup.py by path (importing the package would pull in all of harepl)."""
    try:
        spec = importlib.util.spec_from_file_location("harepl_watchdog_cgroup", CGROUP_PY)
        if spec is None or spec.loader is None:
            return None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    except Exception:  # never let tracking helpers keep the watchdog from fencing
        return None


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _has_marker(pid: int, marker: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return f"{MARKER_ENV}={marker}".encode() in fh.read().split(b"\0")
    except OSError:
        return False


def victims(session: int, marker: str | None) -> list[int]:
    me = os.getpid()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        fields = _stat(pid)
        if not fields or fields[0] in ("Z", "X"):
            continue
        if int(fields[3]) == session or (marker and _has_marker(pid, marker)):
            out.append(pid)
    return out


def kill_all(session: int, marker: str | None, rounds: int = 100, cgroups: Path | None = None,
             cg: ModuleType | None = None) -> int:
    """SIGKILL until nothing is left (a parent may fork once more before it dies): the node's
    session and marked processes first (then the daemon can start nothing more), then its
    service cgroups (``cgroups``, killed and removed by the ``cg`` module)."""
    killed: set[int] = set()
    for _ in range(rounds):
        pids = victims(session, marker)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except (ProcessLookupError, PermissionError):
                pass
        in_cgroups: list[int] = []
        if cgroups is not None and cg is not None:
            try:
                in_cgroups = cg.pids(cgroups)
                killed.update(in_cgroups)
                cg.kill(cgroups, timeout_s=0.1)
            except OSError:
                pass
        if not pids and not in_cgroups:
            break
        time.sleep(0.02)
    return len(killed)


def log(path: str | None, msg: str) -> None:
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n"  # wall clock: for humans only
    sys.stderr.write(line)
    sys.stderr.flush()
    if path:
        try:
            with open(path, "a") as fh:
                fh.write(line)
        except OSError:
            pass


def run(node: str, timeout_s: float, session: int, marker: str | None, log_path: str | None) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if session <= 1 or session == os.getsid(0):
        log(log_path, f"watchdog: node {node}: refusing to guard session {session}")
        return 2
    # Where the node's service cgroups are, found before arming: firing must be quick.
    cg = _cgroup_module()
    cgroups = cg.node_path(node, marker) if cg is not None else None
    last_feed = time.monotonic()
    stdin_open = True
    os.write(1, b"ready\n")  # the client waits for this before it counts as armed
    while True:
        now = time.monotonic()
        remaining = last_feed + timeout_s - now
        if remaining <= 0:
            break
        if stdin_open:
            ready, _, _ = select.select([0], [], [], remaining)
            if not ready:
                continue
            data = os.read(0, 4096)
            if not data:
                stdin_open = False  # client gone without magic close: stay armed
                log(log_path, f"watchdog: node {node}: client closed without magic close, still armed")
                continue
            if data.endswith(b"V"):
                log(log_path, f"watchdog: node {node} closed cleanly, disarmed")
                return 0
            last_feed = time.monotonic()
        else:
            time.sleep(remaining)
    not_fed_s = time.monotonic() - last_feed
    pids = victims(session, marker)
    log(log_path, f"watchdog: node {node} not fed for {not_fed_s:.1f} s, killing session {session} "
        f"({len(pids)} processes)")
    had_cgroups = cgroups is not None and cgroups.exists()
    kill_all(session, marker, cgroups=cgroups, cg=cg)
    if had_cgroups:
        log(log_path, f"watchdog: node {node}: killed the service cgroups under {cgroups}")
    return 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="harepl process watchdog (started by the daemon)")
    ap.add_argument("--node", required=True)
    ap.add_argument("--timeout-s", type=float, required=True)
    ap.add_argument("--session", type=int, required=True)
    ap.add_argument("--marker", default=None)
    ap.add_argument("--log", default=None)
    args = ap.parse_args(argv)
    if not args.timeout_s > 0:
        print("watchdog: --timeout-s must be > 0", file=sys.stderr)
        return 2
    return run(args.node, args.timeout_s, args.session, args.marker, args.log)


if __name__ == "__main__":
    sys.exit(main())
