"""The local resource manager loop (Proxmox's LRM.pm) over an `Env`.

One `do_one_iteration()` per loop. The LRM holds its node's lease while it has active
services and feeds the watchdog only while the lease renewal succeeds; it runs the
resource actions for the requested service states through workers (roles/lrm_workers.py,
each running one command through the agent: roles/lrm_exec.py). Its pure decisions are in
core/lrm.py.

States (each round: first the state change, `_STATE_CHANGES`, then the new state's work,
`_STATE_WORK`; then `_guard_services`)
    wait_for_agent_lock  no lease, no watchdog; -> active once a local service needs them
    active               lease held, watchdog fed; runs the requested states
                         -> lost_agent_lock (lease lost or fence requested),
                         -> maintenance, -> wait_for_agent_lock (idle, or HA disarmed)
    maintenance          the node is being emptied; lease kept while services leave it
    lost_agent_lock      the watchdog is armed and fires unless the lease comes back
"""

from __future__ import annotations

from collections.abc import Callable

from harepl.core import lrm as core
from harepl.core.policy import SAFE, SafetyPolicy
from harepl.core.types import LrmStatus, ServiceConfig, ServiceStatus
from harepl.roles.env import (
    Env,
    StaleLeaseError,
    StoreUnavailableError,
    WatchdogHandle,
    WatchdogUnavailableError,
)
from harepl.roles.lrm_exec import exec_resource_agent
from harepl.roles.lrm_workers import Workers

