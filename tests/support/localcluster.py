"""Real store member processes (`STORE_NODE`: tests/support/store_node.py) on 127.0.0.1,
for the tests and `bench/raft.py`.  Not used by the daemon, so not in the package."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the command line of one store member process (arguments follow)
STORE_NODE: list[str] = [sys.executable, str(Path(__file__).with_name("store_node.py"))]


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


@dataclass
class Member:
    addr: str
    data_dir: str
    log_path: str
    proc: subprocess.Popen[bytes] | None = None
    stopped: bool = False

    @property
    def control(self) -> str:
        return os.path.join(self.data_dir, "control.sock")

    def call(self, req: dict[str, Any], timeout_s: float = 30.0) -> Any:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout_s)
            s.connect(self.control)
            s.sendall((json.dumps(req) + "\n").encode())
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(1 << 20)
                if not chunk:
                    raise ConnectionError(f"{self.addr}: control connection closed")
                buf += chunk
        reply = json.loads(buf)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply["result"]

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()


@dataclass
class Cluster:
    root: str
    size: int
    secret_file: str = ""
    extra_args: list[str] = field(default_factory=list)
    members: list[Member] = field(default_factory=list)

    def __post_init__(self) -> None:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self.secret_file = os.path.join(self.root, "secret")
        fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, os.urandom(24).hex().encode())
        os.close(fd)
        for i, port in enumerate(free_ports(self.size)):
            d = os.path.join(self.root, f"n{i + 1}")
            self.members.append(Member(f"127.0.0.1:{port}", d, os.path.join(self.root, f"n{i + 1}.log")))

    @property
    def peers(self) -> str:
        return ",".join(m.addr for m in self.members)

    #: how long a started member may take to answer on its control socket
    start_timeout_s = 20.0

    def command(self, m: Member, peers: str | None = None, extra: list[str] | None = None) -> list[str]:
        """The member's command line (subclasses wrap it, e.g. in a network namespace)."""
        return [*STORE_NODE, "--addr", m.addr, "--peers", peers or self.peers,
                "--data-dir", m.data_dir, "--secret-file", self.secret_file, *self.extra_args, *(extra or [])]

    def process_env(self) -> dict[str, str] | None:
        return None  # inherit ours

    def start(self, m: Member, peers: str | None = None, extra: list[str] | None = None) -> None:
        logf = open(m.log_path, "ab")
        m.proc = subprocess.Popen(self.command(m, peers, extra), stdout=logf, stderr=logf,
                                  start_new_session=True, env=self.process_env())
        m.stopped = False
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if m.proc.poll() is not None:
                raise RuntimeError(f"{m.addr} exited: {m.log()[-2000:]}")
            try:
                m.call({"call": "status"}, timeout_s=2)
                return
            except (OSError, ConnectionError):
                time.sleep(0.05)
        raise RuntimeError(f"{m.addr} did not come up")

    def start_all(self) -> None:
        for m in self.members:
            self.start(m)

    def kill(self, m: Member) -> None:
        assert m.proc is not None
        m.proc.send_signal(signal.SIGKILL)
        m.proc.wait()

    def pause(self, m: Member) -> None:
        assert m.proc is not None
        m.proc.send_signal(signal.SIGSTOP)
        m.stopped = True

    def resume(self, m: Member) -> None:
        assert m.proc is not None
        m.proc.send_signal(signal.SIGCONT)
        m.stopped = False

    def alive(self) -> list[Member]:
        return [m for m in self.members if m.proc is not None and m.proc.poll() is None and not m.stopped]

    def wait_leader(self, among: list[Member] | None = None, timeout_s: float = 30) -> Member:
        among = among or self.alive()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for m in among:
                try:
                    st = m.call({"call": "status"}, timeout_s=2)
                except (OSError, ConnectionError, RuntimeError):
                    continue
                if st["state"] == "leader" and st["quorum"]:
                    return m
            time.sleep(0.05)
        raise AssertionError("no quorate leader elected")

    def submit(self, m: Member, cmd: dict[str, Any], timeout_s: float = 10) -> dict[str, Any]:
        return m.call({"call": "submit", "cmd": cmd, "timeout": timeout_s}, timeout_s=timeout_s + 5)  # type: ignore[no-any-return]

    def wait_applied(self, members: list[Member], count: int, timeout_s: float = 30) -> None:
        """Wait until each member's database applied at least `count` commands."""
        deadline = time.monotonic() + timeout_s
        for m in members:
            while m.call({"call": "read", "what": "applied_count", "linearizable": False}) < count:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{m.addr} did not catch up")
                time.sleep(0.05)

    def dumps(self, members: list[Member] | None = None) -> list[str]:
        """SQLite dumps of the members after they all applied one last command (reads
        with linearizable=True commit barriers, so the members must settle first)."""
        members = members or self.alive()
        last = self.submit(members[0], {"v": 1, "id": os.urandom(8).hex(), "op": "noop", "ts": 0})
        self.wait_applied(members, last["seq"])
        return [m.call({"call": "dump", "linearizable": False}) for m in members]

    def stop_all(self) -> None:
        for m in self.members:
            if m.proc is not None and m.proc.poll() is None:
                if m.stopped:
                    m.proc.send_signal(signal.SIGCONT)
                m.proc.send_signal(signal.SIGKILL)
                m.proc.wait()
