"""This node's static capacity (CPUs, memory), published into the store at daemon start.

The 'static' CRS scheduler (datacenter `crs: ha=static`) weighs each node's configured
load against its capacity, as Proxmox's static scheduler does with a node's `maxcpu`
(logical CPUs) and `maxmem` (bytes of RAM). Each daemon publishes its own numbers once it
can commit (`node_stats_set`); an unchanged re-publish leaves no history.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from harepl.store import vocabulary as C
from harepl.store.client import Client

MEMINFO = Path("/proc/meminfo")
# while an older node runs (rolling upgrade), node_stats_set is refused: ask again this often
UNSUPPORTED_RETRY_S = 30.0


def local_static_stats(meminfo: Path = MEMINFO) -> tuple[int, int]:
    """(logical CPUs, memory bytes) of this machine; ValueError if unreadable."""
    cpus = os.cpu_count() or 0
    mem_bytes = 0
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                value, _, unit = line.split(":", 1)[1].strip().partition(" ")
                mem_bytes = int(value) * (1024 if unit.strip().lower() == "kb" else 1)
                break
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {meminfo}: {exc}") from None
    if cpus <= 0 or mem_bytes <= 0:
        raise ValueError(f"no CPU count or MemTotal (cpus={cpus}, mem={mem_bytes})")
    return cpus, mem_bytes


def publish(client: Client, node: str, stop: threading.Event, log: Callable[[str, str], None],
            timeout_s: float = 5.0, retry_s: float = 1.0) -> bool:
    """Commit this node's capacity, retrying until it is committed or `stop` is set."""
    try:
        cpus, mem_bytes = local_static_stats()
    except ValueError as exc:
        log("warn", f"static node stats not published: {exc}")
        return False
    while not stop.is_set():
        try:
            res = client.submit(C.node_stats_set(node, cpus, mem_bytes), timeout_s)
        except Exception:  # noqa: BLE001 - no quorum yet: try again
            stop.wait(retry_s)
            continue
        if res.get("ok"):
            log("info", f"published static node stats: maxcpu {cpus}, maxmem {mem_bytes >> 20} MiB")
            return True
        if res.get("reason") == "unsupported":  # a node not upgraded yet: try again later
            stop.wait(UNSUPPORTED_RETRY_S)
            continue
        log("warn", f"static node stats rejected: {res.get('error')}")
        return False
    return False
