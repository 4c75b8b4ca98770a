"""Watchdog clients: the node fences itself when its LRM stops feeding.

API:

- ``open_watchdog(node, watchdog_s, backend="auto", mux_socket=..., log_path=None) -> Watchdog``
  — an opened (armed) watchdog. ``backend``: ``"process"`` (the process watchdog),
  ``"device"``/``"mux"`` (``/dev/watchdog`` through the multiplexer at ``mux_socket``),
  ``"auto"`` (the mux when ``/dev/watchdog`` and the mux socket exist, else process).
- ``Watchdog``: ``open()``, ``feed()``, ``close(clean: bool)``; ``watchdog_s``;
  ``last_feed_s`` (monotonic); ``fires_at_s()`` (monotonic time it fires if not fed again);
  ``is_open``. ``close(clean=True)`` disarms; ``close(clean=False)`` (or dying without
  closing) leaves it armed, so it fires ``watchdog_s`` after the last feed, as /dev/watchdog.
- ``ProcessWatchdog(node, watchdog_s, session_id=None, log_path=None)``: starts
  ``watchdog_proc.py`` in its own session; if not fed it SIGKILLs every process of the
  node's session (``session_id``, default: the caller's) and logs
  ``watchdog: node X not fed for N s, killing session S (K processes)``. The caller must be
  in a session of its own (the lab starts each daemon with setsid); guarding the session
  of a test runner would kill the runner. Services started by the exec agent stay in that
  session (their own process group, no setsid), so they die with the node.
- ``MuxWatchdog(node, watchdog_s, socket_path)``: a client of ``watchdog_mux``.
- ``choose_backend(backend, device, mux_socket)``: how ``auto`` resolves.
- ``stop_all_and_close(watchdog, agents, runner=None, margin_s=0.5) -> StopAllResult`` — quorum
  loss: the caller has stopped feeding; stop every local service at once and close the
  watchdog cleanly only if each one is confirmed stopped before ``fires_at_s() - margin_s``;
  otherwise leave it armed (it fires; the CRM's lease wait covers that case).

Only monotonic time is used for these decisions.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from harepl.roles.env import WatchdogUnavailableError
from harepl.runtime.agents.base import Agent, Status
from harepl.runtime.agents.runner import ActionRunner

DEFAULT_MUX_SOCKET = "/run/harepl/watchdog-mux.sock"
DEFAULT_DEVICE = "/dev/watchdog"
PROC_SCRIPT = Path(__file__).resolve().parent / "watchdog_proc.py"
MARKER_ENV = "HAREPL_LAB_NODE"


class WatchdogError(WatchdogUnavailableError):
    """The watchdog could not be opened or fed (one line); the LRM runs nothing new."""


class Watchdog:
    def __init__(self, node: str, watchdog_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not watchdog_s > 0:
            raise WatchdogError(f"watchdog_s must be > 0, got {watchdog_s!r}")
        self.node = node
        self.watchdog_s = watchdog_s
        self.clock = clock
        self.last_feed_s: float | None = None
        self.is_open = False

    def open(self) -> None:
        raise NotImplementedError

    def feed(self) -> None:
        raise NotImplementedError

    def close(self, clean: bool) -> None:
        raise NotImplementedError

    def fires_at_s(self) -> float:
        """Monotonic time at which it fires unless fed again (inf when not armed)."""
        if not self.is_open or self.last_feed_s is None:
            return float("inf")
        return self.last_feed_s + self.watchdog_s


class ProcessWatchdog(Watchdog):
    def __init__(self, node: str, watchdog_s: float, session_id: int | None = None,
                 log_path: str | os.PathLike[str] | None = None, marker: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(node, watchdog_s, clock)
        self.session_id = session_id if session_id is not None else os.getsid(0)
        self.log_path = str(log_path) if log_path else None
        self.marker = marker if marker is not None else os.environ.get(MARKER_ENV)
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def open(self) -> None:
        if self.is_open:
            return
        argv = [sys.executable, str(PROC_SCRIPT), "--node", self.node, "--timeout-s", repr(self.watchdog_s),
                "--session", str(self.session_id)]
        if self.marker:
            argv += ["--marker", self.marker]
        if self.log_path:
            argv += ["--log", self.log_path]
        t_sent = self.clock()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
                                     start_new_session=True, close_fds=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.proc.stdout.close()
        if line.strip() != b"ready":
            rc = self.proc.wait()
            raise WatchdogError(f"process watchdog for {self.node} did not start (exit {rc})")
        # It armed itself after t_sent: counting from t_sent errs on the early side.
        self.last_feed_s = t_sent
        self.is_open = True

    def feed(self) -> None:
        with self._lock:
            if not self.is_open or self.proc is None or self.proc.stdin is None:
                raise WatchdogError(f"watchdog of {self.node} is not open")
            t = self.clock()
            try:
                self.proc.stdin.write(b"f")
                self.proc.stdin.flush()
            except BrokenPipeError:
                raise WatchdogError(f"process watchdog of {self.node} is gone (fired?)") from None
            self.last_feed_s = t

    def close(self, clean: bool) -> None:
        with self._lock:
            if not self.is_open or self.proc is None or self.proc.stdin is None:
                return
            self.is_open = False
            try:
                if clean:
                    self.proc.stdin.write(b"V")
                    self.proc.stdin.flush()
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            if clean:
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass


class MuxWatchdog(Watchdog):
    def __init__(self, node: str, watchdog_s: float, socket_path: str | os.PathLike[str] = DEFAULT_MUX_SOCKET,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(node, watchdog_s, clock)
        self.socket_path = str(socket_path)
        self.sock: socket.socket | None = None
        self.client_timeout_s: float | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        if self.is_open:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5.0)
        t_sent = self.clock()
        try:
            sock.connect(self.socket_path)
            sock.sendall(f"open {self.node} {self.watchdog_s!r}\n".encode())
            reply = sock.makefile("rb").readline().decode().split(None, 1)
        except OSError as err:
            sock.close()
            raise WatchdogError(f"watchdog mux at {self.socket_path}: {err}") from None
        if not reply or reply[0] != "ok":
            sock.close()
            raise WatchdogError(f"watchdog mux refused {self.node}: {' '.join(reply[1:]).strip() or 'no reply'}")
        self.client_timeout_s = float(reply[1])
        self.sock = sock
        self.last_feed_s = t_sent
        self.is_open = True

    def feed(self) -> None:
        with self._lock:
            if not self.is_open or self.sock is None:
                raise WatchdogError(f"watchdog of {self.node} is not open")
            t = self.clock()
            try:
                self.sock.sendall(b"feed\n")
            except OSError as err:
                raise WatchdogError(f"watchdog mux connection lost: {err}") from None
            self.last_feed_s = t

    def close(self, clean: bool) -> None:
        with self._lock:
            if not self.is_open or self.sock is None:
                return
            self.is_open = False
            try:
                if clean:
                    self.sock.sendall(b"close\n")
            except OSError:
                pass
            self.sock.close()


def choose_backend(backend: str, device: str = DEFAULT_DEVICE,
                   mux_socket: str | os.PathLike[str] = DEFAULT_MUX_SOCKET) -> str:
    """Resolve ``auto``: the mux when the device and the mux socket exist, else the process one."""
    if backend == "auto":
        return "mux" if os.path.exists(device) and os.path.exists(mux_socket) else "process"
    return backend


def open_watchdog(node: str, watchdog_s: float, backend: str = "auto",
                  mux_socket: str | os.PathLike[str] = DEFAULT_MUX_SOCKET,
                  log_path: str | os.PathLike[str] | None = None, device: str = DEFAULT_DEVICE) -> Watchdog:
    backend = choose_backend(backend, device, mux_socket)
    wd: Watchdog
    if backend in ("mux", "device"):
        wd = MuxWatchdog(node, watchdog_s, mux_socket)
    elif backend == "process":
        wd = ProcessWatchdog(node, watchdog_s, log_path=log_path)
    else:
        raise WatchdogError(f"unknown watchdog backend {backend!r} (auto, device, mux, process)")
    wd.open()
    return wd


@dataclass
class StopAllResult:
    closed_clean: bool
    stopped: list[str] = field(default_factory=list)
    not_stopped: list[str] = field(default_factory=list)
    messages: dict[str, str] = field(default_factory=dict)


def stop_all_and_close(watchdog: Watchdog, agents: Iterable[Agent], runner: ActionRunner | None = None,
                       margin_s: float = 0.5, poll_s: float = 0.05) -> StopAllResult:
    """Stop every service now (in parallel); close the watchdog cleanly only if all are
    confirmed stopped before ``watchdog.fires_at_s() - margin_s``. The caller must not feed
    the watchdog any more. Blocks until done or the deadline. With ``runner``, queued actions are dropped and running ones are
    waited for first (a start finishing after our stop would otherwise be missed)."""
    deadline = watchdog.fires_at_s() - margin_s
    clock = watchdog.clock
    agents = list(agents)
    if runner is not None:
        runner.drop_pending()  # the caller (the LRM) submits nothing while this runs
    outcome: dict[str, tuple[bool, str]] = {}
    lock = threading.Lock()

    def stop_one(agent: Agent) -> None:
        while runner is not None and runner.busy(agent.sid) and clock() < deadline:
            time.sleep(poll_s)
        if runner is not None and runner.busy(agent.sid):
            ok, msg = False, "an action was still running"
        else:
            try:
                res = agent.stop()
                ok = res.ok and agent.status() is Status.STOPPED
                msg = res.message
            except Exception as err:  # a broken agent counts as not stopped
                ok, msg = False, f"{type(err).__name__}: {err}"
        with lock:
            outcome[agent.sid] = (ok, msg)

    threads = [threading.Thread(target=stop_one, args=(a,), daemon=True, name=f"stopall-{a.sid}") for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - clock()))
    with lock:
        done = dict(outcome)
    stopped = sorted(sid for sid, (ok, _) in done.items() if ok)
    not_stopped = sorted(a.sid for a in agents if not done.get(a.sid, (False, ""))[0])
    messages = {sid: msg for sid, (_, msg) in done.items()}
    for sid in not_stopped:
        messages.setdefault(sid, "not confirmed stopped before the watchdog deadline")
    clean = not not_stopped and clock() < deadline
    watchdog.close(clean=clean)
    return StopAllResult(clean, stopped, not_stopped, messages)
