"""One cgroup (v2) per exec service, so a service's whole process tree is tracked and stopped.

A process group is not enough: a service that forks away from it (``setsid cmd &``, a
daemon that double-forks) escapes ``killpg`` and survives stop, then runs twice after a
relocate. A cgroup cannot be left by forking; only a privileged write to another cgroup's
``cgroup.procs`` moves a process out.

Layout (node-scoped, so several lab daemons on one machine never touch each other's)::

    <v2 root>/harepl/<node scope>/<safe sid>@<hash of run_dir and sid>

- ``<v2 root>``: the cgroup2 mount, ``/sys/fs/cgroup`` on a pure-v2 host (Debian 12) or
  ``/sys/fs/cgroup/unified`` on a hybrid one (v1 controllers, v2 for tracking only). No
  controller is enabled: the cgroups only track processes.
- ``<node scope>``: the node name, plus a hash of the lab's node marker
  (``HAREPL_LAB_NODE``) when there is one: every lab has a ``node1``.
- the leaf hashes the run dir too: two agents with the same node name but separate run
  dirs (tests, several labs) have separate cgroups.

Stop: SIGTERM to every member, a grace period, then ``cgroup.kill`` (kernel >= 5.14; else
a SIGKILL loop over ``cgroup.procs`` until empty), then ``rmdir``. A node's power-off
(``harepl lab kill``, the process watchdog) kills the whole ``<node scope>`` subtree
(:func:`kill_node_tree`). Zombies are not members (the kernel drops them from
``cgroup.procs``), so an unreaped leader does not keep a cgroup populated.

Standard library only, and no package imports: ``watchdog_proc.py`` loads this file by path
so it still starts fast.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import signal
import time
from pathlib import Path

MARKER_ENV = "HAREPL_LAB_NODE"  # the lab's mark of a node's processes (see harepl.runtime.procs)
TOP = "harepl"


def _safe(name: str, limit: int = 100) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:limit] or "_"


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:10]


def _v2_mounts() -> list[Path]:
    out = []
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                pre, _, post = line.partition(" - ")
                if post.split(" ", 1)[0] == "cgroup2":
                    out.append(Path(pre.split(" ")[4]))
    except OSError:
        pass
    # a pure-v2 host mounts it at /sys/fs/cgroup; prefer that, then the hybrid 'unified'
    rank = {Path("/sys/fs/cgroup"): 0, Path("/sys/fs/cgroup/unified"): 1}
    return sorted(out, key=lambda p: rank.get(p, 2))


@functools.lru_cache(maxsize=1)
def v2_root() -> Path | None:
    """The writable cgroup2 mount (probed once per process: create and remove a cgroup under
    ``harepl/``), or None: then exec services fall back to process-group tracking."""
    for mount in _v2_mounts():
        probe = mount / TOP / f".probe-{os.getpid()}"
        try:
            probe.mkdir(parents=True, exist_ok=True)
            probe.rmdir()
        except OSError:
            continue
        return mount
    return None


def node_scope(node: str, marker: str | None = None) -> str:
    return _safe(node or "_") + (f"-{_hash(marker)}" if marker else "")


def node_path(node: str, marker: str | None = None, root: Path | None = None) -> Path | None:
    """``<v2 root>/harepl/<node scope>``, or None without a writable cgroup v2."""
    root = root or v2_root()
    return root / TOP / node_scope(node, marker) if root else None


def service_path(node: str, marker: str | None, run_dir: str, sid: str) -> Path | None:
    base = node_path(node, marker)
    if base is None:
        return None
    return base / f"{_safe(sid)}@{_hash(os.path.abspath(run_dir) + chr(0) + sid)}"


# --- membership ---------------------------------------------------------------------------
def create(path: Path) -> None:
    for _ in range(3):  # a node-tree kill may remove the node's directory meanwhile
        try:
            path.mkdir(parents=True, exist_ok=True)
            return
        except FileNotFoundError:
            continue
    path.mkdir(parents=True, exist_ok=True)


def join(path: Path, pid: int) -> None:
    """Move ``pid`` into the cgroup; its later children are born there."""
    with open(path / "cgroup.procs", "w") as fh:
        fh.write(f"{pid}\n")


def _subtree(path: Path) -> list[Path]:
    """The cgroup and every descendant, deepest first (the order rmdir needs)."""
    out: list[Path] = []
    for dirpath, _dirs, _files in os.walk(path):
        out.append(Path(dirpath))
    return sorted(out, key=lambda p: len(p.parts), reverse=True)


def pids(path: Path) -> list[int]:
    """Live members of the cgroup and its descendants (zombies are not members)."""
    found: list[int] = []
    for cg in _subtree(path):
        try:
            with open(cg / "cgroup.procs") as fh:
                found.extend(int(x) for x in fh.read().split())
        except (OSError, ValueError):
            pass
    return found


def populated(path: Path) -> bool:
    try:
        with open(path / "cgroup.events") as fh:
            for line in fh:
                key, _, value = line.partition(" ")
                if key == "populated":
                    return value.strip() != "0"
    except OSError:
        return False  # no such cgroup: nothing in it
    return bool(pids(path))


def signal_all(path: Path, sig: int) -> None:
    for pid in pids(path):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _kill_once(path: Path) -> None:
    try:
        with open(path / "cgroup.kill", "w") as fh:
            fh.write("1\n")  # atomic for the subtree: no fork can slip through
        return
    except FileNotFoundError:
        if not path.exists():
            return
    except OSError:
        pass
    signal_all(path, signal.SIGKILL)  # kernels < 5.14: loop until empty (see kill)


def remove(path: Path) -> bool:
    """rmdir the (empty) subtree, deepest first; True when it is gone."""
    for cg in _subtree(path):
        for _ in range(20):
            try:
                cg.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:  # EBUSY: a member is still exiting
                time.sleep(0.01)
    return not path.exists()


def _wait_empty(path: Path, timeout_s: float, poll_s: float) -> bool:
    """Poll from 1 ms up to ``poll_s``: most services exit within milliseconds of a signal."""
    deadline = time.monotonic() + timeout_s
    pause = 0.001
    while populated(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, poll_s)
    return True


def kill(path: Path, timeout_s: float = 5.0, poll_s: float = 0.02) -> list[int]:
    """SIGKILL every member until the subtree is empty (bounded), then remove it. Returns the
    pids still there at the end (normally none: only D-state sleepers delay SIGKILL)."""
    deadline = time.monotonic() + timeout_s
    while populated(path):
        if time.monotonic() > deadline:
            return pids(path)
        _kill_once(path)
        _wait_empty(path, min(poll_s, max(0.0, deadline - time.monotonic())), poll_s)
    remove(path)
    return []


def stop(path: Path, grace_s: float, poll_s: float = 0.05) -> bool:
    """SIGTERM every member, wait up to ``grace_s`` for the cgroup to empty, then kill it.
    True when nothing is left (and the cgroup is removed)."""
    if populated(path):
        if grace_s > 0:
            signal_all(path, signal.SIGTERM)
            _wait_empty(path, grace_s, poll_s)
        if kill(path, timeout_s=5.0):
            return False
    remove(path)
    return True


def kill_node_tree(node: str, marker: str | None = None, timeout_s: float = 5.0,
                   root: Path | None = None) -> list[int]:
    """Power-off of a node: kill every service cgroup of ``node`` (and ``marker``, the lab's
    node mark) and remove them. Returns the survivors (normally none); [] without cgroup v2."""
    path = node_path(node, marker, root)
    if path is None or not path.exists():
        return []
    return kill(path, timeout_s)
