"""Adapters from our agents to the roles' ``Env`` (``harepl.roles.env``), for the runtime Env.

- ``AgentPlugin(ctx, get_config, move_service, log=None, on_result=None)`` implements the
  roles' ``ResourceAgent`` protocol (Proxmox's plugin calls) for every service type:
  ``check_running(sid)``, ``start(sid)``, ``shutdown(sid, timeout_s)``,
  ``migrate(sid, target, online) -> bool``, ``remove_locks(...)``; plus ``agent(sid)`` (the
  ``Agent``, e.g. for ``ServiceMonitor.watch``). ``get_config(sid)`` returns the service's
  current config (or None); ``move_service(sid, target)`` moves its configured node after a
  successful migration (the roles require the plugin to do it, like ``qm migrate``) and
  raises on failure. ``on_result(ActionResult)`` sees every agent action (metrics: durations).
- ``RunnerWorkers(runner)``: ``start_worker(sid, job) -> handle`` and
  ``poll_worker(handle) -> int | None`` over an :class:`ActionRunner` (a job that raises
  yields -1, as the roles expect).

``check_running`` and failures: a service found FAILED (died) or UNKNOWN (check timed out) is
first stopped to clean up what may be left (Pacemaker stops before it recovers); only what is
then confirmed STOPPED counts as not running. So the LRM restarts a dead service cleanly, and
never reports "stopped" for something it could not confirm stopped (safe side).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from typing import Any

from .base import ActionResult, Agent, AgentConfigError, Status
from .factory import AgentContext, agent_for
from .runner import ActionRunner


class AgentPlugin:
    def __init__(self, ctx: AgentContext, get_config: Callable[[str], dict[str, Any] | None],
                 move_service: Callable[[str, str], None],
                 log: Callable[[str, str], None] | None = None,
                 on_result: Callable[[ActionResult], None] | None = None) -> None:
        self.ctx = ctx
        self.get_config = get_config
        self.move_service = move_service
        self.log = log or (lambda level, msg: None)
        self.on_result = on_result
        self._cache: dict[str, tuple[str, Agent]] = {}
        self._lock = threading.Lock()

    def agent(self, sid: str) -> Agent:
        """The agent for the service's current config (rebuilt when the config changes).
        Raises AgentConfigError if there is no config or it is invalid."""
        cfg = self.get_config(sid)
        if cfg is None:
            raise AgentConfigError(f"{sid}: no resource configuration")
        key = json.dumps({"type": cfg.get("type"), "params": cfg.get("params")}, sort_keys=True, default=str)
        with self._lock:
            hit = self._cache.get(sid)
            if hit is not None and hit[0] == key:
                return hit[1]
        built = agent_for(sid, dict(cfg), self.ctx)
        with self._lock:
            self._cache[sid] = (key, built)
        return built

    def _record(self, res: ActionResult) -> ActionResult:
        if self.on_result is not None:
            try:
                self.on_result(res)
            except Exception:
                pass  # metrics never break an action
        if not res.ok:
            self.log("warning", f"{res.sid}: {res.action} failed: {res.message}")
        return res

    def check_running(self, sid: str) -> bool:
        try:
            agent = self.agent(sid)
        except AgentConfigError as err:
            self.log("err", str(err))
            return False  # nothing we could have started
        status = agent.status()
        if status in (Status.FAILED, Status.UNKNOWN):
            self.log("warning", f"service {sid} is {status.value}: stopping it to clean up")
            self._record(agent.stop())
            status = agent.status()
        return status is not Status.STOPPED

    def start(self, sid: str) -> None:
        try:
            agent = self.agent(sid)
        except AgentConfigError as err:
            self.log("err", str(err))
            return
        self._record(agent.start())

    def shutdown(self, sid: str, timeout_s: float | None) -> None:
        try:
            agent = self.agent(sid)
        except AgentConfigError as err:
            self.log("err", str(err))
            return
        self._record(agent.stop(timeout_s))

    def migrate(self, sid: str, target: str, online: bool) -> bool:
        try:
            agent = self.agent(sid)
        except AgentConfigError as err:
            self.log("err", str(err))
            return False
        res = self._record(agent.migrate(target, online))
        if not res.ok or agent.status() is not Status.STOPPED:
            return False
        try:
            self.move_service(sid, target)
        except Exception as err:
            self.log("err", f"service {sid} left this node but its config could not be moved to {target}: {err}")
            return False
        return True

    def remove_locks(self, sid: str, locks: list[str], fenced_node: str) -> str | None:
        return None  # our agents keep no Proxmox-style config locks


class RunnerWorkers:
    """``Env.start_worker``/``poll_worker`` over an ActionRunner."""

    def __init__(self, runner: ActionRunner) -> None:
        self.runner = runner
        self._codes: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start_worker(self, sid: str, job: Callable[[], int]) -> str:
        handle = f"w{next(self._ids)}"

        def run() -> ActionResult:
            try:
                code = int(job())
            except Exception as err:
                return ActionResult(sid, "worker", -1, f"job raised {type(err).__name__}: {err}")
            return ActionResult(sid, "worker", code)

        if not self.runner.submit(sid, "worker", run, uid=handle):
            raise RuntimeError(f"a worker for {sid} is already running")
        return handle

    def poll_worker(self, handle: str) -> int | None:
        with self._lock:
            for res in self.runner.collect():
                if res.uid is not None:
                    self._codes[res.uid] = res.exit_code
            return self._codes.pop(handle, None)
