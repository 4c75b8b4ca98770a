"""The local resource manager loop (Proxmox's LRM.pm) over an `Env`.

One `do_one_iteration()` per loop. The LRM holds its node's lease while it has active
services and feeds the watchdog only while the lease renewal succeeds; it runs the
resource actions for the requested service states through workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harepl.core import lrm as core
from harepl.core.policy import SAFE, SafetyPolicy
from harepl.core.types import (
    EINVALID_PARAMETER,
    ERROR,
    ETRY_AGAIN,
    EUNKNOWN_COMMAND,
    EUNKNOWN_SERVICE,
    EUNKNOWN_SERVICE_TYPE,
    EWRONG_NODE,
    IGNORED,
    SUCCESS,
    LrmResult,
    LrmStatus,
    ServiceConfig,
    ServiceStatus,
)
from harepl.roles.env import Env, StaleLeaseError, StoreUnavailableError, WatchdogHandle, WorkerHandle

VALID_STATES = ("wait_for_agent_lock", "active", "maintenance", "lost_agent_lock")


@dataclass
class Worker:
    sid: str
    uid: str | None  # None: a stop job queued by a node shutdown
    state: str
    params: dict[str, object] = field(default_factory=dict)
    start_tries: int = 0
    handle: WorkerHandle | None = None


class LRM:
    def __init__(self, env: Env, active_round_s: float = 10.0, wait_round_s: float = 5.0,
                 policy: SafetyPolicy = SAFE, stop_margin_s: float = 0.0) -> None:
        self.env = env
        self.policy = policy
        # the emergency stop must end this long before the watchdog would fire
        self.stop_margin_s = stop_margin_s
        self.estopped: set[str] = set()  # stopped when the lease lapsed; started again if it returns
        self._lapse_logged = False
        self.active_round_s = active_round_s
        self.wait_round_s = wait_round_s
        self.state = "startup"
        self.state_change_time = 0.0
        self.mode = "active"
        self.workers: dict[str, Worker] = {}
        self.results: dict[str, LrmResult] = {}
        self.restart_tries: dict[str, int] = {}
        self.shutdown_request: float | None = None
        self.shutdown_errors = 0
        self.cluster_state_ok = False
        self.active_idle_rounds = 0
        self.watchdog: WatchdogHandle | None = None
        self.service_status: dict[str, ServiceStatus] = {}
        self.node_status = "unknown"
        self.disarm_requested = False
        self.wrote_status_at_startup = False
        self._set_state("wait_for_agent_lock")

    # --- what the node daemon may ask and ask for (the rest is internal) ------------------------

    def started_here(self) -> dict[str, ServiceStatus]:
        """Services the last manager status wants running on this node."""
        return {sid: sd for sid, sd in self.service_status.items()
                if sd.get("node") == self.node and sd.get("state") == "started"}

    def start_again(self, sid: str) -> bool:
        """Run `sid`'s 'started' command again next round (check_running, then start):
        the monitor saw it die, or it was stopped when the lease lapsed.  False when the
        service is not one this node should run."""
        sd = self.started_here().get(sid)
        if sd is None:
            return False
        # a command whose uid has a result is never run again: forget that result
        self.results.pop(sd["uid"], None)
        return True

    def node_going_down(self) -> bool:
        """After shutdown(): the node itself shuts down or reboots (services are stopped
        or moved first), rather than only this daemon restarting (services frozen)."""
        return self.mode in ("shutdown", "maintenance")

    # --- small helpers ------------------------------------------------------------------------

    @property
    def node(self) -> str:
        return self.env.nodename()

    def _set_state(self, new: str) -> None:
        assert new in VALID_STATES, new
        if self.state == new:
            return
        self.env.log("info", f"status change {self.state} => {new}")
        self.state = new
        self.state_change_time = self.env.get_time()

    def shutdown(self) -> None:
        """A node shutdown/reboot or an LRM restart was requested."""
        if self.shutdown_request is not None:
            return
        env = self.env
        shutdown, reboot = env.is_node_shutdown()
        try:
            policy = env.get_datacenter_settings().get("ha", {}).get("shutdown_policy")
        except StoreUnavailableError:
            policy = None
        decision = core.decide_shutdown(shutdown, reboot, policy, manual_maintenance=self.mode == "maintenance")
        if decision.stop_all:
            # always stop the local services on a node shutdown, reboot or poweroff
            for sid in sorted(self.service_status):
                if self.service_status[sid].get("node") == self.node:
                    self._queue(sid, None, "request_stop", {})
        for level, msg in decision.log:
            env.log(level, msg)
        self.mode = decision.mode
        self.shutdown_request = env.get_time()
        if not self._update_lrm_status():
            env.log("err", "unable to update lrm status file - not quorate?")

    def _update_lrm_status(self) -> bool:
        env = self.env
        if not env.quorate():
            return False
        status: LrmStatus = {
            "state": self.state,
            "mode": self.mode,
            "results": dict(self.results),
            "timestamp": env.get_time(),
        }
        try:
            env.write_lrm_status(status)
        except (StaleLeaseError, StoreUnavailableError) as exc:
            env.log("err", f"unable to write lrm status file - {exc}")
            return False
        return True

    def _update_service_status(self) -> bool:
        try:
            ms = self.env.read_manager_status()
        except StoreUnavailableError as exc:
            self.env.log("err", f"updating service status from manager failed: {exc}")
            return False
        self.service_status = dict(ms.get("service_status", {}))
        self.node_status = ms.get("node_status", {}).get(self.node, "unknown")
        self.disarm_requested = "disarm" in ms
        if self.shutdown_request is None:
            request = ms.get("node_request", {}).get(self.node, {})
            if request.get("maintenance"):
                self.mode = "maintenance"
            elif self.mode == "maintenance":
                self.mode = "active"
        return True

    def _get_protected_agent_lock(self) -> bool:
        env = self.env
        if env.get_ha_agent_lock():
            if self.watchdog is not None:
                env.watchdog_update(self.watchdog)
            else:
                self.watchdog = env.watchdog_open()
            return True
        return False

    def _give_up_watchdog(self) -> None:
        # only safe with no active service (graceful shutdown, all stopped or frozen)
        if self.watchdog is not None:
            self.env.watchdog_close(self.watchdog)
            self.watchdog = None

    def _active_count(self) -> int:
        return core.active_service_count(self.service_status, self.node)

    def _guarded_count(self) -> int:
        """Services that need this node's lease and watchdog before the LRM may go on
        (frozen ones too under the safe policy: they still run)."""
        return core.guarded_service_count(self.service_status, self.node, self.policy.guard_frozen)

    # --- the loop -------------------------------------------------------------------------------

    def do_one_iteration(self) -> bool:
        """One loop; False when the LRM should exit (after a shutdown request)."""
        env = self.env
        env.loop_start_hook()
        self.cluster_state_ok = env.cluster_state_update()
        try:
            go_on = self._work()
            self._guard_services()
            return go_on
        finally:
            env.loop_end_hook()

    # --- guarding what runs here (beyond Proxmox: DESIGN.md section 1, "going beyond") ------

    def _guard_services(self) -> None:
        """After each round: restart services the monitor found dead; stop everything when
        the lease lapsed with the watchdog armed; restart what that stopped once the lease
        is back."""
        env = self.env
        for sid, status in env.take_service_deaths():
            if self.start_again(sid):
                env.log("warn", f"service '{sid}' is not running (monitor: {status}) - starting it again")
        if self.watchdog is not None and not env.node_lease_valid():
            if self.policy.stop_on_lease_loss:
                self._lease_lapsed()
        else:
            self._lapse_logged = False
        if self.estopped and self.state == "active" and env.node_lease_valid():
            for sid in sorted(self.estopped):
                if self.start_again(sid):
                    env.log("info", f"lease back: starting '{sid}' again")
            self.estopped.clear()

    def _lease_lapsed(self) -> None:
        """The node lease is no longer locally valid while the watchdog is armed (quorum
        lost, store stalled): the LRM no longer feeds it. If there is time to stop every
        local service before the watchdog fires, stop them all now and disarm cleanly once
        all are confirmed stopped. If not (or a stop does not finish in time), leave the
        watchdog armed: it fires unless the lease comes back first. (Never close it
        uncleanly: an armed watchdog that can no longer be fed would turn a short Raft
        election into a certain self-fence.)"""
        env = self.env
        assert self.watchdog is not None
        deadline = env.watchdog_expires_at(self.watchdog) - self.stop_margin_s
        lease = f"agent:{self.node}"
        if env.get_time() >= deadline:
            if not self._lapse_logged:
                env.log("err", f"lost lease '{lease}' - no time to stop services before the watchdog "
                               "fires; it fires unless the lease returns")
                self._lapse_logged = True
            return
        env.log("err", f"lost lease '{lease}' - stopping all local services now")
        stopped, not_stopped = env.stop_all_services(deadline)
        # every job was dropped or waited for by the stop: none will report any more
        self.workers = {}
        self.estopped |= set(self.started_here()) & set(stopped)
        if env.node_lease_valid():
            env.log("notice", "lease back while stopping - services will be started again")
        elif not not_stopped and env.get_time() < deadline:
            self._give_up_watchdog()
            env.log("notice", f"all {len(stopped)} services stopped before the watchdog deadline - "
                              "watchdog closed cleanly, no self-fence")
        else:
            env.log("err", f"services not confirmed stopped in time ({', '.join(not_stopped)}) - the "
                           "watchdog stays armed and fires unless the lease returns")
            self._lapse_logged = True

    def _work(self) -> bool:
        env = self.env
        if not self.wrote_status_at_startup:
            if self._update_lrm_status():
                self.wrote_status_at_startup = True
            else:
                env.sleep(self.wait_round_s)
                return self.shutdown_request is None

        self._update_service_status()
        fence_request = core.is_fence_requested(self.service_status, self.node, self.node_status)

        # state changes first
        state = self.state
        if state == "wait_for_agent_lock":
            if not fence_request and not self.disarm_requested and self._guarded_count() and env.quorate():
                if self._get_protected_agent_lock():
                    self._set_state("active")
        elif state == "lost_agent_lock":
            if not fence_request and not self.disarm_requested and env.quorate():
                if self._get_protected_agent_lock():
                    self._set_state("active")
        elif state == "active":
            if fence_request:
                env.log("err", "node need to be fenced - releasing agent_lock")
                self._set_state("lost_agent_lock")
            elif self.disarm_requested and not self.workers:
                # the HA stack is being disarmed: services stay as they are, unprotected
                env.log("info", "HA disarm requested, releasing agent lock and watchdog")
                env.release_ha_agent_lock()
                self._give_up_watchdog()
                self._set_state("wait_for_agent_lock")
            elif not self._get_protected_agent_lock():
                self._set_state("lost_agent_lock")
            elif self.mode == "maintenance":
                self._set_state("maintenance")
            elif not core.has_configured_service_on_node(self.service_status, self.node) and not self._run_workers():
                self.active_idle_rounds += 1
                if self.active_idle_rounds > core.MAX_ACTIVE_IDLE_ROUNDS:
                    env.log("info", f"node had no service configured for {core.MAX_ACTIVE_IDLE_ROUNDS} rounds, going idle.")
                    # safe: no configured service and no running worker for a long time
                    env.release_ha_agent_lock()
                    self._give_up_watchdog()
                    self._set_state("wait_for_agent_lock")
                    self.active_idle_rounds = 0
            elif self.active_idle_rounds:
                self.active_idle_rounds = 0
        elif state == "maintenance":
            if fence_request:
                env.log("err", "node need to be fenced during maintenance mode - releasing agent_lock")
                self._set_state("lost_agent_lock")
            elif self.mode != "maintenance":
                if self._get_protected_agent_lock():
                    self._set_state("active")
            elif self._active_count() or self.workers:
                # keep lease and watchdog while services still leave the node
                if not self._get_protected_agent_lock():
                    self._set_state("lost_agent_lock")
            elif self.shutdown_request is None:
                # nothing left to protect: no lease renewal, no watchdog (lease lapses)
                self._give_up_watchdog()

        # then the work of the (new) state
        state = self.state
        if state == "wait_for_agent_lock":
            if self.shutdown_request is not None:
                return False
            self._update_lrm_status()
            env.sleep(self.wait_round_s)
        elif state == "active":
            start = env.get_time()
            exit_lrm = False
            if self._update_service_status():
                if self.shutdown_request is not None:
                    # carry out migrations the CRM already decided for our services: they
                    # take the service off this node anyway, and the CRM waits for them
                    self._queue_pending_moves()
                    if self.mode == "restart":
                        workers = self._run_workers()
                        if self._active_count() == 0 and workers == 0:
                            self._give_up_watchdog()  # safe: nothing active
                            exit_lrm = True
                            env.release_ha_agent_lock()
                    elif self._run_workers() == 0:
                        if self.shutdown_errors == 0:
                            self._give_up_watchdog()  # safe: all services stopped
                            env.release_ha_agent_lock()
                        exit_lrm = True
                elif not self.cluster_state_ok:
                    env.log("notice", "temporary inconsistent cluster state (cfs restart?), skip round")
                else:
                    self._manage_resources()
            self._update_lrm_status()
            if exit_lrm:
                return False
            env.sleep_until(start + self.active_round_s)
        elif state == "lost_agent_lock":
            # the watchdog is armed and will fire soon unless we get the lease back
            if self.shutdown_request is not None:
                # the emergency stop closed the watchdog only once every local service was
                # confirmed stopped, and nothing starts without the lease: nothing to wait for
                count = self._active_count() if self.watchdog is not None else 0
                if count > 0:
                    env.log("err", f"get shutdown request in state 'lost_agent_lock' - detected {count} running services")
                    if self.mode == "restart" and env.get_time() - self.state_change_time > 90:
                        env.log("err", "lost agent lock and restart request for over 90 seconds - giving up!")
                        return False
                else:
                    self._give_up_watchdog()  # safe: all services stopped
                    return False
            env.sleep(self.wait_round_s)
        elif state == "maintenance":
            start = env.get_time()
            if not self._update_service_status():
                return True
            exit_lrm = False
            if self.shutdown_request is not None and self._active_count() == 0 and self._run_workers() == 0:
                self._give_up_watchdog()  # safe: all active services moved away
                exit_lrm = True
                env.release_ha_agent_lock()
            if not exit_lrm:
                self._manage_resources()
            self._update_lrm_status()
            if exit_lrm:
                return False
            env.sleep_until(start + self.wait_round_s)
        return True

    # --- resources --------------------------------------------------------------------------------

    def _manage_resources(self) -> int:
        for sid in list(self.restart_tries):
            if sid not in self.service_status:
                del self.restart_tries[sid]
        for sid, uid, state, params in core.services_to_run(self.service_status, self.node):
            self._queue(sid, uid, state, params)
        return self._run_workers()

    def _queue_pending_moves(self) -> None:
        for sid, uid, state, params in core.services_to_run(self.service_status, self.node):
            if state in ("migrate", "relocate"):
                self._queue(sid, uid, state, params)

    def _queue(self, sid: str, uid: str | None, state: str, params: dict[str, object]) -> None:
        # never queue the same command twice: a failed first try the CRM did not see yet
        # must not be followed by a second one it does not know of ('stopped' is exempt)
        if state != "stopped" and uid and uid in self.results:
            return
        w = self.workers.get(sid)
        waited = 0
        if w is not None:
            if w.handle is not None:
                return  # already running
            waited = w.start_tries  # keep its place: the longest waiting job starts first
            del self.workers[sid]
        self.workers[sid] = Worker(sid, uid, state, dict(params), start_tries=waited)

    def _run_workers(self) -> int:
        env = self.env
        max_workers = env.get_max_workers()
        try:
            sc = env.read_service_config()
        except StoreUnavailableError:
            return len(self.workers)
        active = self._check_workers(sc)
        queued = sorted(
            (w for w in self.workers.values() if w.handle is None),
            key=lambda w: (-w.start_tries, w.sid),
        )
        for w in queued:
            w.start_tries += 1
            if max_workers > 0 and active >= max_workers:
                continue
            cd = sc.get(w.sid)
            job = self._make_job(w.sid, cd, w.state, w.params)
            w.handle = env.start_worker(w.sid, job)
            active += 1
        self._check_workers(sc)
        return len(self.workers)

    def _check_workers(self, sc: dict[str, ServiceConfig]) -> int:
        running = 0
        for sid in sorted(self.workers):
            w = self.workers[sid]
            if w.handle is None:
                continue
            code = self.env.poll_worker(w.handle)
            if code is None:
                running += 1
                continue
            del self.workers[sid]
            if w.uid is None:
                if code != 0:
                    self.shutdown_errors += 1
            else:
                self._resource_command_finished(w, code, sc.get(sid))
        return running

    def _resource_command_finished(self, w: Worker, exit_code: int, cd: ServiceConfig | None) -> None:
        env = self.env
        max_restart = int(cd.get("max_restart", 1)) if cd else 0
        tries = self.restart_tries.get(w.sid, 0)
        code, tries, line = core.handle_service_exitcode(w.state, exit_code, tries, max_restart)
        self.restart_tries[w.sid] = tries
        if line is not None:
            env.log(line[0], line[1].replace("{sid}", w.sid))
        if code == ETRY_AGAIN:
            return  # tell nobody, simply retry
        assert w.uid is not None
        self.results[w.uid] = {"sid": w.sid, "state": w.state, "exit_code": code}
        valid = {sd.get("uid") for sd in self.service_status.values()}
        self.results = {uid: r for uid, r in self.results.items() if uid in valid}

    def _make_job(self, sid: str, cd: ServiceConfig | None, cmd: str, params: dict[str, object]):  # type: ignore[no-untyped-def]
        def job() -> int:
            return self.exec_resource_agent(sid, cd, cmd, params)
        return job

    def exec_resource_agent(self, sid: str, cd: ServiceConfig | None, cmd: str, params: dict[str, object]) -> int:
        env = self.env
        agent = env.resource_agent(sid)
        if agent is None:
            env.log("err", f"service type '{sid.split(':')[0]}' not implemented")
            return EUNKNOWN_SERVICE_TYPE
        if cd is None:
            env.log("err", f"missing resource configuration for '{sid}'")
            return EUNKNOWN_SERVICE
        if cmd == "error":
            if self.policy.confirm_stop and params.get("stop_unconfirmed"):
                # the CRM asks whether a service whose stop failed still runs here
                if agent.check_running(sid):
                    env.log("err", f"service {sid} is in an error state and still running here (stop not "
                            "confirmed) - stop it by hand; look up 'ERROR RECOVERY' in the documentation.")
                    return ERROR
                return SUCCESS
            env.log("err", f"service {sid} is in an error state and needs manual intervention. "
                    "Look up 'ERROR RECOVERY' in the documentation.")
            return SUCCESS  # error always succeeds
        if cd.get("node") != self.node:
            target = params.get("target")
            if (self.policy.resolve_lost_migration and cmd in ("migrate", "relocate") and cd.get("node") == target
                    and not agent.check_running(sid)):
                # this move already happened (its result was lost with an earlier LRM): the
                # agent moved the configuration, and the service no longer runs here
                env.log("info", f"service {sid} already moved to node '{target}' (result of an earlier {cmd} lost)")
                return SUCCESS
            env.log("err", f"service '{sid}' not on this node")
            return EWRONG_NODE
        running = agent.check_running(sid)
        if cmd == "started":
            if running:
                return SUCCESS
            if self.policy.start_needs_lease and not env.node_lease_valid():
                env.log("warn", f"not starting service {sid} - the node lease is not valid (retrying)")
                return ETRY_AGAIN
            env.log("info", f"starting service {sid}")
            agent.start(sid)
            if agent.check_running(sid):
                env.log("info", f"service status {sid} started")
                return SUCCESS
            env.log("warning", f"unable to start service {sid}")
            return ERROR
        if cmd in ("request_stop", "stopped"):
            if not running:
                return SUCCESS
            timeout = params.get("timeout")
            if timeout is not None:
                env.log("info", f"stopping service {sid} (timeout={timeout})")
            else:
                env.log("info", f"stopping service {sid}")
            agent.shutdown(sid, float(timeout) if timeout is not None else None)  # type: ignore[arg-type]
            if not agent.check_running(sid):
                env.log("info", f"service status {sid} stopped")
                return SUCCESS
            env.log("info", f"unable to stop service {sid} (still running)")
            return ERROR
        if cmd in ("migrate", "relocate", "request_start_balance"):
            target = params.get("target")
            if not isinstance(target, str):
                env.log("err", f"{cmd} '{sid}' failed - missing target")
                return EINVALID_PARAMETER
            if cmd == "request_start_balance" and running:
                return IGNORED
            if cd.get("node") == target:
                return SUCCESS  # already there
            online = cmd == "migrate" or (cmd == "request_start_balance" and cd.get("type") == "vm")
            if not agent.migrate(sid, target, online):
                env.log("err", f"service {sid} not moved (migration error)")
                return ERROR
            return SUCCESS
        env.log("err", f"implement me (cmd '{cmd}')")
        return EUNKNOWN_COMMAND
