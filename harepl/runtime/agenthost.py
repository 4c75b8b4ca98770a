"""This node's resource agents as the roles see them.

The agents package provides the adapters (`AgentPlugin`: the roles' ResourceAgent calls
over our agents; `RunnerWorkers`: the LRM's jobs on an `ActionRunner` with at most
`max_workers` at once). `AgentHost` wires them to the store (configs, moving a migrated
service's configured node), to metrics, and adds the periodic `ServiceMonitor` of every
service this node started: a death is logged and reported to the daemon, which makes the
LRM run the requested state again (`LRM._guard_services`, through `take_service_deaths`).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harepl.runtime.agents import (
    ActionResult,
    ActionRunner,
    Agent,
    AgentConfigError,
    AgentContext,
    ServiceMonitor,
    Status,
)
from harepl.runtime.agents.plugin import AgentPlugin, RunnerWorkers
from harepl.runtime.agents.systemd import systemd_available
from harepl.runtime.nodelog import RoleLog
from harepl.runtime.nodeshutdown import systemd_shutdown_jobs

if TYPE_CHECKING:
    from harepl.runtime.env import RuntimeEnv
    from harepl.runtime.metrics import HaMetrics


class AgentHost:
    def __init__(self, node: str, run_dir: Path, max_workers: int, monitor_interval_s: float,
                 log: RoleLog, metrics: HaMetrics | None = None) -> None:
        self.node = node
        self.ctx = AgentContext(node=node, run_dir=run_dir)
        self.log = log
        self.metrics = metrics
        self.runner = ActionRunner(max_workers=max_workers, on_result=self._runner_result)
        self.workers = RunnerWorkers(self.runner)
        self.monitor = ServiceMonitor(self.runner, interval_s=monitor_interval_s)
        self._lock = threading.Lock()
        self.deaths: list[ActionResult] = []
        self.shutdown_flags = (False, False)
        self.env: RuntimeEnv | None = None  # set by the daemon (the LRM's env)
        self.on_worker_done: Any = None  # (sid, exit_code) -> None, set by the daemon
        self.plugin = AgentPlugin(self.ctx, self._config, self._move, log=log, on_result=self._on_result)

    def _runner_result(self, res: ActionResult) -> None:
        if res.action == "worker" and self.on_worker_done is not None:
            self.on_worker_done(res.sid, res.exit_code)

    # --- wiring -------------------------------------------------------------------------
    def _config(self, sid: str) -> dict[str, Any] | None:
        assert self.env is not None
        cfg = self.env.read_service_config().get(sid)
        return dict(cfg) if cfg is not None else None

    def _move(self, sid: str, target: str) -> None:
        assert self.env is not None
        if not self.env.move_service_config(sid, target):
            raise RuntimeError(f"could not move the configured node of {sid} to {target}")

    def _on_result(self, res: ActionResult) -> None:
        if res.action == "start" and res.ok:
            try:
                self.monitor_watch(res.sid, self.plugin.agent(res.sid))
            except AgentConfigError:
                pass
        elif res.action in ("stop", "migrate"):
            self.monitor_unwatch(res.sid)
        if self.metrics is not None:
            kind = res.sid.split(":", 1)[0]
            self.metrics.observe_agent_action(kind, res.action, res.duration_s, "ok" if res.ok else "error")

    def agent(self, sid: str, config: dict[str, Any]) -> Agent:
        return self.plugin.agent(sid)

    def resource_agent(self, sid: str, env: RuntimeEnv) -> AgentPlugin | None:
        try:
            self.plugin.agent(sid)
        except AgentConfigError as exc:
            self.log("err", str(exc))
            return None
        return self.plugin

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

    def stop_all(self, configs: dict[str, Any], deadline: float) -> tuple[list[str], list[str]]:
        """Stop the agent of every configured service at once (one thread each), waiting
        for an action already running on a sid first; returns (confirmed stopped, not
        confirmed by `deadline`, a time.monotonic() value)."""
        agents: list[Agent] = []
        for sid, config in configs.items():
            try:
                agents.append(self.agent(sid, config))
            except Exception:  # noqa: BLE001 - a bad config cannot be running here
                continue
        self.runner.drop_pending()
        done: dict[str, bool] = {}
        lock = threading.Lock()

        def stop_one(agent: Agent) -> None:
            self.monitor_unwatch(agent.sid)
            while self.runner.busy(agent.sid) and time.monotonic() < deadline:
                time.sleep(0.02)
            ok = False
            if not self.runner.busy(agent.sid):
                try:
                    # only a confirmed STOPPED counts: UNKNOWN (a monitor timeout) may still
                    # run, and a clean watchdog close on it would give up the self-fence
                    ok = agent.stop().ok and agent.status() is Status.STOPPED
                except Exception:  # noqa: BLE001 - a broken agent counts as not stopped
                    ok = False
            with lock:
                done[agent.sid] = ok

        threads = [threading.Thread(target=stop_one, args=(a,), name=f"estop-{a.sid}", daemon=True)
                   for a in agents]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with lock:
            stopped = sorted(sid for sid, ok in done.items() if ok)
        return stopped, sorted(a.sid for a in agents if a.sid not in stopped)

    # --- workers (the LRM's jobs) ------------------------------------------------------------
    def start_worker(self, sid: str, job: Any) -> str:
        return self.workers.start_worker(sid, job)

    def poll_worker(self, handle: str) -> int | None:
        return self.workers.poll_worker(handle)

    # --- node-level -----------------------------------------------------------------------------
    def shutdown_kind(self) -> tuple[bool, bool]:
        """(shutdown, reboot) of the node: told by signal (lab), else asked of systemd."""
        if self.shutdown_flags != (False, False):
            return self.shutdown_flags
        if systemd_available():
            return systemd_shutdown_jobs()
        return False, False

    def close(self) -> None:
        self.runner.shutdown(wait=False)
