"""``exec`` agent: a command line run by ``/bin/sh -c`` as its own process group.

Parameters (``params`` of the service config):
- ``command`` (required): the shell command line; it should keep running in the foreground.
- ``check`` (optional): a shell command that exits 0 when the service is healthy; ``start``
  waits (within its timeout) until it passes, ``status``/``monitor`` also require it.
- ``workdir`` (optional): working directory (default: the node's run dir).
- ``stop_timeout_s`` (default 10): SIGTERM grace before SIGKILL of the whole group.
- ``start_grace_s`` (default 0.1): without ``check``, how long the process must survive for
  ``start`` to report success.
- ``timeout_<action>_s``: per-action limits (see ``Timeouts``).

Process model (why): the service is put in a *new process group* (``setpgid``) so ``stop``
kills everything it spawned at once, but it stays in the daemon's *session* (no ``setsid``):
the process watchdog fences a node by killing every process of that session, services
included. Its pid, group, session and start time (against pid reuse) are kept in
``<run_dir>/exec/<sid>.json`` so a restarted daemon finds and stops what it started.
``validate`` is a shell syntax check (``sh -n``). Constructing the agent only parses
parameters (no files touched), so the API can use ``agent_for`` to validate configs.
The child gets ``HAREPL_SID`` and ``HAREPL_NODE`` in its environment; output goes to
``<run_dir>/exec/<sid>.log``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from . import proc
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

# Children we spawned, polled to reap zombies (a zombie leader would otherwise linger).
_children: dict[int, subprocess.Popen[bytes]] = {}
_children_lock = threading.Lock()


def reap_children() -> None:
    with _children_lock:
        for pid, child in list(_children.items()):
            if child.poll() is not None:
                del _children[pid]


def safe_name(sid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", sid)


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
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_path)

    def _clear_state(self) -> None:
        self.state_path.unlink(missing_ok=True)

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

    def _kill(self, state: dict[str, Any], stop_timeout_s: float) -> bool:
        return proc.kill_group(state["pgid"], stop_timeout_s, state.get("session"))

    # -- actions ----------------------------------------------------------------------------
    def status(self) -> Status:
        reap_children()
        state = self._read_state()
        if state is None:
            return Status.STOPPED
        if not self._leader_alive(state):
            return Status.FAILED
        if self.check and not self._run_check(self.timeouts.monitor_s):
            return Status.FAILED
        return Status.RUNNING

    def start(self) -> ActionResult:
        t0 = time.monotonic()
        reap_children()
        state = self._read_state()
        if state is not None:
            if self._leader_alive(state):
                return ActionResult(self.sid, "start", SUCCESS, "already running", time.monotonic() - t0)
            self._kill(state, 0.5)  # leftovers of a dead instance must not run twice
            self._clear_state()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            try:
                child = subprocess.Popen(
                    ["/bin/sh", "-c", self.command], stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, cwd=self.workdir, env=self._env(),
                    process_group=0,  # own group for a clean group kill; same session (no setsid)
                )
            except OSError as err:
                return ActionResult(self.sid, "start", ERROR, f"cannot spawn: {err}", time.monotonic() - t0)
        with _children_lock:
            _children[child.pid] = child
        st = proc.read_stat(child.pid)
        state = {
            "sid": self.sid, "command": self.command, "pid": child.pid, "pgid": child.pid,
            "session": st.session if st else os.getsid(0), "starttime": st.starttime if st else None,
        }
        self._write_state(state)
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
                            extra={"pid": child.pid})

    def _failed_start(self, state: dict[str, Any], t0: float, why: str) -> ActionResult:
        self._kill(state, min(self.stop_timeout_s, 5.0))
        reap_children()
        self._clear_state()
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
        """SIGTERM the group, SIGKILL after ``grace_s`` (default ``stop_timeout_s``; 0 = at once)."""
        t0 = time.monotonic()
        reap_children()
        state = self._read_state()
        if state is None:
            return ActionResult(self.sid, "stop", SUCCESS, "already stopped", time.monotonic() - t0)
        wanted = self.stop_timeout_s if grace_s is None else max(0.0, grace_s)
        grace = min(wanted, max(0.0, self.timeouts.stop_s - 1.0))
        gone = self._kill(state, grace)
        reap_children()
        if not gone:
            return ActionResult(self.sid, "stop", ERROR, f"process group {state['pgid']} survived SIGKILL",
                                time.monotonic() - t0)
        self._clear_state()
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
