"""``systemd`` agent: a unit driven through ``systemctl`` (param ``unit``, e.g. ``nginx.service``;
a bare name gets ``.service`` appended).

- start: ``systemctl start UNIT`` (systemd itself makes it idempotent);
- stop: ``systemctl stop UNIT``;
- status: ``systemctl is-active UNIT``: ``active``/``reloading``/``activating`` = RUNNING,
  ``inactive`` = STOPPED, ``failed`` = FAILED, anything else UNKNOWN;
- validate: ``systemctl cat UNIT`` (the unit exists);
- migrate: offline (stop here; the target starts it).

Needs systemd as PID 1 (``systemd_available()``); the command building and output mapping
are pure functions so they are tested everywhere.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

from .base import EINVALID_PARAMETER, ERROR, SUCCESS, ActionResult, Agent, AgentConfigError, Status, Timeouts

UNIT_RE = re.compile(r"^[A-Za-z0-9:_.@\\-]+$")
UNIT_SUFFIXES = (".service", ".socket", ".target", ".mount", ".timer", ".path", ".scope", ".slice")


def systemd_available() -> bool:
    """True when systemd runs as PID 1 (``/run/systemd/system`` exists, as sd_booted checks)."""
    return Path("/run/systemd/system").is_dir()


def normalize_unit(sid: str, unit: Any) -> str:
    if not isinstance(unit, str) or not unit or not UNIT_RE.match(unit) or unit.startswith("-"):
        raise AgentConfigError(f"{sid}: systemd service needs a valid parameter 'unit', got {unit!r}")
    return unit if unit.endswith(UNIT_SUFFIXES) else unit + ".service"


def systemctl_argv(action: str, unit: str) -> list[str]:
    """The systemctl command line for an agent action."""
    verb = {"start": "start", "stop": "stop", "status": "is-active", "monitor": "is-active",
            "validate": "cat"}.get(action)
    if verb is None:
        raise ValueError(f"no systemctl verb for action {action!r}")
    return ["systemctl", verb, "--", unit]


def parse_is_active(stdout: str) -> Status:
    word = stdout.strip().splitlines()[0].strip() if stdout.strip() else ""
    if word in ("active", "reloading", "activating", "refreshing"):
        return Status.RUNNING
    if word in ("inactive", "deactivating"):
        return Status.STOPPED
    if word == "failed":
        return Status.FAILED
    return Status.UNKNOWN


class SystemdAgent(Agent):
    kind = "systemd"

    def __init__(self, sid: str, params: dict[str, Any]) -> None:
        super().__init__(sid, Timeouts.from_params(sid, params))
        self.unit = normalize_unit(sid, params.get("unit", sid.split(":", 1)[-1]))

    def _run(self, action: str, timeout_s: float) -> tuple[int, str]:
        try:
            out = subprocess.run(systemctl_argv(action, self.unit), capture_output=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return -1, f"{action} timed out after {timeout_s:g} s"
        except OSError as err:
            return -1, f"cannot run systemctl: {err}"
        text = (out.stdout + out.stderr).decode("utf-8", "replace").strip().replace("\n", " | ")
        return out.returncode, text

    def status(self) -> Status:
        rc, text = self._run("status", self.timeouts.monitor_s)
        return Status.UNKNOWN if rc == -1 else parse_is_active(text)

    def _action(self, action: str, timeout_s: float) -> ActionResult:
        t0 = time.monotonic()
        rc, text = self._run(action, timeout_s)
        code = SUCCESS if rc == 0 else ERROR
        return ActionResult(self.sid, action, code, text or "ok", time.monotonic() - t0)

    def start(self) -> ActionResult:
        return self._action("start", self.timeouts.start_s)

    def validate(self) -> ActionResult:
        """The unit must exist (``systemctl cat``); needs systemd running."""
        t0 = time.monotonic()
        if not systemd_available():
            return ActionResult(self.sid, "validate", ERROR, "systemd is not running here", time.monotonic() - t0)
        rc, text = self._run("validate", self.timeouts.validate_s)
        if rc != 0:
            return ActionResult(self.sid, "validate", EINVALID_PARAMETER, f"unit {self.unit}: {text}",
                                time.monotonic() - t0)
        return ActionResult(self.sid, "validate", SUCCESS, "ok", time.monotonic() - t0)

    def stop(self, grace_s: float | None = None) -> ActionResult:  # systemd has its own TimeoutStopSec
        return self._action("stop", self.timeouts.stop_s)
