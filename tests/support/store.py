"""What Env-level tests over a real in-process Raft store share: free ports, a quorate
one-member store, and a node config with short test timings."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from harepl.runtime.config import Member, NodeConfig, Timing
from harepl.store.raft import StoreNode

TIMING = Timing(loop_s=0.2, lease_local_s=0.6, watchdog_s=0.8, lease_timeout_s=3.0, margin_s=0.1, max_workers=4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_config(node: str, tmp: Path, members: tuple[str, ...] = ("n1", "n2")) -> NodeConfig:
    return NodeConfig(node=node, members=tuple(Member(m, "127.0.0.1", i + 1) for i, m in enumerate(members)),
                      data_dir=tmp, secret_file=tmp / "s", api_socket=tmp / "a.sock", api_tcp=None,
                      api_token_file=None, profile="test", timing=TIMING, watchdog_backend="process",
                      watchdog_device=Path("/dev/watchdog"), log_file=tmp / f"{node}.log")


def wait_quorate(node: StoreNode, limit_s: float = 30.0) -> StoreNode:
    deadline = time.monotonic() + limit_s
    while not node.has_quorum():
        assert time.monotonic() < deadline, "the store never became quorate"
        time.sleep(0.05)
    return node


def one_member_store(tmp: Path, **kw: object) -> StoreNode:
    """A quorate one-member store in `tmp / 'store'` (kw: StoreNode options)."""
    addr = f"127.0.0.1:{free_port()}"
    return wait_quorate(StoreNode(addr, [addr], str(tmp / "store"), "test-secret", **kw))  # type: ignore[arg-type]
