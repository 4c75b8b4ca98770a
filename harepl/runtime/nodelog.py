"""Proxmox-shaped log lines for the node daemon.

    2026-11-24 20:01:02.345 node1 harepl-crm[4242]: info: status change slave => master

The wall-clock stamp is for humans only (never used to decide anything). One lock per
file so the CRM, LRM and API threads never interleave half lines.

The Raft layer logs through Python's logging ('harepl.store', 'pysyncobj'): a node log
with a file routes it into that file as role 'store', one line per record, rate-limited
(`attach_store_logging`; one node log per process receives it, the last opened).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TextIO


class NodeLog:
    def __init__(self, node: str, path: Path | None, store_logs: bool = True) -> None:
        self.node = node
        self.path = path
        self._lock = threading.Lock()
        self._out: TextIO
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._out = open(path, "a", buffering=1, encoding="utf-8")
        else:
            self._out = sys.stderr
        if path is not None and store_logs:
            attach_store_logging(self)

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
        _detach_store_logging(self)
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


#: loggers of the Raft layer and the least level each sends to the node log
STORE_LOGGERS = {"harepl.store": logging.INFO, "pysyncobj": logging.WARNING}
#: frames of a traceback kept in its log line (innermost last)
TRACEBACK_FRAMES = 6


class StoreLogHandler(logging.Handler):
    """Python logging records into a NodeLog (role 'store'), one line per record -- an
    exception as its type, text and innermost frames on the same line.  Rate-limited so
    a flood cannot fill the disk: per message template at most `burst` lines per
    `window_s`; the others are counted and the count is added to the template's next
    line that passes.  (The transport already logs dropped connections one line per
    source host per 10 s; this bounds everything else.)"""

    MAX_TEMPLATES = 512

    def __init__(self, node_log: NodeLog, window_s: float = 10.0, burst: int = 5) -> None:
        super().__init__(logging.DEBUG)
        self.node_log = node_log
        self.window_s = window_s
        self.burst = burst
        self._windows: dict[tuple[str, str], list[float]] = {}  # key -> [end, lines, suppressed]
        self.suppressed = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            now = time.monotonic()
            key = (record.name, str(record.msg)[:200])
            w = self._windows.get(key)
            note = ""
            if w is None or now >= w[0]:
                if w is not None and w[2]:
                    note = f" ({int(w[2])} similar lines suppressed in the last {self.window_s:.0f} s)"
                if w is None and len(self._windows) >= self.MAX_TEMPLATES:
                    self._windows.clear()
                w = self._windows[key] = [now + self.window_s, 0, 0]
            if w[1] >= self.burst:
                w[2] += 1
                self.suppressed += 1
                return
            w[1] += 1
            level = "err" if record.levelno >= logging.ERROR else "warn" if record.levelno >= logging.WARNING else "info"
            msg = record.getMessage()
            if not record.name.startswith("harepl."):
                msg = f"{record.name}: {msg}"
            if record.exc_info and record.exc_info[1] is not None:
                msg += ": " + _one_line_exception(record.exc_info[1])
            self.node_log.write("store", level, msg.replace("\n", " | ") + note)
        except Exception:  # noqa: BLE001 - logging must never take the Raft thread down
            self.handleError(record)


def _one_line_exception(exc: BaseException) -> str:
    """'TypeError: text (traceback: a.py:12 f > b.py:40 g)', innermost frame last."""
    frames = traceback.extract_tb(exc.__traceback__)[-TRACEBACK_FRAMES:]
    where = " > ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}" for f in frames)
    text = f"{type(exc).__name__}: {exc}"
    return f"{text} (traceback: {where})" if where else text


#: the node log the Raft layer's logging goes to, and its handler (one per process)
_attached: tuple[NodeLog, StoreLogHandler] | None = None
_attach_lock = threading.Lock()


def attach_store_logging(node_log: NodeLog) -> StoreLogHandler:
    """Route the Raft layer's logging into `node_log` until `node_log.close()` (or until
    another node log is attached: a process has one node log; several only in tests).
    Records then no longer reach Python's last-resort handler (the daemon's stderr)."""
    global _attached
    with _attach_lock:
        if _attached is not None:
            _remove_handler(_attached[1])
        handler = StoreLogHandler(node_log)
        for name, level in STORE_LOGGERS.items():
            logger = logging.getLogger(name)
            if logger.level == logging.NOTSET or logger.level > level:
                logger.setLevel(level)
            logger.addHandler(handler)
        _attached = (node_log, handler)
        return handler


def _remove_handler(handler: StoreLogHandler) -> None:
    for name in STORE_LOGGERS:
        logging.getLogger(name).removeHandler(handler)


def _detach_store_logging(node_log: NodeLog) -> None:
    global _attached
    with _attach_lock:
        if _attached is not None and _attached[0] is node_log:
            _remove_handler(_attached[1])
            _attached = None
