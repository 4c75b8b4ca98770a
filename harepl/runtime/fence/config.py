"""The node's fence devices (`[fence] config = "fence.cfg"` in harepl.toml) and the
runner the CRM master uses through `RuntimeEnv.fence_device`.

fence.cfg is Proxmox's format (`harepl/core/fencing.py`); it holds the devices'
credentials, so it must be a regular file readable by its owner only (mode 0600, like the
cluster secret): `load_fence_cfg` refuses it otherwise, in one line. Every node that may
become master needs the same file (Proxmox keeps it in /etc/pve/ha/fence.cfg, replicated).
Nothing here logs an argument value of a secret key: `Call.shown()` masks them.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

from harepl.core.fencing import Call, DeviceResult, FenceConfig, FenceConfigError, parse_fence_cfg
from harepl.runtime.fence.agent import fence_level, status_of

Log = Callable[[str, str], None]


class FenceSetupError(ValueError):
    """One line naming the file and the problem."""


def load_fence_cfg(path: Path) -> FenceConfig:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise FenceSetupError(f"fence.config: cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise FenceSetupError(f"fence.config: {path} is not a regular file")
    if st.st_mode & 0o077:
        raise FenceSetupError(f"fence.config: {path} holds fence device credentials but is readable by others "
                              f"(mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it")
    try:
        return parse_fence_cfg(path.read_text(encoding="utf-8"))
    except FenceConfigError as exc:
        raise FenceSetupError(f"fence.config: {path}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FenceSetupError(f"fence.config: cannot read {path}: {exc}") from None


class FenceRunner:
    """Runs a node's fence levels in the background for the CRM master: `attempt` starts
    one and returns None while it runs, then its result once."""

    def __init__(self, cfg: FenceConfig, log: Log, run_level: Callable[[list[Call]], DeviceResult] = fence_level,
                 probe: Callable[[Call], str] = status_of) -> None:
        self.cfg = cfg
        self.log = log
        self.run_level = run_level
        self.probe = probe
        self._lock = threading.Lock()
        self._running: set[tuple[str, int]] = set()
        self._done: dict[tuple[str, int], DeviceResult] = {}
        self.health: dict[str, str] = {}  # device -> "ok" | "failed: ..." (monitor)
        self.history: list[tuple[float, str, int, DeviceResult]] = []  # (monotonic end, node, level, result)

    def levels(self, node: str) -> list[list[Call]]:
        return self.cfg.levels(node)

    def busy(self, node: str, level: int) -> bool:
        """An attempt of this level runs, or its result waits to be taken."""
        with self._lock:
            return (node, level) in self._running or (node, level) in self._done

    def attempt(self, node: str, level: int) -> DeviceResult | None:
        key = (node, level)
        with self._lock:
            if key in self._done:
                return self._done.pop(key)
            if key in self._running:
                return None
            levels = self.cfg.levels(node)
            if level >= len(levels):
                return DeviceResult(False, f"no fence device level {level + 1} for node '{node}'")
            self._running.add(key)
        calls = levels[level]
        self.log("notice", f"fencing node '{node}': level {level + 1}/{len(levels)}: "
                           + ", ".join(c.shown() for c in calls))
        threading.Thread(target=self._run, args=(key, calls), daemon=True, name=f"fence-{node}").start()
        return None

    def _run(self, key: tuple[str, int], calls: list[Call]) -> None:
        try:
            res = self.run_level(calls)
        except Exception as exc:  # noqa: BLE001 - a broken agent is a failed device
            res = DeviceResult(False, f"{type(exc).__name__}: {exc}")
        self.log("notice" if res.off else "err", f"fencing node '{key[0]}' level {key[1] + 1}: "
                 f"{'confirmed off' if res.off else 'FAILED'} in {res.seconds:.1f} s: {res.detail}")
        with self._lock:
            self._running.discard(key)
            self._done[key] = res
            self.history.append((time.monotonic(), key[0], key[1], res))

    def monitor(self) -> dict[str, str]:
        """`status` of every device for each node it is connected to (never `off`):
        device -> 'on' | 'off' | 'failed: why'."""
        out: dict[str, str] = {}
        for node in self.cfg.nodes():
            for level in self.cfg.levels(node):
                for call in level:
                    out[f"{call.device} -> {node}"] = self.probe(call)
        with self._lock:
            self.health = out
        return out
