#!/usr/bin/env python3
"""Witness test service: proves a service never runs twice at once.

    python tests/support/witness.py --name SID --ledger FILE --lock-dir DIR [--node NODE]

It takes an exclusive ``flock`` on ``DIR/<SID>.lock`` (non-blocking) and appends one JSON line
per event to the shared ledger ``FILE``: ``start`` once it holds the lock, ``stop`` when it
gets SIGTERM/SIGINT (then exits 0). If the lock is held by another instance it appends a
``violation`` line and exits 3. A SIGKILLed witness writes no ``stop``; the kernel drops its
lock, so the next instance starts cleanly. Each line has ``event``, ``sid``, ``node`` (``--node``
or ``$HAREPL_NODE``), ``pid``, ``mono`` (CLOCK_MONOTONIC, comparable across processes on one
machine) and ``wall`` (for humans). Ledger lines are appended under an flock of the ledger.
Used as an exec command and as the payload of the ``harepl/process`` OCF agent.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import signal
import sys
import time

VIOLATION_EXIT = 3


def append(ledger: str, event: str, sid: str, node: str, **more: object) -> None:
    rec = {"event": event, "sid": sid, "node": node, "pid": os.getpid(),
           "mono": time.monotonic(), "wall": time.time(), **more}
    line = (json.dumps(rec, sort_keys=True) + "\n").encode()
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)  # also releases the ledger lock


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="witness test service")
    ap.add_argument("--name", required=True, help="service id (the lock is named after it)")
    ap.add_argument("--ledger", required=True, help="shared ledger file (JSON lines)")
    ap.add_argument("--lock-dir", required=True, help="directory of the per-service lock files")
    ap.add_argument("--node", default=None, help="node name (default: $HAREPL_NODE)")
    args = ap.parse_args(argv)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    node = args.node or os.environ.get("HAREPL_NODE", "") or "?"
    os.makedirs(args.lock_dir, exist_ok=True)
    lock_path = os.path.join(args.lock_dir, re.sub(r"[^A-Za-z0-9_.-]", "_", args.name) + ".lock")
    lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = ""
        try:
            holder = os.pread(lock_fd, 200, 0).decode("utf-8", "replace").strip()
        except OSError:
            pass
        append(args.ledger, "violation", args.name, node, holder=holder)
        print(f"witness: VIOLATION: {args.name} already runs ({holder})", file=sys.stderr)
        return VIOLATION_EXIT
    os.ftruncate(lock_fd, 0)
    os.pwrite(lock_fd, f"node={node} pid={os.getpid()}\n".encode(), 0)

    # The stop signals are blocked (above) and taken synchronously here: no race between a
    # check and a pause, and a SIGTERM that arrived during start-up is simply pending.
    append(args.ledger, "start", args.name, node)
    signum = signal.sigwait({signal.SIGTERM, signal.SIGINT})
    append(args.ledger, "stop", args.name, node, signal=int(signum))
    os.close(lock_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
