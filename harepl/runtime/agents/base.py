"""Common types of the resource agents: result codes, status, action results, the interface.

Result codes are Proxmox's (``PVE::HA::Tools``) so the LRM can store them as-is in
``lrm_status.results[uid].exit_code``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from harepl.core.types import (  # Proxmox's result codes, defined once in the core
    EINVALID_PARAMETER,
    ERROR,
    ETRY_AGAIN,
    EUNKNOWN_COMMAND,
    EUNKNOWN_SERVICE,
    EUNKNOWN_SERVICE_TYPE,
    EWRONG_NODE,
    IGNORED,
    SUCCESS,
)

# re-exported for the agents' modules and users (explicit, for mypy --strict)
__all__ = ["EINVALID_PARAMETER", "ERROR", "ETRY_AGAIN", "EUNKNOWN_COMMAND", "EUNKNOWN_SERVICE",
           "EUNKNOWN_SERVICE_TYPE", "EWRONG_NODE", "IGNORED", "SUCCESS"]

CODE_NAMES = {
    SUCCESS: "SUCCESS",
    ERROR: "ERROR",
    ETRY_AGAIN: "ETRY_AGAIN",
    EWRONG_NODE: "EWRONG_NODE",
    EUNKNOWN_SERVICE_TYPE: "EUNKNOWN_SERVICE_TYPE",
    EUNKNOWN_COMMAND: "EUNKNOWN_COMMAND",
    EINVALID_PARAMETER: "EINVALID_PARAMETER",
    EUNKNOWN_SERVICE: "EUNKNOWN_SERVICE",
    IGNORED: "IGNORED",
}

ACTIONS = ("start", "stop", "status", "monitor", "migrate", "validate")


class Status(enum.Enum):
    """What a status/monitor check found."""

    RUNNING = "running"
    STOPPED = "stopped"  # cleanly not running (never started, or stopped by us)
    FAILED = "failed"  # should be running but is not (died), or the monitor reports an error
    UNKNOWN = "unknown"  # the check itself failed or timed out


class AgentConfigError(ValueError):
    """Bad service configuration; ``str(err)`` is one line naming the service and the problem."""


@dataclass(frozen=True)
class Timeouts:
    """Per-action time limits in seconds (Pacemaker-like defaults, shorter for status)."""

    start_s: float = 60.0
    stop_s: float = 60.0
    monitor_s: float = 20.0
    migrate_s: float = 120.0
    validate_s: float = 20.0

    def for_action(self, action: str) -> float:
        return {
            "start": self.start_s,
            "stop": self.stop_s,
            "status": self.monitor_s,
            "monitor": self.monitor_s,
            "migrate": self.migrate_s,
            "validate": self.validate_s,
        }.get(action, self.monitor_s)

    @classmethod
    def from_params(cls, sid: str, params: dict[str, Any]) -> Timeouts:
        """Read optional ``timeout_start_s``... params (numbers > 0)."""
        values: dict[str, float] = {}
        for name in ("start", "stop", "monitor", "migrate", "validate"):
            key = f"timeout_{name}_s"
            if key in params:
                values[f"{name}_s"] = positive_float(sid, key, params[key])
        return cls(**values)


def positive_float(sid: str, key: str, value: Any, allow_zero: bool = False) -> float:
    try:
        if isinstance(value, bool):
            raise TypeError
        out = float(value)
    except (TypeError, ValueError):
        raise AgentConfigError(f"{sid}: parameter '{key}' must be a number, got {value!r}") from None
    if not (out >= 0 if allow_zero else out > 0) or out == float("inf"):
        raise AgentConfigError(f"{sid}: parameter '{key}' must be {'>=' if allow_zero else '>'} 0 "
                               f"and finite, got {value!r}")
    return out


@dataclass
class ActionResult:
    """Outcome of one agent action. ``exit_code`` is a Proxmox result code."""

    sid: str
    action: str
    exit_code: int
    message: str = ""
    duration_s: float = 0.0
    uid: str | None = None
    status: Status | None = None  # set by status/monitor actions
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == SUCCESS


class Agent:
    """The resource-agent interface. Every action is synchronous and bounded by its timeout;
    run them through :class:`harepl.runtime.agents.runner.ActionRunner` to avoid blocking.

    Semantics: ``start`` on a running service and ``stop`` on a stopped one succeed.
    """

    kind = "abstract"
    supports_live_migration = False

    def __init__(self, sid: str, timeouts: Timeouts | None = None) -> None:
        self.sid = sid
        self.timeouts = timeouts or Timeouts()

    def start(self) -> ActionResult:
        raise NotImplementedError

    def stop(self, grace_s: float | None = None) -> ActionResult:
        """Stop; ``grace_s`` (if the agent supports it) bounds the graceful phase, 0 = hard stop."""
        raise NotImplementedError

    def status(self) -> Status:
        raise NotImplementedError

    def monitor(self) -> ActionResult:
        """Status wrapped as an action result (SUCCESS only when RUNNING)."""
        st = self.status()
        code = SUCCESS if st is Status.RUNNING else ERROR
        return ActionResult(self.sid, "monitor", code, st.value, status=st)

    def migrate(self, target: str, online: bool = True) -> ActionResult:
        """Move the service to ``target``: live when ``online`` and the agent supports it,
        otherwise offline — stop here; the target's LRM then starts it (Proxmox's relocate,
        and its restart migration of containers)."""
        res = self.stop()
        res.action = "migrate"
        if res.ok:
            res.message = f"offline migration to {target}: stopped here"
        return res

    def validate(self) -> ActionResult:
        return ActionResult(self.sid, "validate", SUCCESS)

    def run(self, action: str, target: str | None = None) -> ActionResult:
        """Dispatch by name (used by the runner). Unknown action → EUNKNOWN_COMMAND."""
        if action == "start":
            return self.start()
        if action == "stop":
            return self.stop()
        if action in ("status", "monitor"):
            return self.monitor()
        if action == "migrate":
            if not target:
                return ActionResult(self.sid, action, EINVALID_PARAMETER, "migrate needs a target node")
            return self.migrate(target)
        if action == "validate":
            return self.validate()
        return ActionResult(self.sid, action, EUNKNOWN_COMMAND, f"unknown action '{action}'")
