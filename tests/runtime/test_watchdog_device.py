"""The device watchdog path a real node uses (issue 10): `backend = "device"` through the
multiplexer, `auto` saying what it chose and why, and an LRM that cannot arm its watchdog
starting nothing and saying so in `ha-manager status`.

NOT a real /dev/watchdog: opening one here would reset this machine (and this kernel has
neither softdog nor CUSE). The multiplexer (`harepl.runtime.watchdog_mux`, the process a real
node runs as `harepl-watchdog-mux.service`) is pointed at a **stand-in device file**
(`watchdog.device = "wd-standin"`): it sees that the file is not a watchdog device (the
WDIOC_SETTIMEOUT ioctl fails with ENOTTY) and writes its keep-alive bytes and its magic
close into the file, which is what these tests read. Everything else is real: the daemon,
its Raft store, the mux over its Unix socket, an exec service, ha-manager.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harepl.runtime.config import ConfigError, parse_config
from harepl.runtime.lab import _free_ports
from harepl.runtime.watchdog_setup import check_mux, mux_info, mux_timing, resolve
from tests.runtime.test_daemon_startup import ROOT, SECRET, Node, config_text

BIN = Path(sys.executable).parent


def wait_for(what: str, ok: Callable[[], object], timeout_s: float = 40.0) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = ok()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def device_config(node: Node, backend: str = "device", start_mux: bool = True, device: str = "wd-standin") -> None:
    text = config_text(node.raft_port).replace('[watchdog]\nbackend = "process"\n', "")
    node.write(text + f'[watchdog]\nbackend = "{backend}"\ndevice = "{device}"\nmux_socket = "mux.sock"\n'
                      f"start_mux = {'true' if start_mux else 'false'}\n")


def start_mux_by_hand(d: Path) -> subprocess.Popen[bytes]:
    dev_s, feed_s = mux_timing(3.0)
    proc = subprocess.Popen([sys.executable, "-m", "harepl.runtime.watchdog_mux", "--socket", str(d / "mux.sock"),
                             "--device", str(d / "wd-standin"), "--device-timeout-s", f"{dev_s:g}",
                             "--feed-interval-s", f"{feed_s:g}", "--log", str(d / "watchdog-mux.log")],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
                            stderr=subprocess.DEVNULL)
    wait_for("the mux to serve", lambda: mux_info(d / "mux.sock") is not None, 10)
    return proc


def session_pids(sid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                raw = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            if int(raw[raw.rfind(")") + 2:].split()[3]) == sid:
                out.append(int(name))
    return out


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path, _free_ports(1)[0])
    (tmp_path / "wd-standin").write_bytes(b"")
    yield n


def _cfg(tmp_path: Path, backend: str, start_mux: bool = False, watchdog_s: float = 3.0) -> object:
    (tmp_path / "secret").write_text(SECRET)
    os.chmod(tmp_path / "secret", 0o600)
    return parse_config({"node": "n1", "data_dir": "data", "secret_file": "secret",
                         "nodes": [{"name": "n1", "address": "127.0.0.1", "raft_port": 1}],
                         "api": {"socket": "api.sock"},
                         "timing": {"profile": "fast", "watchdog_s": watchdog_s, "lease_timeout_s": 9.0},
                         "watchdog": {"backend": backend, "device": "wd-standin", "mux_socket": "mux.sock",
                                      "start_mux": start_mux}}, base_dir=tmp_path)


def test_auto_says_what_it_found(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "auto")
    c = resolve(cfg)  # type: ignore[arg-type]
    assert (c.backend, c.level) == ("process", "info") and f"auto: no {tmp_path / 'wd-standin'}" in c.why
    (tmp_path / "wd-standin").write_bytes(b"")
    c = resolve(cfg)  # type: ignore[arg-type]
    assert (c.backend, c.level) == ("process", "warn")
    assert "exists but no watchdog multiplexer serves" in c.why and "harepl-watchdog-mux.service" in c.why
    mux = start_mux_by_hand(tmp_path)
    try:
        c = resolve(cfg)  # type: ignore[arg-type]
        assert c.backend == "device" and c.why.startswith(f"watchdog device {tmp_path / 'wd-standin'} through "
                                                          f"the multiplexer at {tmp_path / 'mux.sock'}")
    finally:
        mux.terminate()
        assert mux.wait(10) == 0  # no client: magic close
    assert (tmp_path / "wd-standin").read_bytes().endswith(b"V")


def test_device_timing_must_fit_the_mux(tmp_path: Path) -> None:
    """A mux whose device timeout + keep-alive interval exceed watchdog_s would refuse the
    LRM's open at every loop: refused at start-up instead, naming the key."""
    (tmp_path / "wd-standin").write_bytes(b"")
    proc = subprocess.Popen([sys.executable, "-m", "harepl.runtime.watchdog_mux", "--socket",
                             str(tmp_path / "mux.sock"), "--device", str(tmp_path / "wd-standin"),
                             "--device-timeout-s", "10", "--feed-interval-s", "1"],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.DEVNULL)
    try:
        wait_for("mux", lambda: mux_info(tmp_path / "mux.sock") is not None, 10)
        assert mux_info(tmp_path / "mux.sock") == (10.0, 1.0, False)
        with pytest.raises(ConfigError, match=r"^timing\.watchdog_s: 3 s, but the multiplexer at .* lets the "
                                              r"device fire 10 s after a keep-alive sent every 1 s"):
            check_mux(_cfg(tmp_path, "device"))  # type: ignore[arg-type]
    finally:
        proc.terminate()
        proc.wait(10)


