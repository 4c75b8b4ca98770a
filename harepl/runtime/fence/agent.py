"""Run fence agents through the fence-agent API (ClusterLabs fence-agents, FenceAgentAPI).

    run_action(call, action) -> ActionResult

The agent is started with no arguments and reads its options from standard input, one
`key=value` per line, `action=<action>` first. Exit status: 0 success (for `status`: the
node is on), 2 for `status`: the node is off, anything else a failure. Each action has
its own timeout (`Call.timeout_s`); an agent that outlives it is killed with its whole
process group (agents run `ipmitool`, `ssh`, ... as children).

Credentials travel only on the agent's stdin: never on a command line (visible in `ps`),
never in a log line — what is logged is `Call.shown()` (secrets masked) and the agent's
last output line with every secret value replaced by `***`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from harepl.core.fencing import SECRET_KEYS, Call, DeviceResult

AGENT_DIRS = ("/usr/sbin", "/usr/bin", "/sbin")


@dataclass(frozen=True)
class ActionResult:
    action: str
    rc: int | None  # None: timed out (killed) or could not start
    seconds: float
    output: str  # last non-empty output line, secrets masked

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def says_off(self) -> bool:
        return self.action == "status" and self.rc == 2

    def line(self) -> str:
        if self.rc is None:
            return f"{self.action}: {self.output} after {self.seconds:.1f} s"
        return f"{self.action}: exit {self.rc} in {self.seconds:.1f} s" + (f" ({self.output})" if self.output else "")


def agent_path(agent: str) -> str | None:
    for d in AGENT_DIRS:
        p = os.path.join(d, agent)
        if os.access(p, os.X_OK):
            return p
    return None


def _mask(text: str, call: Call) -> str:
    for k, v in call.args:
        if k in SECRET_KEYS and v:
            text = text.replace(v, "***")
    return text


def run_action(call: Call, action: str, env: Mapping[str, str] | None = None) -> ActionResult:
    """Run one action of one device; never raises for an agent problem."""
    t0 = time.monotonic()
    path = agent_path(call.agent)
    if path is None:
        return ActionResult(action, None, 0.0, f"fence agent {call.agent} not found (install fence-agents)")
    try:
        proc = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, env=dict(env) if env is not None else None)
    except OSError as exc:
        return ActionResult(action, None, time.monotonic() - t0, f"cannot run {call.agent}: {exc.strerror}")
    try:
        out, _ = proc.communicate(call.stdin(action).encode(), timeout=call.timeout_s)
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        return ActionResult(action, None, time.monotonic() - t0, f"timed out ({call.timeout_s:g} s), killed")
    lines = [ln.strip() for ln in out.decode("utf-8", "replace").splitlines() if ln.strip()]
    return ActionResult(action, rc, time.monotonic() - t0, _mask(lines[-1][:200], call) if lines else "")


def fence_off(call: Call, run: Callable[[Call, str], ActionResult] = run_action) -> tuple[bool, str]:
    """`off`, then `status` to confirm: True only when the status says off."""
    off = run(call, "off")
    if not off.ok:
        return False, f"{call.device}: {off.line()}"
    st = run(call, "status")
    if st.says_off:
        return True, f"{call.device}: off confirmed ({off.line()}; {st.line()})"
    return False, f"{call.device}: off not confirmed ({off.line()}; {st.line()})"


def fence_level(calls: list[Call], run: Callable[[Call, str], ActionResult] = run_action) -> DeviceResult:
    """One level: every parallel device at once; confirmed only if each one confirms."""
    t0 = time.monotonic()
    results: dict[str, tuple[bool, str]] = {}
    lock = threading.Lock()

    def one(call: Call) -> None:
        r = fence_off(call, run)
        with lock:
            results[call.device] = r

    threads = [threading.Thread(target=one, args=(c,), daemon=True, name=f"fence-{c.device}") for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = bool(calls) and all(results[c.device][0] for c in calls)
    return DeviceResult(ok, "; ".join(results[c.device][1] for c in calls), time.monotonic() - t0)


def status_of(call: Call, run: Callable[[Call, str], ActionResult] = run_action) -> str:
    """`status` of one device for its node: 'on', 'off' or 'failed: why' (never `off`)."""
    st = run(call, "status")
    if st.rc == 0:
        return "on"
    if st.says_off:
        return "off"
    return f"failed: {st.line()}"
