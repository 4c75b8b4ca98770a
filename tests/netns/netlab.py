"""A 3-node harepl cluster in network namespaces: real partitions between real daemons.

Topology (names carry a random suffix so parallel runs never collide):

    root ns:  bridge hb<sfx>  <- veth hv<sfx><i> (bridge port)
    ns hn<sfx><i>:            veth hp<sfx><i>  10.<a>.<b>.<i>/24, lo up

Each daemon runs as `nsenter --net=/run/netns/hn<sfx><i> python -m harepl.runtime.daemon_cli
...` in its own session (setsid), so the lab's kill/pause (whole-session SIGKILL, SIGSTOP of
the daemon) and its process watchdog work as on 127.0.0.1. nsenter execs the command: the
PID we get back is the daemon itself. It enters the network namespace only: `ip netns exec`
would also give the daemon a mount namespace with a fresh /sys, without /sys/fs/cgroup, and
the exec agent would fall back to process groups instead of a cgroup per service.

A partition takes the node's bridge port down: every packet to and from the node is
dropped (open TCP connections stall, as on a cut cable); healing brings it up again.

Degraded links, for the Jepsen nemesis (this kernel has no netem):

- packet loss: an nftables table in the node's namespace drops a share of the packets
  on its veth, both ways (`numgen random mod 100 < P drop`);
- delay: a userspace relay (relay.py) in the namespace of the node that opens the Raft
  connection (pysyncobj: the one with the larger address), with an nftables DNAT rule
  sending that node's connections to the peer's Raft port through it; the direct
  connection is killed (`ss -K`) so the next one goes through the relay;
- an outsider: one more namespace on the bridge, no member, for garbage on Raft ports.
The API is a Unix socket on the shared filesystem, so `ha-manager` in the root namespace
reaches every node, partitioned or not; the witness ledger and its lock directory are on
the shared filesystem too, so flock catches a double run across namespaces.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from harepl.runtime import procs
from harepl.runtime.lab import Lab, LabError, LabNode

RAFT_PORT = 5405
RELAY_PORT_BASE = 15400  # the relay toward node i listens on RELAY_PORT_BASE + i
RELAY_MARK = 0x4  # the relay's own upstream connections: not redirected again
HERE = Path(__file__).resolve().parent


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
        self.relays: dict[tuple[str, str], subprocess.Popen[str]] = {}

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

    # --- degraded links -----------------------------------------------------------
    def nft(self, ns: str, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script,
                              capture_output=True, text=True, timeout=30)
        if check and proc.returncode != 0:
            raise LabError(f"nft in {ns}: rc {proc.returncode}: {proc.stderr.strip()}\n{script}")
        return proc

    def loss(self, node: str, percent: int) -> None:
        """Drop `percent`% of the packets to and from `node` on its link (nftables,
        numgen random), until `unloss`."""
        dev = f"hp{self.sfx}{self._i(node)}"
        self.nft(self.ns(node), f"""