def test_device_without_a_mux_is_refused_in_one_line(node: Node) -> None:
    device_config(node, start_mux=False)
    line = (f'{node.config}: watchdog.backend = "device" needs the watchdog multiplexer, but none serves '
            f'{node.dir / "mux.sock"} (systemctl start harepl-watchdog-mux; or set watchdog.start_mux = true; '
            'or watchdog.backend = "process")')
    check = node.run("--check")
    assert (check.returncode, check.stderr) == (2, f"harepl daemon: {line}\n")
    run = node.run()
    assert (run.returncode, run.stderr) == (2, f"harepl daemon: {line}\n")
    assert "Traceback" not in run.stderr + run.stdout


def test_a_missing_device_is_one_line_when_the_daemon_starts_the_mux(node: Node) -> None:
    device_config(node, device="no-such-watchdog")
    run = node.run()
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.count("\n") == 1 and "watchdog.device: " in run.stderr and "no-such-watchdog" in run.stderr


def test_auto_logs_its_choice(node: Node) -> None:
    device_config(node, backend="auto", start_mux=False)
    proc = node.start()
    try:
        wait_for("the watchdog line", lambda: node.log.is_file() and "watchdog: " in node.log.read_text())
        assert re.search(r"daemon\[\d+\]: warn: watchdog: process watchdog \(auto: .*wd-standin exists but no "
                         r"watchdog multiplexer serves .*mux\.sock; start harepl-watchdog-mux\.service",
                         node.log.read_text()), node.log.read_text()
    finally:
        proc.terminate()
        proc.wait(30)


def test_device_backend_end_to_end(node: Node) -> None:
    """The daemon starts the mux (start_mux); an LRM that cannot arm (mux gone) starts
    nothing, logs it once, and status does not say `started`; once a mux serves again the
    LRM arms, the service starts, the stand-in device is fed; the daemon SIGKILLed, the mux
    stops feeding the device (on a real node it resets it)."""
    device_config(node)
    d = node.dir
    proc = node.start()
    env = dict(os.environ, HAREPL_API=str(d / "api.sock"))
    mux_pid = None
    mux2 = None

    def ha(*args: str) -> str:
        r = subprocess.run([str(BIN / "ha-manager"), *args], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    def log() -> str:
        return node.log.read_text() if node.log.is_file() else ""

    try:
        m = wait_for("the watchdog line", lambda: re.search(
            r"info: watchdog: watchdog device \S+wd-standin through the multiplexer at \S+mux\.sock \(started by "
            r"this daemon\) \(watchdog\.backend = \"device\"\); multiplexer pid (\d+)", log()))
        mux_pid = int(m.group(1))  # type: ignore[attr-defined]
        wait_for("quorum", lambda: "quorum OK" in ha("status"))
        # the mux goes away before the LRM needs it
        os.kill(mux_pid, signal.SIGTERM)
        wait_for("the mux to exit", lambda: mux_info(d / "mux.sock") is None)
        ha("add", "exec:w", "--node", "n1", "--command", "sleep 600")
        wait_for("the LRM's one line", lambda: "cannot arm the watchdog - no service starts here" in log())
        status = wait_for("status to say why", lambda: (s := ha("status")) and "start pending" in s and s)
        assert "service exec:w (n1, start pending: its lrm cannot arm the watchdog)" in status, status
        assert re.search(r"lrm n1 \(idle, cannot arm watchdog: watchdog mux at \S+mux\.sock: ", status), status
        assert "(n1, started)" not in status
        time.sleep(2.0)  # several LRM loops
        assert log().count("cannot arm the watchdog") == 1, log()
        assert "Traceback" not in log() and "iteration failed" not in log()
        # a mux serves again: the LRM arms and starts the service
        mux2 = start_mux_by_hand(d)
        wait_for("started", lambda: "service exec:w (n1, started)" in ha("status"))
        assert "watchdog armed again" in log()
        fed = (d / "wd-standin").stat().st_size
        wait_for("keep-alives", lambda: (d / "wd-standin").stat().st_size > fed + 2, 10)
        # the daemon dies without closing: the mux latches and stops feeding the device
        proc.kill()
        proc.wait(10)
        wait_for("the latch", lambda: "disconnected without close: device feeding stopped"
                 in (d / "watchdog-mux.log").read_text(), 10)
        time.sleep(0.5)
        size = (d / "wd-standin").stat().st_size
        time.sleep(1.5)  # > 4 keep-alive intervals
        assert (d / "wd-standin").stat().st_size == size
        assert not (d / "wd-standin").read_bytes().endswith(b"V")  # armed: no magic close
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in session_pids(proc.pid):  # the daemon's own session: its service
            os.kill(pid, signal.SIGKILL)
        if mux2 is not None:
            mux2.kill()
            mux2.wait(10)
        if mux_pid is not None:
            try:
                os.kill(mux_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
