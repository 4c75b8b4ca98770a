"""Per-node action runner (like Proxmox's LRM workers) and a periodic service monitor.

``ActionRunner(max_workers=4)``: the LRM submits actions and collects finished results on
later iterations; it never blocks. At most ``max_workers`` actions (monitor checks included)
run at once; the rest wait in submission order, actions before monitor checks. One job per
sid at a time: submitting for a sid whose *action* is running is refused (``False``, as
Proxmox ignores a new command while the sid's worker runs; the LRM resubmits next loop); a
new action for a sid with a *pending* one replaces it; an action for a sid whose monitor
check is running waits for it. Every result carries ``duration_s`` (measured here, running
time only) and ``extra["queue_wait_s"]``; ``on_result(result)`` is called from the worker
thread (hook for metrics). Exceptions in an action become ERROR results.

``ServiceMonitor(runner, interval_s)``: ``watch(sid, agent)`` after a successful start,
``unwatch(sid)`` before stopping/migrating it; ``poll()`` every LRM iteration submits the
due checks (only for idle sids) and returns the results of finished checks that found the
service not RUNNING (status FAILED/STOPPED/UNKNOWN) — results from before the latest
``watch``/``unwatch`` are dropped so a stop in progress is never reported as a death.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .base import ERROR, ActionResult, Agent, Status

_uids = itertools.count(1)


@dataclass
class Job:
    sid: str
    action: str
    fn: Callable[[], ActionResult]
    uid: str
    kind: str  # "action" | "monitor"
    submitted_s: float
    tag: object = None
    started_s: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)


class ActionRunner:
    def __init__(self, max_workers: int = 4, clock: Callable[[], float] = time.monotonic,
                 on_result: Callable[[ActionResult], None] | None = None) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        self.max_workers = max_workers
        self.clock = clock
        self.on_result = on_result
        self._lock = threading.Lock()
        self._running: dict[str, Job] = {}
        self._pending_actions: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._pending_monitors: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._done: dict[str, list[tuple[Job, ActionResult]]] = {"action": [], "monitor": []}
        self._threads: list[threading.Thread] = []
        self.max_running_seen = 0  # for tests and metrics
        self._closed = False

    # -- submission ---------------------------------------------------------------------------
    def submit(self, sid: str, action: str, fn: Callable[[], ActionResult], uid: str | None = None,
               kind: str = "action", tag: object = None) -> bool:
        """Queue ``fn`` (returns an ActionResult) for ``sid``. Returns False if refused."""
        job = Job(sid, action, fn, uid or f"job{next(_uids)}", kind, self.clock(), tag)
        with self._lock:
            if self._closed:
                return False
            running = self._running.get(sid)
            if kind == "action":
                if running is not None and running.kind == "action":
                    return False
                self._pending_actions.pop(sid, None)
                self._pending_monitors.pop(sid, None)  # the action supersedes a queued check
                self._pending_actions[sid] = job
            else:
                if running is not None or sid in self._pending_actions or sid in self._pending_monitors:
                    return False
                self._pending_monitors[sid] = job
            self._dispatch_locked()
        return True

    def submit_agent(self, agent: Agent, action: str, uid: str | None = None, target: str | None = None,
                     kind: str = "action", tag: object = None) -> bool:
        return self.submit(agent.sid, action, lambda: agent.run(action, target), uid, kind, tag)

    # -- results --------------------------------------------------------------------------------
    def collect(self, kind: str = "action") -> list[ActionResult]:
        """Finished results of ``kind`` since the last call (oldest first)."""
        return [res for _job, res in self.collect_jobs(kind)]

    def collect_jobs(self, kind: str = "action") -> list[tuple[Job, ActionResult]]:
        with self._lock:
            out, self._done[kind] = self._done[kind], []
        return out

    def busy(self, sid: str) -> bool:
        with self._lock:
            return sid in self._running or sid in self._pending_actions or sid in self._pending_monitors

    def running_count(self) -> int:
        with self._lock:
            return len(self._running)

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending_actions) + len(self._pending_monitors)

    def drop_pending(self) -> int:
        """Forget every queued (not yet running) job; returns how many were dropped."""
        with self._lock:
            n = len(self._pending_actions) + len(self._pending_monitors)
            self._pending_actions.clear()
            self._pending_monitors.clear()
        return n

    def shutdown(self, wait: bool = True, timeout_s: float | None = None) -> None:
        """Refuse new jobs, drop pending ones, optionally wait for running ones."""
        with self._lock:
            self._closed = True
            self._pending_actions.clear()
            self._pending_monitors.clear()
            threads = list(self._threads)
        if wait:
            for t in threads:
                t.join(timeout_s)

    # -- internals ------------------------------------------------------------------------------
    def _dispatch_locked(self) -> None:
        for queue in (self._pending_actions, self._pending_monitors):
            for sid in list(queue):
                if len(self._running) >= self.max_workers:
                    return
                if sid in self._running:
                    continue
                job = queue.pop(sid)
                job.started_s = self.clock()
                self._running[sid] = job
                self.max_running_seen = max(self.max_running_seen, len(self._running))
                t = threading.Thread(target=self._work, args=(job,), name=f"agent-{sid}-{job.action}",
                                     daemon=True)
                self._threads = [x for x in self._threads if x.is_alive()]
                self._threads.append(t)
                t.start()

    def _work(self, job: Job) -> None:
        try:
            res = job.fn()
            if not isinstance(res, ActionResult):
                raise TypeError(f"action returned {type(res).__name__}, not ActionResult")
        except Exception as err:  # an agent bug must not kill the LRM: report it
            res = ActionResult(job.sid, job.action, ERROR, f"agent raised {type(err).__name__}: {err}")
        end = self.clock()
        res.uid = job.uid
        res.duration_s = end - job.started_s
        res.extra["queue_wait_s"] = job.started_s - job.submitted_s
        if self.on_result is not None:
            try:
                self.on_result(res)
            except Exception:
                pass  # metrics must never break the runner
        with self._lock:
            self._running.pop(job.sid, None)
            self._done[job.kind].append((job, res))
            self._dispatch_locked()


class ServiceMonitor:
    def __init__(self, runner: ActionRunner, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.runner = runner
        self.interval_s = interval_s
        self.clock = clock
        self._agents: dict[str, Agent] = {}
        self._gen: dict[str, int] = {}
        self._next_due: dict[str, float] = {}
        self._gens = itertools.count(1)

    def watch(self, sid: str, agent: Agent) -> None:
        self._agents[sid] = agent
        self._gen[sid] = next(self._gens)
        self._next_due[sid] = self.clock() + self.interval_s

    def unwatch(self, sid: str) -> None:
        self._agents.pop(sid, None)
        self._gen[sid] = next(self._gens)
        self._next_due.pop(sid, None)

    def watched(self) -> list[str]:
        return sorted(self._agents)

    def poll(self) -> list[ActionResult]:
        failures = []
        for job, res in self.runner.collect_jobs("monitor"):
            if job.sid in self._agents and job.tag == self._gen.get(job.sid) and res.status is not Status.RUNNING:
                failures.append(res)
        now = self.clock()
        for sid, agent in list(self._agents.items()):
            if now >= self._next_due.get(sid, 0.0) and not self.runner.busy(sid):
                if self.runner.submit_agent(agent, "monitor", kind="monitor", tag=self._gen[sid]):
                    self._next_due[sid] = now + self.interval_s
        return failures
