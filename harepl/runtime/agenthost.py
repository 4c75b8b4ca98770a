"""This node's resource agents as the roles see them (adapter between two interfaces).

The roles speak `harepl.roles.env.ResourceAgent` (Proxmox's plugin calls: check_running,
start, shutdown, migrate); the agents package speaks `Agent` (start/stop/status returning
`ActionResult`). `AgentHost` adapts one to the other, runs the LRM's jobs on the agents'
`ActionRunner` (at most `max_workers` at once), and runs the periodic `ServiceMonitor`
on every service this node started, so a service that dies is noticed (Proxmox's LRM never
notices; see `LrmDriver.handle_deaths` in daemon.py for what happens then).
"""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harepl.runtime.agents import (
    SUCCESS,
    ActionResult,
    ActionRunner,
    Agent,
    AgentConfigError,
    AgentContext,
    ServiceMonitor,
    Status,
    agent_for,
)
from harepl.runtime.nodelog import RoleLog

if TYPE_CHECKING:
    from harepl.runtime.env import RuntimeEnv
    from harepl.runtime.metrics import HaMetrics


class _RoleAgent:
    """One service's agent in the roles' vocabulary."""

    def __init__(self, host: AgentHost, agent: Agent, env: RuntimeEnv) -> None:
        self.host = host
        self.agent = agent
        self.env = env

    def check_running(self, sid: str) -> bool:
        return self.agent.status() is Status.RUNNING

    def start(self, sid: str) -> None:
        res = self.host.timed(self.agent, "start", self.agent.start)
        if res.ok:
            self.host.monitor_watch(sid, self.agent)
        else:
            self.host.log("warn", f"start of {sid} failed: {res.message}")

    def shutdown(self, sid: str, timeout_s: float | None) -> None:
        self.host.monitor_unwatch(sid)
        res = self.host.timed(self.agent, "stop", self.agent.stop)
        if not res.ok:
            self.host.log("warn", f"stop of {sid} failed: {res.message}")

    def migrate(self, sid: str, target: str, online: bool) -> bool:
        self.host.monitor_unwatch(sid)
        res = self.host.timed(self.agent, "migrate", lambda: self.agent.migrate(target))
        if not res.ok:
            self.host.log("warn", f"migration of {sid} to {target} failed: {res.message}")
            if self.agent.status() is Status.RUNNING:
                self.host.monitor_watch(sid, self.agent)
            return False
        return self.env.move_service_config(sid, target)

    def remove_locks(self, sid: str, locks: list[str], fenced_node: str) -> str | None:
        return None  # our agents keep no guest locks


class AgentHost:
    def __init__(self, node: str, run_dir: Path, max_workers: int, monitor_interval_s: float,
                 log: RoleLog, metrics: HaMetrics | None = None) -> None:
        self.node = node
        self.ctx = AgentContext(node=node, run_dir=run_dir)
        self.log = log
        self.metrics = metrics
        self.runner = ActionRunner(max_workers=max_workers)
        self.monitor = ServiceMonitor(self.runner, interval_s=monitor_interval_s)
        self._lock = threading.Lock()
        self._agents: dict[str, tuple[str, Agent]] = {}
        self._handles = itertools.count(1)
        self._results: dict[str, int] = {}
        self._pending: set[str] = set()
        self.deaths: list[ActionResult] = []
        self.shutdown_flags = (False, False)

    # --- agents -------------------------------------------------------------------------
    def agent(self, sid: str, config: dict[str, Any]) -> Agent:
        key = json.dumps(config, sort_keys=True, default=str)
        with self._lock:
            cached = self._agents.get(sid)
            if cached is not None and cached[0] == key:
                return cached[1]
        agent = agent_for(sid, config, self.ctx)
        with self._lock:
            self._agents[sid] = (key, agent)
        return agent

    def resource_agent(self, sid: str, env: RuntimeEnv) -> _RoleAgent | None:
        try:
            config = env.read_service_config().get(sid)
        except Exception:  # noqa: BLE001
            config = None
        if config is None:
            return None
        try:
            return _RoleAgent(self, self.agent(sid, dict(config)), env)
        except AgentConfigError as exc:
            self.log("err", str(exc))
            return None

    def timed(self, agent: Agent, action: str, fn: Any) -> ActionResult:
        if self.metrics is None:
            res: ActionResult = fn()
            return res
        with self.metrics.time_agent_action(agent.kind, action) as outcome:
            res = fn()
            outcome["result"] = "ok" if res.exit_code == SUCCESS else "error"
        return res

    # --- monitor --------------------------------------------------------------------------
    def monitor_watch(self, sid: str, agent: Agent) -> None:
        with self._lock:
            self.monitor.watch(sid, agent)

    def monitor_unwatch(self, sid: str) -> None:
        with self._lock:
            self.monitor.unwatch(sid)

    def poll(self, env: RuntimeEnv) -> None:
        """Called at the start of every LRM loop: submit due checks, collect deaths."""
        with self._lock:
            failures = self.monitor.poll()
            for res in failures:
                self.monitor.unwatch(res.sid)  # reported once; watched again after a restart
            self.deaths.extend(failures)

    def take_deaths(self) -> list[ActionResult]:
        with self._lock:
            out, self.deaths = self.deaths, []
        return out

    def watched(self) -> list[str]:
        with self._lock:
            return self.monitor.watched()

    # --- workers (the LRM's jobs) ------------------------------------------------------------
    def start_worker(self, sid: str, job: Any) -> str:
        handle = f"w{next(self._handles)}"

        def fn() -> ActionResult:
            return ActionResult(sid, "lrm", int(job()))

        with self._lock:
            self._pending.add(handle)
        if not self.runner.submit(sid, "lrm", fn, uid=handle):
            # refused (a job of this sid still runs): report a retry, the LRM asks again
            with self._lock:
                self._pending.discard(handle)
                self._results[handle] = 2  # ETRY_AGAIN
        return handle

    def poll_worker(self, handle: str) -> int | None:
        for res in self.runner.collect("action"):
            with self._lock:
                if res.uid is not None and res.uid in self._pending:
                    self._pending.discard(res.uid)
                    self._results[res.uid] = res.exit_code if res.action == "lrm" else -1
        with self._lock:
            if handle in self._results:
                return self._results.pop(handle)
        return None

    def busy_count(self) -> int:
        return self.runner.running_count() + self.runner.pending_count()

    # --- node-level -----------------------------------------------------------------------------
    def shutdown_kind(self) -> tuple[bool, bool]:
        return self.shutdown_flags

    def close(self) -> None:
        self.runner.shutdown(wait=False)
