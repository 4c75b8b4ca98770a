"""The LRM's workers: the queue of resource commands, the jobs running them, and their
results (Proxmox's `LRM::run_workers`, `check_active_workers`, `resource_command_finished`).

One job per service at most. A queued job waits for a free worker (the `max_workers`
datacenter limit); the one that waited longest starts first. A finished start goes through
the restart policy (core/lrm.py: `handle_service_exitcode`) before its result is recorded
under the command's uid; the LRM reports `results` in its status.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from harepl.core import lrm as core
from harepl.core.policy import SafetyPolicy
from harepl.core.types import ETRY_AGAIN, LrmResult, ServiceConfig, ServiceStatus
from harepl.roles.env import Env, StoreUnavailableError, WorkerHandle
from harepl.roles.lrm_exec import exec_resource_agent


@dataclass
class Worker:
    sid: str
    uid: str | None  # None: a stop job queued by a node shutdown
    state: str
    params: dict[str, object] = field(default_factory=dict)
    start_tries: int = 0
    handle: WorkerHandle | None = None


class Workers:
    def __init__(self, env: Env, policy: SafetyPolicy) -> None:
        self.env = env
        self.policy = policy
        self.jobs: dict[str, Worker] = {}  # sid -> its queued or running job
        self.results: dict[str, LrmResult] = {}  # uid -> result, for the master
        self.restart_tries: dict[str, int] = {}  # sid -> failed starts retried so far
        self.shutdown_errors = 0  # failed stop jobs queued by a node shutdown
        # a shutdown's stop for a service whose job still runs (a start, say): it runs
        # when that job ends. Proxmox drops it ("already running"), and its LRM then exits
        # with the service running and the watchdog closed; its simulator never shows it
        # (jobs end within a round there), our async profile and a real node do.
        self.after_running: dict[str, Worker] = {}

    def __len__(self) -> int:
        return len(self.jobs)

    def queue(self, sid: str, uid: str | None, state: str, params: dict[str, object]) -> None:
        # never queue the same command twice: a failed first try the CRM did not see yet
        # must not be followed by a second one it does not know of ('stopped' is exempt)
        if state != "stopped" and uid and uid in self.results:
            return
        w = self.jobs.get(sid)
        waited = 0
        if w is not None:
            if w.handle is not None:
                if uid is None and state == "request_stop":
                    self.after_running[sid] = Worker(sid, uid, state, dict(params))
                return  # already running
            waited = w.start_tries  # keep its place: the longest waiting job starts first
            if w.uid is None and w.state == "request_stop" and uid is not None:
                # a move the CRM decided replaces a shutdown's stop: the stop still runs
                # after it (a move whose stop failed leaves the service here, running)
                self.after_running[sid] = w
            del self.jobs[sid]
        self.jobs[sid] = Worker(sid, uid, state, dict(params), start_tries=waited)

    def drop_all(self) -> None:
        """Forget every job (the emergency stop dropped or waited for them all)."""
        self.jobs = {}
        self.after_running = {}

    def forget_removed(self, service_status: Mapping[str, ServiceStatus]) -> None:
        for sid in list(self.restart_tries):
            if sid not in service_status:
                del self.restart_tries[sid]

    def run(self, service_status: Mapping[str, ServiceStatus]) -> int:
        """Start queued jobs while workers are free, collect finished ones; the number of
        jobs left (queued or running)."""
        env = self.env
        max_workers = env.get_max_workers()
        try:
            sc = env.read_service_config()
        except StoreUnavailableError:
            return len(self.jobs)
        active = self._collect(sc, service_status)
        queued = sorted((w for w in self.jobs.values() if w.handle is None), key=lambda w: (-w.start_tries, w.sid))
        for w in queued:
            w.start_tries += 1
            if max_workers > 0 and active >= max_workers:
                continue
            w.handle = env.start_worker(w.sid, self._job(w.sid, sc.get(w.sid), w.state, w.params))
            active += 1
        self._collect(sc, service_status)
        return len(self.jobs)

    def _job(self, sid: str, cd: ServiceConfig | None, cmd: str, params: dict[str, object]) -> Callable[[], int]:
        def job() -> int:
            return exec_resource_agent(self.env, self.policy, sid, cd, cmd, params)
        return job

    def _collect(self, sc: Mapping[str, ServiceConfig], service_status: Mapping[str, ServiceStatus]) -> int:
        """Record the jobs that finished; the number still running."""
        running = 0
        for sid in sorted(self.jobs):
            w = self.jobs[sid]
            if w.handle is None:
                continue
            code = self.env.poll_worker(w.handle)
            if code is None:
                running += 1
                continue
            del self.jobs[sid]
            if sid in self.after_running:
                self.jobs[sid] = self.after_running.pop(sid)
            if w.uid is None:
                if code != 0:
                    self.shutdown_errors += 1
            else:
                self._finished(w, code, sc.get(sid), service_status)
        return running

    def _finished(self, w: Worker, exit_code: int, cd: ServiceConfig | None,
                  service_status: Mapping[str, ServiceStatus]) -> None:
        max_restart = int(cd.get("max_restart", 1)) if cd else 0
        tries = self.restart_tries.get(w.sid, 0)
        code, tries, line = core.handle_service_exitcode(w.state, exit_code, tries, max_restart)
        self.restart_tries[w.sid] = tries
        if line is not None:
            self.env.log(line[0], line[1].replace("{sid}", w.sid))
        if code == ETRY_AGAIN:
            return  # tell nobody, simply retry
        assert w.uid is not None
        self.results[w.uid] = {"sid": w.sid, "state": w.state, "exit_code": code}
        valid = {sd.get("uid") for sd in service_status.values()}
        self.results = {uid: r for uid, r in self.results.items() if uid in valid}
