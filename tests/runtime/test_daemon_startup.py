"""Start-up that explains itself (issue 14): each start-up failure is one line on stderr
naming the cause and the key to fix, exit 2, no traceback; `harepl daemon --check` finds
it before start; the daemon (not --check) writes the same line into its harepl.log.

Real processes (`python -m harepl.runtime.daemon_cli`, what `harepl daemon` runs), real sockets on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harepl.runtime.lab import _free_ports

ROOT = Path(__file__).resolve().parents[2]
SECRET = "k7Qw0p2n-Zx3vY8rT5uJ1sLm4Hq9Ab6C"  # 32 bytes


def config_text(raft_port: int, extra_top: str = "", api: str = 'socket = "api.sock"',
                timing: str = 'profile = "fast"') -> str:
    return f"""node = "n1"
data_dir = "data"
secret_file = "secret"
log_file = "harepl.log"
{extra_top}
[[nodes]]
name = "n1"
address = "127.0.0.1"
raft_port = {raft_port}

[api]
{api}

[timing]
{timing}

[watchdog]
backend = "process"
"""


class Node:
    """A config directory for node n1 of a one-member cluster."""

    def __init__(self, d: Path, raft_port: int) -> None:
        self.dir = d
        self.raft_port = raft_port
        self.write_secret(SECRET)
        self.write(config_text(raft_port))

    @property
    def config(self) -> Path:
        return self.dir / "harepl.toml"

    @property
    def log(self) -> Path:
        return self.dir / "harepl.log"

    def write(self, text: str) -> None:
        self.config.write_text(text)

    def write_secret(self, text: str) -> None:
        p = self.dir / "secret"
        p.write_text(text + "\n")
        os.chmod(p, 0o600)

    def run(self, *args: str, user: int | None = None, timeout: float = 60.0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "harepl.runtime.daemon_cli", "--config", str(self.config), *args]
        if user is not None:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})

    def start(self, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        cmd = [sys.executable, "-m", "harepl.runtime.daemon_cli", "--config", str(self.config)]
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path, _free_ports(1)[0])


def refused(node: Node, line: str, *, start: bool = True) -> None:
    """--check and a real start both print exactly `line` (after 'harepl daemon: ') and
    exit 2; the start also logs it in harepl.log."""
    check = node.run("--check")
    assert (check.returncode, check.stderr, check.stdout) == (2, f"harepl daemon: {line}\n", "")
    if not start:
        return
    if node.log.is_file():
        node.log.unlink()
    run = node.run()
    assert (run.returncode, run.stderr) == (2, f"harepl daemon: {line}\n"), run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    logged = node.log.read_text() if node.log.is_file() else ""
    assert "harepl-daemon[" in logged and f"err: refusing to start: {line}\n" in logged, logged


def listener(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def test_a_good_config_passes_check(node: Node) -> None:
    r = node.run("--check")
    assert r.returncode == 0 and r.stdout.startswith("config OK: node n1, 1 members, profile fast"), r
    assert not (node.dir / "data").exists()  # --check creates nothing


def test_raft_port_already_bound(node: Node) -> None:
    with listener(node.raft_port):
        refused(node, f"{node.config}: nodes[0].raft_port: node n1's Raft port 127.0.0.1:{node.raft_port} "
                      "is already in use (is this node's daemon already running? stop what listens "
                      "there, or change nodes[0].raft_port)")


def test_tcp_api_port_in_use(node: Node) -> None:
    (api_port,) = _free_ports(1)
    token = node.dir / "token"
    token.write_text("t0ken-t0ken-t0ken-t0ken\n")
    os.chmod(token, 0o600)
    node.write(config_text(node.raft_port, api=f'socket = "api.sock"\ntcp = "127.0.0.1:{api_port}"\n'
                                               'token_file = "token"'))
    with listener(api_port):
        refused(node, f"{node.config}: api.tcp: TCP API port 127.0.0.1:{api_port} is already in use (is "
                      "this node's daemon already running? stop what listens there, or change api.tcp)")


def test_data_dir_that_is_a_file(node: Node) -> None:
    (node.dir / "data").write_text("not a directory\n")
    refused(node, f"{node.config}: data_dir: {node.dir / 'data'} exists and is not a directory (move it "
                  "away, or point data_dir elsewhere)")


def test_infinite_lease_timeout(node: Node) -> None:
    node.write(config_text(node.raft_port, timing='profile = "fast"\nlease_timeout_s = inf'))
    refused(node, f"{node.config}: timing.lease_timeout_s: must be a finite number of seconds (got inf)")


def test_nan_timing(node: Node) -> None:
    node.write(config_text(node.raft_port, timing='profile = "fast"\nmargin_s = nan'))
    refused(node, f"{node.config}: timing.margin_s: must be a finite number of seconds (got nan)",
            start=False)


def test_secret_shorter_than_16_bytes(node: Node) -> None:
    node.write_secret("abc")
    s = node.dir / "secret"
    refused(node, f"{node.config}: secret_file: {s} holds 3 bytes, a cluster secret needs at least 16 "
                  f"(make one: head -c 32 /dev/urandom | base64 > {s}; chmod 600 {s})")


def test_secret_readable_by_others(node: Node) -> None:
    os.chmod(node.dir / "secret", 0o644)
    refused(node, f"{node.config}: secret_file: {node.dir / 'secret'} is readable by others (mode 0644); "
                  "chmod 600 it", start=False)


def test_log_file_that_is_a_directory(node: Node) -> None:
    node.write(config_text(node.raft_port).replace('log_file = "harepl.log"', 'log_file = "logs"'))
    (node.dir / "logs").mkdir()
    refused(node, f"{node.config}: log_file: {node.dir / 'logs'} is a directory, not a file (point "
                  "log_file at a file)", start=False)
    r = node.run()
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "log_file:" in r.stderr


def test_api_socket_under_a_file(node: Node) -> None:
    (node.dir / "run").write_text("")
    node.write(config_text(node.raft_port, api='socket = "run/api.sock"'))
    refused(node, f"{node.config}: api.socket: {node.dir / 'run'} exists and is not a directory (move it "
                  "away, or point api.socket elsewhere)")


def test_api_socket_path_too_long(node: Node) -> None:
    long = "s" * 120 + ".sock"
    node.write(config_text(node.raft_port, api=f'socket = "{long}"'))
    n = len(os.fsencode(str(node.dir / long)))
    refused(node, f"{node.config}: api.socket: {node.dir / long} is {n} bytes long, a Unix socket path "
                  "may have at most 107 (choose a shorter path)")


def test_missing_secret_file_and_bad_toml(node: Node) -> None:
    (node.dir / "secret").unlink()
    refused(node, f"{node.config}: secret_file: cannot read {node.dir / 'secret'}: No such file or "
                  "directory")
    node.write("node = \n")
    r = node.run("--check")
    assert r.returncode == 2 and r.stderr.startswith(f"harepl daemon: {node.config}: invalid TOML:")
    assert r.stderr.count("\n") == 1


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory another user can enter (pytest's tmp_path is root-only)."""
    d = Path(tempfile.mkdtemp(prefix="harepl-perm-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to run the check as another user")
def test_data_dir_not_writable_by_the_daemon_user(world_dir: Path) -> None:
    nobody = 65534
    node = Node(world_dir, _free_ports(1)[0])
    os.chown(node.dir / "secret", nobody, nobody)
    os.chown(node.config, nobody, nobody)
    r = node.run("--check", user=nobody)
    assert (r.returncode, r.stderr) == (2, f"harepl daemon: {node.config}: data_dir: cannot create "
                                           f"{world_dir / 'data'}: {world_dir} is not writable by uid "
                                           f"{nobody} (chown/chmod it, or run as root)\n"), r.stderr
    os.chown(world_dir, nobody, nobody)
    r = node.run("--check", user=nobody)
    assert r.returncode == 0 and r.stdout.startswith("config OK"), r.stderr


@pytest.mark.cluster
def test_a_running_daemon_keeps_its_ports_and_socket(node: Node, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A second daemon of the same node, or another node's config pointing at the same
    API socket, is refused in one line; the running one is untouched. The running one
    also told systemd READY=1 over $NOTIFY_SOCKET (Type=notify)."""
    notify_path = tmp_path_factory.mktemp("notify") / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(30.0)
    proc = node.start(env={"NOTIFY_SOCKET": str(notify_path)})
    try:
        msg = notify.recv(4096).decode()
        assert msg.splitlines()[0] == "READY=1" and "STATUS=node n1: " in msg, msg
        while "STATUS=node n1: quorate" not in msg:  # one member: quorate at once
            msg = notify.recv(4096).decode()
        assert (node.dir / "api.sock").exists()
        refused(node, f"{node.config}: nodes[0].raft_port: node n1's Raft port 127.0.0.1:{node.raft_port} "
                      "is already in use (is this node's daemon already running? stop what listens "
                      "there, or change nodes[0].raft_port)")
        other = Node(tmp_path_factory.mktemp("other"), _free_ports(1)[0])
        other.write(config_text(other.raft_port, api=f'socket = "{node.dir / "api.sock"}"'))
        refused(other, f"{other.config}: api.socket: {node.dir / 'api.sock'} is already served by another "
                       "daemon (is this node's daemon already running? stop it, or give this one another "
                       "api.socket)")
        assert proc.poll() is None  # still running, still serving
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(str(node.dir / "api.sock"))
        probe.close()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        notify.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "stopped" not in node.log.read_text():
        time.sleep(0.1)
    assert "harepl-daemon[" in node.log.read_text()
