"""A 3-node harepl cluster in network namespaces: real partitions between real daemons.

Topology (names carry a random suffix so parallel runs never collide):

    root ns:  bridge hb<sfx>  <- veth hv<sfx><i> (bridge port)
    ns hn<sfx><i>:            veth hp<sfx><i>  10.<a>.<b>.<i>/24, lo up

Each daemon runs as `ip netns exec hn<sfx><i> python -m harepl.runtime.daemon_cli ...` in its
own session (setsid), so the lab's kill/pause (whole-session SIGKILL, SIGSTOP of the daemon)
and its process watchdog work as on 127.0.0.1. `ip netns exec` execs the command: the PID
we get back is the daemon itself.

A partition takes the node's bridge port down: every packet to and from the node is
dropped (open TCP connections stall, as on a cut cable); healing brings it up again.
The API is a Unix socket on the shared filesystem, so `ha-manager` in the root namespace
reaches every node, partitioned or not; the witness ledger and its lock directory are on
the shared filesystem too, so flock catches a double run across namespaces.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from harepl.runtime import procs
from harepl.runtime.lab import Lab, LabError, LabNode

RAFT_PORT = 5405


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: rc {proc.returncode}: {proc.stderr.strip()}")
    return proc


class Topology:
    """Namespaces, veth pairs and a bridge; `teardown()` removes whatever was created."""

    def __init__(self, n_nodes: int) -> None:
        self.sfx = secrets.token_hex(2)
        # a /24 of its own per run (the bridge has no address in the root namespace, so
        # even a clash with another run would stay on separate bridges)
        self.net = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(256)}"
        self.names = [f"node{i}" for i in range(1, n_nodes + 1)]
        self.bridge = f"hb{self.sfx}"
        self.created_ns: list[str] = []
        self.bridge_created = False

    def ns(self, node: str) -> str:
        return f"hn{self.sfx}{self._i(node)}"

    def port(self, node: str) -> str:
        return f"hv{self.sfx}{self._i(node)}"

    def address(self, node: str) -> str:
        return f"{self.net}.{self._i(node)}"

    def _i(self, node: str) -> int:
        return self.names.index(node) + 1

    def setup(self) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        self.bridge_created = True
        ip("link", "set", self.bridge, "up")
        for node in self.names:
            ns, port, peer = self.ns(node), self.port(node), f"hp{self.sfx}{self._i(node)}"
            ip("netns", "add", ns)
            self.created_ns.append(ns)
            ip("link", "add", port, "type", "veth", "peer", "name", peer)
            ip("link", "set", peer, "netns", ns)
            ip("link", "set", port, "master", self.bridge)
            ip("link", "set", port, "up")
            ip("-n", ns, "addr", "add", f"{self.address(node)}/24", "dev", peer)
            ip("-n", ns, "link", "set", peer, "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def partition(self, node: str) -> None:
        """Cut `node` off from every other node."""
        ip("link", "set", self.port(node), "down")

    def heal(self, node: str) -> None:
        ip("link", "set", self.port(node), "up")

    def cut(self, a: str, b: str) -> None:
        """Partial partition: `a` and `b` no longer reach each other (a blackhole route
        each way), while both still reach everybody else.  Idempotent: overlapping
        nemesis faults may cut the same pair twice (the first heal then heals both)."""
        ip("-n", self.ns(a), "route", "replace", "blackhole", f"{self.address(b)}/32")
        ip("-n", self.ns(b), "route", "replace", "blackhole", f"{self.address(a)}/32")

    def uncut(self, a: str, b: str) -> None:
        ip("-n", self.ns(a), "route", "del", "blackhole", f"{self.address(b)}/32", check=False)
        ip("-n", self.ns(b), "route", "del", "blackhole", f"{self.address(a)}/32", check=False)

    def is_cut(self, node: str) -> bool:
        out = ip("-o", "link", "show", self.port(node)).stdout
        return "state DOWN" in out or "<BROADCAST,MULTICAST>" in out

    def teardown(self) -> list[str]:
        """Delete namespaces (their veth pairs go with them) and the bridge. Returns the
        errors, if any (the caller reports them; teardown never stops half-way)."""
        errors = []
        for ns in self.created_ns:
            proc = ip("netns", "del", ns, check=False)
            if proc.returncode != 0:
                errors.append(f"netns del {ns}: {proc.stderr.strip()}")
        self.created_ns = []
        if self.bridge_created:
            proc = ip("link", "del", self.bridge, check=False)
            if proc.returncode != 0:
                errors.append(f"link del {self.bridge}: {proc.stderr.strip()}")
            self.bridge_created = False
        return errors


class NetnsLab(Lab):
    """`harepl lab` with one network namespace per node: the same layout, configs and
    process handling (kill, pause, down), only addresses and the launch differ."""

    def __init__(self, directory: Path, topo: Topology) -> None:
        super().__init__(directory)
        self.topo = topo

    def _config_text(self, node: LabNode, profile: str, overrides: dict[str, float]) -> str:
        text = super()._config_text(node, profile, overrides)
        # the parent writes 127.0.0.1 and a free loopback port per node; here every node
        # has its own address (and its own port space)
        lines = text.split("\n")
        out: list[str] = []
        current: str | None = None
        for line in lines:
            if line.startswith("name = "):
                current = line.split('"')[1]
            if line.startswith("address = ") and current is not None:
                line = f'address = "{self.topo.address(current)}"'
            elif line.startswith("raft_port = "):
                line = f"raft_port = {RAFT_PORT}"
            out.append(line)
        return "\n".join(out)

    def start(self, name: str) -> int:
        node = self.node(name)
        if self._node_up(name):
            raise LabError(f"{name} is already running (pid {self.pid(name)})")
        node.api_socket.unlink(missing_ok=True)
        env = dict(os.environ)
        env[procs.MARKER_ENV] = node.marker
        with open(node.dir / "daemon.out", "ab") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.topo.ns(name),
                 sys.executable, "-m", "harepl.runtime.daemon_cli", "--config", str(node.config)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=node.dir, env=env, start_new_session=True, close_fds=True,
            )
        self.state.setdefault("pids", {})[name] = proc.pid
        self._save()
        return proc.pid

    def running_daemon(self, name: str) -> bool:
        return self._node_up(name)
