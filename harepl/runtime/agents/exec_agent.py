"""``exec`` agent: a command line run by ``/bin/sh -c``, in a cgroup of its own (cgroup v2) and
its own process group.

Parameters (``params`` of the service config):
- ``command`` (required): the shell command line; it should keep running in the foreground.
- ``check`` (optional): a shell command that exits 0 when the service is healthy; ``start``
  waits (within its timeout) until it passes, ``status``/``monitor`` also require it.
- ``workdir`` (optional): working directory (default: the node's run dir).
- ``stop_timeout_s`` (default 10): SIGTERM grace before SIGKILL of the whole service.
- ``start_grace_s`` (default 0.1): without ``check``, how long the process must survive for
  ``start`` to report success.
- ``timeout_<action>_s``: per-action limits (see ``Timeouts``).

Process model (why):
- **Recorded before it runs.** The child is spawned held at a barrier (a shell that waits
  for ``go`` on its stdin pipe before it execs the command). Only once it is in its cgroup
  and its state file is durable (fsync'd) is it released; if either fails it is killed
  and the start fails. So no service ever runs that a stop (or a restarted daemon) could
  not find — a full disk used to leave an untracked child running, then a second copy.
- **Its whole tree is tracked.** Each service has a cgroup
  ``<v2 root>/harepl/<node>/<sid>@<hash>`` (see :mod:`.cgroup`), joined at the barrier, so
  a child that forks away (``setsid cmd &``) is still found. ``status`` is not
  ``stopped`` while any process is in the cgroup; ``stop`` SIGTERMs them all, then
  ``cgroup.kill`` after the grace, and removes the cgroup. Without a writable cgroup v2
  it falls back to the process group (said once in the log): then a service that leaves
  its group escapes ``stop``.
- It gets a *new process group* (``setpgid``) but stays in the daemon's *session* (no
  ``setsid``): the process watchdog and ``harepl lab kill`` fence a node by killing that
  session — and the node's cgroup subtree.
- Its pid, group, session, start time (against pid reuse) and cgroup are kept in
  ``<run_dir>/exec/<sid>.json`` so a restarted daemon finds and stops what it started.

``validate`` is a shell syntax check (``sh -n``). Constructing the agent only parses
parameters (no files touched), so the API can use ``agent_for`` to validate configs.
The child gets ``HAREPL_SID`` and ``HAREPL_NODE`` in its environment; output goes to
``<run_dir>/exec/<sid>.log``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from . import cgroup, proc
from .base import (
    EINVALID_PARAMETER,
    ERROR,
    SUCCESS,
    ActionResult,
    Agent,
    AgentConfigError,
    Status,
    Timeouts,
    positive_float,
)

log = logging.getLogger("harepl.agents.exec")

# The barrier: wait for "go" on stdin (a pipe from us), then give the command a clean stdin.
# EOF instead of "go" (we died, or refused to release it) ends it before the command runs.
# ``exec`` keeps the pid, so the recorded pid and start time stay the service's.
BARRIER = 'read -r go && [ "$go" = go ] || exit 125; exec </dev/null; exec /bin/sh -c "$1"'

# Children we spawned, polled to reap zombies (a zombie leader would otherwise linger).
_children: dict[int, subprocess.Popen[bytes]] = {}
_children_lock = threading.Lock()
_fallback_logged = False


def reap_children() -> None:
    with _children_lock:
        for pid, child in list(_children.items()):
            if child.poll() is not None:
                del _children[pid]


def safe_name(sid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", sid)


def _log_fallback_once() -> None:
    global _fallback_logged
    if not _fallback_logged:
        _fallback_logged = True
        log.warning("exec agent: no writable cgroup v2; services are tracked by process group only "
                    "(a service that leaves its group, e.g. with setsid, escapes stop)")


class ExecAgent(Agent):
    kind = "exec"

    def __init__(self, sid: str, params: dict[str, Any], run_dir: str | Path, node: str = "") -> None:
        command = params.get("command")
        if not isinstance(command, str) or not command.strip():
            raise AgentConfigError(f"{sid}: exec service needs a non-empty parameter 'command'")
        super().__init__(sid, Timeouts.from_params(sid, params))
        self.command = command
        self.check = params.get("check") or None
        if self.check is not None and not isinstance(self.check, str):
            raise AgentConfigError(f"{sid}: parameter 'check' must be a command line string")
        self.node = node
        self.run_dir = str(run_dir)
        self.stop_timeout_s = positive_float(sid, "stop_timeout_s", params.get("stop_timeout_s", 10))
        self.start_grace_s = positive_float(sid, "start_grace_s", params.get("start_grace_s", 0.1), allow_zero=True)
        base = Path(run_dir) / "exec"
        self.state_path = base / f"{safe_name(sid)}.json"
        self.log_path = base / f"{safe_name(sid)}.log"
        workdir = params.get("workdir") or str(run_dir)
        if not isinstance(workdir, str):
            raise AgentConfigError(f"{sid}: parameter 'workdir' must be a path string")
        self.workdir = workdir

    # -- state file -------------------------------------------------------------------------
    def _read_state(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.state_path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None

    def _write_state(self, state: dict[str, Any]) -> None:
        """Durable before it returns (fsync of file and directory): the child is released
        only after this, so a crash right after still leaves a record of it."""
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, json.dumps(state).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.state_path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        dfd = os.open(self.state_path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _clear_state(self) -> None:
        self.state_path.unlink(missing_ok=True)

    def _cgroup_path(self) -> Path | None:
        """This service's cgroup (it may not exist yet), or None without cgroup v2."""
        return cgroup.service_path(self.node, os.environ.get(cgroup.MARKER_ENV), self.run_dir, self.sid)

    def _tracked_cgroup(self, state: dict[str, Any] | None) -> Path | None:
        """The cgroup to look at: the recorded one (it survives a daemon restart even if the
        naming changed), else where this service's would be (leftovers of a lost record)."""
        if state is not None and state.get("cgroup"):
            return Path(state["cgroup"])
        return self._cgroup_path()

    def _leader_alive(self, state: dict[str, Any]) -> bool:
        return proc.alive(state["pid"], state.get("starttime"))

    def _run_check(self, timeout_s: float) -> bool:
        if not self.check:
            return True
        child = subprocess.Popen(
            ["/bin/sh", "-c", self.check], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd=self.workdir, env=self._env(), process_group=0,
        )
        try:
            return child.wait(timeout=timeout_s) == 0
        except subprocess.TimeoutExpired:
            proc.kill_group(child.pid, 0)  # a hung check and everything it spawned
            child.wait()
            return False

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["HAREPL_SID"] = self.sid
        env["HAREPL_NODE"] = self.node
        return env

    def _kill(self, state: dict[str, Any] | None, stop_timeout_s: float) -> bool:
        """Stop everything of the service; True when nothing is left. The cgroup holds the
        whole tree; a record without one (fallback, or older versions) has its group."""
        cg = self._tracked_cgroup(state)
        gone = cgroup.stop(cg, stop_timeout_s) if cg is not None else True
        if state is not None and not state.get("cgroup"):
            gone = proc.kill_group(state["pgid"], stop_timeout_s, state.get("session")) and gone
        return gone

    # -- actions ----------------------------------------------------------------------------
    def status(self) -> Status:
        reap_children()
        state = self._read_state()
        cg = self._tracked_cgroup(state)
        if state is None:
            # stopped only when nothing of it is left (an unrecorded survivor must be stopped)
            return Status.FAILED if cg is not None and cgroup.populated(cg) else Status.STOPPED
        if not self._leader_alive(state):
            return Status.FAILED
        if self.check and not self._run_check(self.timeouts.monitor_s):
            return Status.FAILED
        return Status.RUNNING

    def start(self) -> ActionResult:
        t0 = time.monotonic()
        reap_children()
        state = self._read_state()
        if state is not None and self._leader_alive(state):
            return ActionResult(self.sid, "start", SUCCESS, "already running", time.monotonic() - t0)
        # leftovers of a dead (or unrecorded) instance must not run next to the new one
        if not self._kill(state, 0.5):
            return self._error(t0, "processes of a previous instance survived SIGKILL; not started")
        try:
            if self.state_path.exists():  # (an unlink, even of nothing, fails on a read-only fs)
                self._clear_state()
        except OSError as err:
            return self._error(t0, f"cannot clear the old state file: {err}")
        cg = self._cgroup_path()
        if cg is None:
            _log_fallback_once()
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log_file = open(self.log_path, "ab")
        except OSError as err:
            return self._error(t0, f"cannot open the log file: {err}")
        with log_file:
            try:
                if cg is not None:
                    cgroup.create(cg)
                child = subprocess.Popen(
                    ["/bin/sh", "-c", BARRIER, "harepl-exec", self.command], stdin=subprocess.PIPE,
                    stdout=log_file, stderr=subprocess.STDOUT, cwd=self.workdir, env=self._env(),
                    process_group=0,  # own group for a clean group kill; same session (no setsid)
                )
            except OSError as err:
                if cg is not None:
                    cgroup.remove(cg)
                return self._error(t0, f"cannot spawn: {err}")
        with _children_lock:
            _children[child.pid] = child
        try:
            if cg is not None:
                cgroup.join(cg, child.pid)  # before it runs anything: its children are born there
            st = proc.read_stat(child.pid)
            state = {
                "sid": self.sid, "command": self.command, "pid": child.pid, "pgid": child.pid,
                "session": st.session if st else os.getsid(0), "starttime": st.starttime if st else None,
                "cgroup": str(cg) if cg is not None else None,
            }
            self._write_state(state)
        except OSError as err:
            self._abort(child, cg)
            return self._error(t0, f"cannot track the service ({err}); killed before it ran")
        if not self._release(child):
            return self._failed_start(state, t0, f"exited with {child.poll()} before it was released")
        deadline = t0 + self.timeouts.start_s
        if self.check:
            while True:
                if child.poll() is not None:
                    return self._failed_start(state, t0, f"exited with {child.returncode} during start")
                if self._run_check(max(0.1, min(self.timeouts.monitor_s, deadline - time.monotonic()))):
                    break
                if time.monotonic() >= deadline:
                    return self._failed_start(state, t0, f"start timed out after {self.timeouts.start_s:g} s")
                time.sleep(0.1)
        else:
            grace_end = min(deadline, t0 + self.start_grace_s)
            while time.monotonic() < grace_end and child.poll() is None:
                time.sleep(0.02)
            if child.poll() is not None:
                return self._failed_start(state, t0, f"exited with {child.returncode} during start")
        return ActionResult(self.sid, "start", SUCCESS, f"started pid {child.pid}", time.monotonic() - t0,
                            extra={"pid": child.pid, "cgroup": state["cgroup"]})

    @staticmethod
    def _release(child: subprocess.Popen[bytes]) -> bool:
        assert child.stdin is not None
        try:
            os.write(child.stdin.fileno(), b"go\n")  # unbuffered: close() has nothing left to flush
        except BrokenPipeError:
            return False
        finally:
            child.stdin.close()
        return True

    def _abort(self, child: subprocess.Popen[bytes], cg: Path | None) -> None:
        """Kill a child still held at the barrier (it has run nothing of the command)."""
        try:
            child.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
        if cg is not None:
            cgroup.kill(cg)
        child.wait()
        assert child.stdin is not None
        child.stdin.close()  # nothing was written: nothing to flush
        reap_children()

    def _error(self, t0: float, why: str) -> ActionResult:
        return ActionResult(self.sid, "start", ERROR, why, time.monotonic() - t0)

    def _failed_start(self, state: dict[str, Any], t0: float, why: str) -> ActionResult:
        gone = self._kill(state, min(self.stop_timeout_s, 5.0))
        reap_children()
        if gone:
            try:
                self._clear_state()
            except OSError:
                pass  # a stale record of a dead instance only reads as 'failed'
        tail = self._log_tail()
        msg = f"{why}" + (f"; output: {tail}" if tail else "")
        return ActionResult(self.sid, "start", ERROR, msg, time.monotonic() - t0)

    def _log_tail(self, limit: int = 200) -> str:
        try:
            data = self.log_path.read_bytes()[-limit:]
        except FileNotFoundError:
            return ""
        return data.decode("utf-8", "replace").strip().replace("\n", " | ")

    def stop(self, grace_s: float | None = None) -> ActionResult:
        """SIGTERM the service, SIGKILL after ``grace_s`` (default ``stop_timeout_s``; 0 = at once)."""
        t0 = time.monotonic()
        reap_children()
        state = self._read_state()
        cg = self._tracked_cgroup(state)
        if state is None and not (cg is not None and cgroup.populated(cg)):
            return ActionResult(self.sid, "stop", SUCCESS, "already stopped", time.monotonic() - t0)
        wanted = self.stop_timeout_s if grace_s is None else max(0.0, grace_s)
        grace = min(wanted, max(0.0, self.timeouts.stop_s - 1.0))
        gone = self._kill(state, grace)
        reap_children()
        if not gone:
            what = f"cgroup {cg}" if cg is not None else f"process group {state['pgid'] if state else '?'}"
            return ActionResult(self.sid, "stop", ERROR, f"{what} survived SIGKILL", time.monotonic() - t0)
        try:
            self._clear_state()
        except OSError as err:
            return ActionResult(self.sid, "stop", ERROR, f"stopped, but cannot clear the state file: {err}",
                                time.monotonic() - t0)
        return ActionResult(self.sid, "stop", SUCCESS, "stopped", time.monotonic() - t0)

    def validate(self) -> ActionResult:
        """Shell syntax check of ``command`` and ``check`` (``sh -n``); nothing is run."""
        t0 = time.monotonic()
        for name, cmd in (("command", self.command), ("check", self.check)):
            if not cmd:
                continue
            out = subprocess.run(["/bin/sh", "-n", "-c", cmd], capture_output=True, timeout=self.timeouts.validate_s)
            if out.returncode != 0:
                why = out.stderr.decode("utf-8", "replace").strip().replace("\n", " | ")
                return ActionResult(self.sid, "validate", EINVALID_PARAMETER, f"{name}: {why}", time.monotonic() - t0)
        return ActionResult(self.sid, "validate", SUCCESS, "ok", time.monotonic() - t0)

    def pid(self) -> int | None:
        state = self._read_state()
        return state["pid"] if state else None
