"""``ocf`` agent: an OCF resource agent script (Pacemaker's standard; Debian's
``resource-agents`` installs them under ``/usr/lib/ocf/resource.d/<provider>/<type>``).

Parameters: ``agent`` (required) is ``provider/type`` (``heartbeat/Dummy``), or ``harepl/<type>``
for the agents shipped in ``ocf_scripts/`` (``harepl/process``: run a command line), or an
absolute path. Every other parameter ``k=v`` is passed as ``OCF_RESKEY_k`` — except the
``timeout_<action>_s`` limits (see ``Timeouts``).

Environment per action: ``OCF_ROOT`` (default ``/usr/lib/ocf``, or ``$HAREPL_OCF_ROOT``),
``OCF_RESOURCE_INSTANCE`` (the sid made file-safe), ``OCF_RESOURCE_TYPE``/``_PROVIDER``,
``OCF_RESKEY_CRM_meta_timeout`` (ms), and ``HA_RSCTMP=<run_dir>/ocf`` so several nodes on one
machine keep separate agent state (e.g. Dummy's state file). Output goes to
``<run_dir>/ocf/<sid>.log``.

Each action runs as its own process group and is SIGKILLed as a group when it exceeds its
timeout (reported as ERROR "<action> timed out after N s"). Exit codes: 0 success; monitor
7 = not running (STOPPED), other non-zero = FAILED; ``stop`` that fails is re-checked with
monitor and counts as success if the service is not running; OCF_ERR_ARGS (2) and
OCF_ERR_CONFIGURED (6) map to EINVALID_PARAMETER; OCF_ERR_UNIMPLEMENTED (3) to EUNKNOWN_COMMAND.

Migration: if the agent's meta-data lists ``migrate_to`` and ``migrate_from`` it is live
migratable: ``migrate(target)`` runs ``migrate_to`` with ``OCF_RESKEY_CRM_meta_migrate_target``
and then ``stop`` on this node (as Pacemaker stops the source after the move); the target's
``start`` is idempotent and adopts the running resource (e.g. VirtualDomain sees the domain).
Otherwise migrate is offline: stop here, start on the target.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from .base import (
    EINVALID_PARAMETER,
    ERROR,
    EUNKNOWN_COMMAND,
    SUCCESS,
    ActionResult,
    Agent,
    AgentConfigError,
    Status,
    Timeouts,
)
from .exec_agent import safe_name

OCF_SUCCESS = 0
OCF_ERR_GENERIC = 1
OCF_ERR_ARGS = 2
OCF_ERR_UNIMPLEMENTED = 3
OCF_ERR_PERM = 4
OCF_ERR_INSTALLED = 5
OCF_ERR_CONFIGURED = 6
OCF_NOT_RUNNING = 7
OCF_RUNNING_PROMOTED = 8
OCF_FAILED_PROMOTED = 9

TIMED_OUT = -1000  # our marker for "killed on timeout"

SCRIPTS_DIR = Path(__file__).resolve().parent / "ocf_scripts"


def default_ocf_root() -> str:
    return os.environ.get("HAREPL_OCF_ROOT", "/usr/lib/ocf")


def resolve_agent(sid: str, agent: str, ocf_root: str) -> tuple[Path, str, str]:
    """Return (script path, provider, type) or raise AgentConfigError."""
    if agent.startswith("/"):
        path = Path(agent)
        provider, rtype = path.parent.name, path.name
    else:
        parts = agent.split("/")
        if len(parts) != 2 or not all(parts) or ".." in parts:
            raise AgentConfigError(f"{sid}: OCF agent must be 'provider/type' or an absolute path, got {agent!r}")
        provider, rtype = parts
        own = SCRIPTS_DIR / provider / rtype
        path = own if provider == "harepl" else Path(ocf_root) / "resource.d" / provider / rtype
    if not path.is_file() or not os.access(path, os.X_OK):
        raise AgentConfigError(f"{sid}: OCF agent {agent!r} not found or not executable ({path})")
    return path, provider, rtype


@lru_cache(maxsize=64)
def _meta_data(path: str, ocf_root: str) -> str:
    env = dict(os.environ, OCF_ROOT=ocf_root)
    try:
        out = subprocess.run([path, "meta-data"], capture_output=True, timeout=10, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.decode("utf-8", "replace") if out.returncode == 0 else ""


class OcfAgent(Agent):
    kind = "ocf"

    def __init__(self, sid: str, params: dict[str, Any], run_dir: str | Path, node: str = "",
                 ocf_root: str | None = None) -> None:
        agent = params.get("agent")
        if not isinstance(agent, str) or not agent:
            raise AgentConfigError(f"{sid}: ocf service needs parameter 'agent' (e.g. heartbeat/Dummy)")
        super().__init__(sid, Timeouts.from_params(sid, params))
        self.ocf_root = ocf_root or default_ocf_root()
        self.script, self.provider, self.rtype = resolve_agent(sid, agent, self.ocf_root)
        self.node = node
        self.reskeys: dict[str, str] = {}
        for key, value in params.items():
            if key == "agent" or (key.startswith("timeout_") and key.endswith("_s")):
                continue
            if not key.replace("_", "").replace("-", "").isalnum():
                raise AgentConfigError(f"{sid}: bad OCF parameter name {key!r}")
            if not isinstance(value, (str, int, float, bool)):
                raise AgentConfigError(f"{sid}: OCF parameter {key!r} must be a string or number")
            self.reskeys[key] = value if isinstance(value, str) else _fmt(value)
        self.tmp_dir = Path(run_dir) / "ocf"
        self.log_path = self.tmp_dir / f"{safe_name(sid)}.log"
        self.instance = safe_name(sid)

    @property
    def supports_live_migration(self) -> bool:  # type: ignore[override]
        meta = _meta_data(str(self.script), self.ocf_root)
        return 'name="migrate_to"' in meta and 'name="migrate_from"' in meta

    def _env(self, action: str, timeout_s: float, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            OCF_ROOT=self.ocf_root,
            OCF_RA_VERSION_MAJOR="1",
            OCF_RA_VERSION_MINOR="0",
            OCF_RESOURCE_INSTANCE=self.instance,
            OCF_RESOURCE_TYPE=self.rtype,
            OCF_RESOURCE_PROVIDER=self.provider,
            OCF_RESKEY_CRM_meta_timeout=str(int(timeout_s * 1000)),
            HA_RSCTMP=str(self.tmp_dir),
            HAREPL_SID=self.sid,
            HAREPL_NODE=self.node,
        )
        for key, value in self.reskeys.items():
            env[f"OCF_RESKEY_{key}"] = value
        if extra:
            env.update(extra)
        return env

    def run_ocf(self, action: str, timeout_s: float, extra: dict[str, str] | None = None) -> int:
        """Run one OCF action; returns its exit code, or TIMED_OUT after killing its group."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        # Output to a file, not a pipe: a backgrounded payload keeping a pipe open would make
        # us wait for EOF long after the action itself finished.
        with open(self.log_path, "ab") as log:
            log.write(f"--- {action}\n".encode())
            log.flush()
            child = subprocess.Popen(
                [str(self.script), action], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self._env(action, timeout_s, extra), cwd=str(self.tmp_dir), process_group=0,
            )
        try:
            return child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.wait()
            return TIMED_OUT

    def _result(self, action: str, rc: int, t0: float, timeout_s: float) -> ActionResult:
        dt = time.monotonic() - t0
        if rc == OCF_SUCCESS:
            return ActionResult(self.sid, action, SUCCESS, "ok", dt)
        if rc == TIMED_OUT:
            return ActionResult(self.sid, action, ERROR, f"{action} timed out after {timeout_s:g} s", dt)
        code = {OCF_ERR_ARGS: EINVALID_PARAMETER, OCF_ERR_CONFIGURED: EINVALID_PARAMETER,
                OCF_ERR_UNIMPLEMENTED: EUNKNOWN_COMMAND}.get(rc, ERROR)
        return ActionResult(self.sid, action, code, f"OCF {action} exit {rc}: {self._log_tail()}", dt,
                            extra={"ocf_rc": rc})

    def _log_tail(self, limit: int = 300) -> str:
        try:
            data = self.log_path.read_bytes()[-limit:]
        except FileNotFoundError:
            return ""
        return data.decode("utf-8", "replace").strip().replace("\n", " | ")

    def status(self) -> Status:
        rc = self.run_ocf("monitor", self.timeouts.monitor_s)
        if rc in (OCF_SUCCESS, OCF_RUNNING_PROMOTED):
            return Status.RUNNING
        if rc == OCF_NOT_RUNNING:
            return Status.STOPPED
        if rc == TIMED_OUT:
            return Status.UNKNOWN
        return Status.FAILED

    def start(self) -> ActionResult:
        t0 = time.monotonic()
        rc = self.run_ocf("start", self.timeouts.start_s)
        res = self._result("start", rc, t0, self.timeouts.start_s)
        if not res.ok:
            # As Pacemaker does after a failed start: stop, so nothing is left half-running.
            cleanup = self.stop()
            if not cleanup.ok:
                res.message += f"; cleanup stop failed: {cleanup.message}"
            res.duration_s = time.monotonic() - t0
        return res

    def stop(self, grace_s: float | None = None) -> ActionResult:
        """OCF stop (the agent has its own graceful/hard logic; ``grace_s`` is not used)."""
        t0 = time.monotonic()
        rc = self.run_ocf("stop", self.timeouts.stop_s)
        res = self._result("stop", rc, t0, self.timeouts.stop_s)
        if not res.ok and rc != TIMED_OUT and self.status() is Status.STOPPED:
            res = ActionResult(self.sid, "stop", SUCCESS, f"stop exit {rc} but not running", time.monotonic() - t0)
        return res

    def migrate(self, target: str, online: bool = True) -> ActionResult:
        if not (online and self.supports_live_migration):
            return super().migrate(target, online)
        t0 = time.monotonic()
        rc = self.run_ocf("migrate_to", self.timeouts.migrate_s,
                          {"OCF_RESKEY_CRM_meta_migrate_target": target,
                           "OCF_RESKEY_CRM_meta_migrate_source": self.node})
        res = self._result("migrate", rc, t0, self.timeouts.migrate_s)
        if not res.ok:
            return res
        stop = self.stop()
        if not stop.ok:
            return ActionResult(self.sid, "migrate", ERROR, f"migrated to {target} but stop here failed: "
                                f"{stop.message}", time.monotonic() - t0)
        return ActionResult(self.sid, "migrate", SUCCESS, f"live migrated to {target}", time.monotonic() - t0)

    def validate(self) -> ActionResult:
        t0 = time.monotonic()
        rc = self.run_ocf("validate-all", self.timeouts.validate_s)
        if rc == OCF_ERR_UNIMPLEMENTED:
            return ActionResult(self.sid, "validate", SUCCESS, "agent has no validate-all", time.monotonic() - t0)
        return self._result("validate", rc, t0, self.timeouts.validate_s)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