VALID_STATES = ("wait_for_agent_lock", "active", "maintenance", "lost_agent_lock")


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
        self.workers = Workers(env, policy)  # the resource commands: queued, running, results
        self.shutdown_request: float | None = None
        self.shutdown_stops_all = False  # the shutdown stops every local service (not a restart)
        self.cluster_state_ok = False
        self.active_idle_rounds = 0
        self.watchdog: WatchdogHandle | None = None
        self.watchdog_error: str | None = None  # why it cannot be armed or fed (status, log once)
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
        self.workers.results.pop(sd["uid"], None)
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
        self.shutdown_stops_all = decision.stop_all
        self._queue_shutdown_stops()
        for level, msg in decision.log:
            env.log(level, msg)
        self.mode = decision.mode
        self.shutdown_request = env.get_time()
        if not self._update_lrm_status():
            env.log("err", "unable to update lrm status file - not quorate?")

    def _queue_shutdown_stops(self) -> None:
        """A node shutdown, reboot or poweroff stops every local service (uid None: jobs
        of the shutdown, not of the CRM)."""
        if not self.shutdown_stops_all:
            return
        for sid in sorted(self.service_status):
            if self.service_status[sid].get("node") == self.node:
                self.workers.queue(sid, None, "request_stop", {})

    def _update_lrm_status(self) -> bool:
        env = self.env
        if not env.quorate():
            return False
        status: LrmStatus = {
            "state": self.state,
            "mode": self.mode,
            "results": dict(self.workers.results),
            "timestamp": env.get_time(),
        }
        if self.watchdog_error is not None:
            status["watchdog_error"] = self.watchdog_error
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
            try:
                if self.watchdog is not None:
                    env.watchdog_update(self.watchdog)
                else:
                    self.watchdog = env.watchdog_open()
            except WatchdogUnavailableError as exc:
                # not protected: run nothing new, say why once (and in the status), try again
                # next round; a watchdog that can no longer be fed fires on its own
                if str(exc) != self.watchdog_error:
                    env.log("err", f"cannot arm the watchdog - no service starts here: {exc}")
                self.watchdog_error = str(exc)
                return False
            if self.watchdog_error is not None:
                env.log("info", "watchdog armed again")
                self.watchdog_error = None
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

    # --- guarding what runs here (beyond Proxmox: docs/safety.md, "Lease lapse") ------------

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
        self.workers.drop_all()
        # a shutdown in progress still needs its own stops: the emergency stop may not have
        # confirmed them all, and if the lease returns the shutdown must not close the
        # watchdog on a service still running (fuzz seed 3010146, a stop that hangs)
        self._queue_shutdown_stops()
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
        if not self.wrote_status_at_startup:
            if not self._update_lrm_status():
                self.env.sleep(self.wait_round_s)
                return self.shutdown_request is None
            self.wrote_status_at_startup = True
        self._update_service_status()
        fence_request = core.is_fence_requested(self.service_status, self.node, self.node_status)
        _STATE_CHANGES[self.state](self, fence_request)  # state changes first,
        return _STATE_WORK[self.state](self)  # then the work of the (new) state

    # --- state changes, one per state (dispatched by _STATE_CHANGES) ------------------------------

    def _change_waiting(self, fence_request: bool) -> None:
        """wait_for_agent_lock -> active once a service here needs the lease."""
        if not fence_request and not self.disarm_requested and self._guarded_count() and self.env.quorate():
            if self._get_protected_agent_lock():
                self._set_state("active")

    def _change_lost(self, fence_request: bool) -> None:
        """lost_agent_lock -> active once the lease is back (never while to be fenced)."""
        if not fence_request and not self.disarm_requested and self.env.quorate():
            if self._get_protected_agent_lock():
                self._set_state("active")

    def _change_active(self, fence_request: bool) -> None:
        env = self.env
        if fence_request:
            env.log("err", "node need to be fenced - releasing agent_lock")
            self._set_state("lost_agent_lock")
        elif self.disarm_requested and not self.workers:
            # the HA stack is being disarmed: services stay as they are, unprotected
            env.log("info", "HA disarm requested, releasing agent lock and watchdog")
            self._go_idle()
        elif not self._get_protected_agent_lock():
            self._set_state("lost_agent_lock")
        elif self.mode == "maintenance":
            self._set_state("maintenance")
        elif not core.has_configured_service_on_node(self.service_status, self.node) and not self._run_workers():
            self.active_idle_rounds += 1
            if self.active_idle_rounds > core.MAX_ACTIVE_IDLE_ROUNDS:
                env.log("info", f"node had no service configured for {core.MAX_ACTIVE_IDLE_ROUNDS} rounds, going idle.")
                self._go_idle()  # safe: no configured service and no running worker for a long time
                self.active_idle_rounds = 0
        elif self.active_idle_rounds:
            self.active_idle_rounds = 0

    def _change_maintenance(self, fence_request: bool) -> None:
        if fence_request:
            self.env.log("err", "node need to be fenced during maintenance mode - releasing agent_lock")
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

    def _go_idle(self) -> None:
        self.env.release_ha_agent_lock()
        self._give_up_watchdog()
        self._set_state("wait_for_agent_lock")

    # --- the work of each state (dispatched by _STATE_WORK); False: the LRM exits ---------------

    def _work_waiting(self) -> bool:
        if self.shutdown_request is not None:
            return False
        self._update_lrm_status()
        self.env.sleep(self.wait_round_s)
        return True

    def _work_active(self) -> bool:
        env = self.env
        start = env.get_time()
        exit_lrm = False
        if self._update_service_status():
            if self.shutdown_request is not None:
                exit_lrm = self._shutdown_round()
            elif not self.cluster_state_ok:
                env.log("notice", "temporary inconsistent cluster state (cfs restart?), skip round")
            else:
                self._manage_resources()
        self._update_lrm_status()
        if exit_lrm:
            return False
        env.sleep_until(start + self.active_round_s)
        return True

    def _shutdown_round(self) -> bool:
        """An active round after a shutdown request; True once the LRM may exit."""
        env = self.env
        # carry out migrations the CRM already decided for our services: they take the
        # service off this node anyway, and the CRM waits for them
        self._queue_pending_moves()
        if self.mode == "restart":
            workers = self._run_workers()
            if self._active_count() == 0 and workers == 0:
                self._give_up_watchdog()  # safe: nothing active
                env.release_ha_agent_lock()
                return True
            return False
        if self._run_workers() != 0:
            return False
        if self.workers.shutdown_errors == 0:
            self._give_up_watchdog()  # safe: all services stopped
            env.release_ha_agent_lock()
        return True

    def _work_lost(self) -> bool:
        # the watchdog is armed and will fire soon unless we get the lease back
        env = self.env
        if self.shutdown_request is not None:
            # the emergency stop closed the watchdog only once every local service was
            # confirmed stopped, and nothing starts without the lease: nothing to wait for
            count = self._active_count() if self.watchdog is not None else 0
            if count == 0:
                self._give_up_watchdog()  # safe: all services stopped
                return False
            env.log("err", f"get shutdown request in state 'lost_agent_lock' - detected {count} running services")
            if self.mode == "restart" and env.get_time() - self.state_change_time > 90:
                env.log("err", "lost agent lock and restart request for over 90 seconds - giving up!")
                return False
        env.sleep(self.wait_round_s)
        return True

    def _work_maintenance(self) -> bool:
        env = self.env
        start = env.get_time()
        if not self._update_service_status():
            return True
        if self.shutdown_request is not None and self._active_count() == 0 and self._run_workers() == 0:
            self._give_up_watchdog()  # safe: all active services moved away
            env.release_ha_agent_lock()
            self._update_lrm_status()
            return False
        self._manage_resources()
        self._update_lrm_status()
        env.sleep_until(start + self.wait_round_s)
        return True

    # --- resources (the workers: roles/lrm_workers.py; the commands: roles/lrm_exec.py) ---------

    def _manage_resources(self) -> int:
        self.workers.forget_removed(self.service_status)
        for sid, uid, state, params in core.services_to_run(self.service_status, self.node):
            self.workers.queue(sid, uid, state, params)
        return self._run_workers()

    def _queue_pending_moves(self) -> None:
        for sid, uid, state, params in core.services_to_run(self.service_status, self.node):
            if state in ("migrate", "relocate"):
                self.workers.queue(sid, uid, state, params)

    def _run_workers(self) -> int:
        return self.workers.run(self.service_status)

    def exec_resource_agent(self, sid: str, cd: ServiceConfig | None, cmd: str, params: dict[str, object]) -> int:
        """Run one resource command here, as a worker does."""
        return exec_resource_agent(self.env, self.policy, sid, cd, cmd, params)


_STATE_CHANGES: dict[str, Callable[[LRM, bool], None]] = {
    "wait_for_agent_lock": LRM._change_waiting,
    "lost_agent_lock": LRM._change_lost,
    "active": LRM._change_active,
    "maintenance": LRM._change_maintenance,
}
_STATE_WORK: dict[str, Callable[[LRM], bool]] = {
    "wait_for_agent_lock": LRM._work_waiting,
    "active": LRM._work_active,
    "lost_agent_lock": LRM._work_lost,
    "maintenance": LRM._work_maintenance,
}
assert set(_STATE_CHANGES) == set(_STATE_WORK) == set(VALID_STATES)
