"""Proxmox-shaped log lines for the node daemon.

    2026-11-24 20:01:02.345 node1 harepl-crm[4242]: info: status change slave => master

The wall-clock stamp is for humans only (never used to decide anything). One lock per
file so the CRM, LRM and API threads never interleave half lines.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import TextIO


class NodeLog:
    def __init__(self, node: str, path: Path | None) -> None:
        self.node = node
        self.path = path
        self._lock = threading.Lock()
        self._out: TextIO
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._out = open(path, "a", buffering=1, encoding="utf-8")
        else:
            self._out = sys.stderr

    def write(self, role: str, level: str, msg: str) -> None:
        now = time.time()  # wall clock: display only
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
        line = f"{stamp} {self.node} harepl-{role}[{os.getpid()}]: {level}: {msg}\n"
        with self._lock:
            try:
                self._out.write(line)
            except (OSError, ValueError):
                pass  # a full disk or closed log must not take the node down

    def for_role(self, role: str) -> RoleLog:
        return RoleLog(self, role)

    def close(self) -> None:
        if self._out is not sys.stderr:
            with self._lock:
                self._out.close()


class RoleLog:
    def __init__(self, log: NodeLog, role: str) -> None:
        self._log = log
        self.role = role

    def __call__(self, level: str, msg: str) -> None:
        self._log.write(self.role, level, msg)

    def info(self, msg: str) -> None:
        self._log.write(self.role, "info", msg)

    def warn(self, msg: str) -> None:
        self._log.write(self.role, "warn", msg)

    def err(self, msg: str) -> None:
        self._log.write(self.role, "err", msg)
