"""Which watchdog a node uses, decided once at start-up, and the multiplexer the device needs.

- ``resolve(cfg) -> Choice``: the backend (``"device"`` or ``"process"``) and why, one line
  for ``harepl.log`` (``auto`` says what it found: the device, the multiplexer, or neither).
- ``check_mux(cfg)`` (``check_host``, also for ``--check``): with ``backend = "device"`` a
  multiplexer must serve ``watchdog.mux_socket`` (or ``watchdog.start_mux`` lets the daemon
  start one), and its device timeout plus keep-alive interval must fit in
  ``timing.watchdog_s``. Raises ``ConfigError``, one line naming the key.
- ``prepare(cfg) -> Choice`` (the daemon, before it starts anything): as ``check_mux``, and
  with ``start_mux`` starts ``watchdog_mux`` in a session of its own (it outlives a daemon
  restart, as the ``harepl-watchdog-mux`` unit does on a real node), waits until it serves.

The device itself is opened only by the multiplexer; nothing here opens it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harepl.runtime.config import ConfigError, NodeConfig

MUX_START_WAIT_S = 5.0


@dataclass(frozen=True)
class Choice:
    backend: str  # "device" (through the multiplexer) or "process"
    why: str  # one line for the log
    level: str = "info"  # "warn" when auto fell back although a device exists
    mux_pid: int | None = None  # when the daemon started the multiplexer


def mux_info(path: Path, timeout_s: float = 1.0) -> tuple[float, float, bool] | None:
    """(device_timeout_s, feed_interval_s, latched) of the multiplexer serving ``path``, or
    None when none answers there."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout_s)
    try:
        s.connect(os.fspath(path))
        s.sendall(b"info\n")
        words = s.makefile("rb").readline().decode("utf-8", "replace").split()
    except OSError:
        return None
    finally:
        s.close()
    if len(words) != 4 or words[0] != "info":
        return None
    try:
        return float(words[1]), float(words[2]), words[3] == "1"
    except ValueError:
        return None


def mux_timing(watchdog_s: float) -> tuple[float, float]:
    """Device timeout and keep-alive interval for a multiplexer the daemon starts: the
    device fires at most ``watchdog_s`` after the daemon's last feed, and the daemon's own
    share of it (``watchdog_s - device - interval``) stays above half of ``watchdog_s``
    minus a second."""
    device_s = float(max(1, int(watchdog_s / 2)))  # WDIOC_SETTIMEOUT takes whole seconds
    return device_s, min(1.0, device_s / 4)


def _fits(cfg: NodeConfig, info: tuple[float, float, bool]) -> None:
    device_s, feed_s, latched = info
    sock = cfg.watchdog_mux_socket
    if latched:
        raise ConfigError(f"watchdog.mux_socket: the multiplexer at {sock} has already stopped feeding "
                          f"{cfg.watchdog_device} (a client was not fed): the device fires; restart it first")
    if cfg.timing.watchdog_s <= device_s + feed_s:
        raise ConfigError(
            f"timing.watchdog_s: {cfg.timing.watchdog_s:g} s, but the multiplexer at {sock} lets the device "
            f"fire {device_s:g} s after a keep-alive sent every {feed_s:g} s: run it with "
            f"--device-timeout-s and --feed-interval-s summing to less than {cfg.timing.watchdog_s:g}, "
            "or raise timing.watchdog_s")


def resolve(cfg: NodeConfig) -> Choice:
    dev, sock = cfg.watchdog_device, cfg.watchdog_mux_socket
    if cfg.watchdog_backend == "process":
        return Choice("process", 'process watchdog (watchdog.backend = "process")')
    served = mux_info(sock) is not None
    how = "the multiplexer at " + str(sock) + (" (started by this daemon)" if cfg.watchdog_start_mux and not served
                                              else "")
    if cfg.watchdog_backend == "device":
        return Choice("device", f'watchdog device {dev} through {how} (watchdog.backend = "device")')
    # auto
    if not dev.exists():
        return Choice("process", f"process watchdog (auto: no {dev}; load a watchdog driver, e.g. "
                                 "modprobe softdog, for the device)")
    if served or cfg.watchdog_start_mux:
        return Choice("device", f"watchdog device {dev} through {how} (auto: {dev} exists)")
    return Choice("process", f"process watchdog (auto: {dev} exists but no watchdog multiplexer serves {sock}; "
                             "start harepl-watchdog-mux.service to use the device)", level="warn")


def check_mux(cfg: NodeConfig) -> None:
    """For check_host: the multiplexer a device backend needs (opens nothing)."""
    if cfg.watchdog_backend != "device":
        return
    info = mux_info(cfg.watchdog_mux_socket)
    if info is None:
        if cfg.watchdog_start_mux:
            _fits(cfg, (*mux_timing(cfg.timing.watchdog_s), False))  # the one the daemon would start
            return
        raise ConfigError(
            f'watchdog.backend = "device" needs the watchdog multiplexer, but none serves '
            f"{cfg.watchdog_mux_socket} (systemctl start harepl-watchdog-mux; or set "
            'watchdog.start_mux = true; or watchdog.backend = "process")')
    _fits(cfg, info)


def _mux_files(cfg: NodeConfig) -> tuple[Path, Path]:
    base = cfg.log_file.parent if cfg.log_file is not None else cfg.data_dir
    return base / "watchdog-mux.log", cfg.data_dir / "watchdog-mux.stderr"


def start_mux(cfg: NodeConfig) -> int:
    """Start a multiplexer for this node in a session of its own; its pid once it serves."""
    device_s, feed_s = mux_timing(cfg.timing.watchdog_s)
    log_path, err_path = _mux_files(cfg)
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    cfg.watchdog_mux_socket.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "harepl.runtime.watchdog_mux", "--socket", str(cfg.watchdog_mux_socket),
            "--device", str(cfg.watchdog_device), "--device-timeout-s", f"{device_s:g}",
            "--feed-interval-s", f"{feed_s:g}", "--log", str(log_path)]
    with open(err_path, "ab") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True, close_fds=True)
    deadline = time.monotonic() + MUX_START_WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            last = [line for line in err_path.read_text(errors="replace").splitlines() if line.strip()]
            why = last[-1] if last else f"exit status {proc.returncode}"
            raise ConfigError(f"watchdog.device: the watchdog multiplexer could not start: {why}")
        if mux_info(cfg.watchdog_mux_socket, timeout_s=0.2) is not None:
            return proc.pid
        time.sleep(0.05)
    proc.kill()
    raise ConfigError(f"watchdog.mux_socket: the watchdog multiplexer did not serve {cfg.watchdog_mux_socket} "
                      f"within {MUX_START_WAIT_S:g} s")


def prepare(cfg: NodeConfig) -> Choice:
    """The daemon's start: resolve the backend; start the multiplexer when allowed and
    needed; check that its timing fits. Raises ConfigError (one line)."""
    choice = resolve(cfg)
    if choice.backend != "device":
        return choice
    pid = None
    if mux_info(cfg.watchdog_mux_socket) is None:
        if not cfg.watchdog_start_mux:
            check_mux(cfg)  # raises: nobody serves it
        pid = start_mux(cfg)
    info = mux_info(cfg.watchdog_mux_socket)
    if info is None:
        raise ConfigError(f"watchdog.mux_socket: the watchdog multiplexer at {cfg.watchdog_mux_socket} went away")
    _fits(cfg, info)
    why = choice.why + (f"; multiplexer pid {pid}" if pid is not None else "")
    return Choice(choice.backend, why, choice.level, pid)