table inet harepl_loss {{
  chain in {{ type filter hook input priority -10; iifname "{dev}" numgen random mod 100 < {percent} counter drop; }}
  chain out {{ type filter hook output priority -10; oifname "{dev}" numgen random mod 100 < {percent} counter drop; }}
}}
""")

    def unloss(self, node: str) -> int:
        """Remove the loss; returns how many packets it dropped."""
        listing = self.nft(self.ns(node), "list table inet harepl_loss\n", check=False).stdout
        dropped = sum(int(w) for w in re.findall(r"counter packets (\d+)", listing))
        self.nft(self.ns(node), "delete table inet harepl_loss\n", check=False)
        return dropped

    def delay(self, node: str, delay_ms: float, jitter_ms: float) -> list[tuple[str, str]]:
        """Delay every Raft connection of `node` by `delay_ms` (+ up to `jitter_ms`) each
        way through relays; returns the links (connector, target) it delayed (a link
        already delayed by another fault is left as it is)."""
        done = []
        for peer in self.names:
            if peer == node:
                continue
            # pysyncobj: the node with the larger "address:port" string connects
            conn, target = (node, peer) if self.address(node) > self.address(peer) else (peer, node)
            if (conn, target) in self.relays:
                continue
            self._start_relay(conn, target, delay_ms, jitter_ms)
            done.append((conn, target))
        return done

    def undelay(self, links: list[tuple[str, str]]) -> None:
        for conn, target in links:
            self.nft(self.ns(conn), f"delete table ip harepl_delay{self._i(target)}\n", check=False)
            proc = self.relays.pop((conn, target), None)
            if proc is not None:
                stop_process(proc)

    def _start_relay(self, conn: str, target: str, delay_ms: float, jitter_ms: float) -> None:
        ns, ti = self.ns(conn), self._i(target)
        listen = f"{self.address(conn)}:{RELAY_PORT_BASE + ti}"
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, str(HERE / "relay.py"), "--listen", listen,
             "--target", f"{self.address(target)}:{RAFT_PORT}", "--delay-ms", f"{delay_ms:.0f}",
             "--jitter-ms", f"{jitter_ms:.0f}", "--mark", hex(RELAY_MARK)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True, close_fds=True)
        self.relays[(conn, target)] = proc
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "listening":
            self.undelay([(conn, target)])
            raise LabError(f"relay {conn} -> {target} did not start: {line!r}")
        self.nft(ns, f"""
table ip harepl_delay{ti} {{
  chain out {{ type nat hook output priority -100; meta mark != {RELAY_MARK:#x} ip daddr {self.address(target)} tcp dport {RAFT_PORT} dnat to {listen}; }}
}}
""")
        # the open connection does not see a new NAT rule: end it, the next one is relayed
        subprocess.run(["ip", "netns", "exec", ns, "ss", "-K", "dst", self.address(target), "dport", "=",
                        f":{RAFT_PORT}"], capture_output=True, timeout=30)

    # --- an outsider -------------------------------------------------------------
    def add_outsider(self) -> str:
        """One more namespace on the bridge, not a member; returns its namespace name
        (its address is `outsider_address`)."""
        ns, port, peer = f"hn{self.sfx}x", f"hv{self.sfx}x", f"hp{self.sfx}x"
        if ns in self.created_ns:
            return ns
        ip("netns", "add", ns)
        self.created_ns.append(ns)
        ip("link", "add", port, "type", "veth", "peer", "name", peer)
        ip("link", "set", peer, "netns", ns)
        ip("link", "set", port, "master", self.bridge)
        ip("link", "set", port, "up")
        ip("-n", ns, "addr", "add", f"{self.outsider_address}/24", "dev", peer)
        ip("-n", ns, "link", "set", peer, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        return ns

    @property
    def outsider_address(self) -> str:
        return f"{self.net}.100"

    def spawn(self, ns: str, *argv: str) -> subprocess.Popen[str]:
        """A helper process inside `ns` (its own session; `stop_process` ends it)."""
        return subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True, close_fds=True)

    def teardown(self) -> list[str]:
        """Delete namespaces (their veth pairs go with them) and the bridge. Returns the
        errors, if any (the caller reports them; teardown never stops half-way)."""
        errors = []
        self.undelay(list(self.relays))
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


def stop_process(proc: subprocess.Popen[str], grace_s: float = 3.0) -> None:
    """SIGTERM the helper's session, SIGKILL after `grace_s`; reap it."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is not None:
            break
    proc.wait(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()


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
                ["nsenter", f"--net=/run/netns/{self.topo.ns(name)}",
                 sys.executable, "-m", "harepl.runtime.daemon_cli", "--config", str(node.config)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=node.dir, env=env, start_new_session=True, close_fds=True,
            )
        self.state.setdefault("pids", {})[name] = proc.pid
        self._save()
        return proc.pid

    def running_daemon(self, name: str) -> bool:
        return self._node_up(name)
