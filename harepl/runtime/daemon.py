"""`harepl daemon`: one process per node hosting the Raft member, the CRM and LRM roles
(the same role code the simulator runs), the local API and the watchdog client.

Threads: pysyncobj's tick thread (store), one loop thread per role, the API server's
threads, agent workers. Roles talk to the world only through their `RuntimeEnv`.

Beyond Proxmox's LRM (docs/safety.md, "Lease lapse"), in the LRM role itself
(`harepl.roles.lrm.LRM._guard_services`, the same code the simulator runs): when the
node lease stops being locally valid with the watchdog armed, every local service is
stopped at once and the watchdog closed cleanly only if all are confirmed stopped in
time; a service the monitor finds dead is started again.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

from harepl.roles.crm import CRM
from harepl.roles.lrm import LRM
from harepl.runtime.agenthost import AgentHost
from harepl.runtime.api import serve_api
from harepl.runtime.backend import DaemonBackend
from harepl.runtime.config import ConfigError, NodeConfig
from harepl.runtime.daemon_cli import log_refusal, refuse
from harepl.runtime.env import NodeContext, RuntimeEnv
from harepl.runtime.membership import Membership, watch_config_drift
from harepl.runtime.metrics import HaMetrics
from harepl.runtime.nodelog import NodeLog, RoleLog
from harepl.runtime.nodestats import publish as publish_node_stats
from harepl.runtime.sdnotify import notify as sd_notify
from harepl.runtime.sdnotify import report_readiness
from harepl.runtime.watchdog import MuxWatchdog, ProcessWatchdog, Watchdog
from harepl.runtime.watchdog_setup import Choice, prepare, resolve
from harepl.store.client import Client
from harepl.store.raft import RaftSettings, StoreNode

# how long a node shutdown may take to stop or migrate its services before the daemon
# exits anyway (below TimeoutStopSec=150 of deploy/harepl.service; an armed watchdog then
# fences the node, so leftovers are recovered safely elsewhere)
NODE_SHUTDOWN_WAIT_S = 140.0


class WatchdogDoor:
    """The env's watchdog: created on first open, re-armed by a feed after a clean close.
    The backend was chosen once at start (`watchdog_setup.resolve`/`prepare`); a failure to
    open or feed it raises `WatchdogError` (one line), which the LRM reports."""

    def __init__(self, cfg: NodeConfig, log: RoleLog, choice: Choice | None = None) -> None:
        self.cfg = cfg
        self.log = log
        self.choice = choice if choice is not None else resolve(cfg)
        self.wd: Watchdog | None = None
        self._lock = threading.Lock()

    def _make(self) -> Watchdog:
        cfg = self.cfg
        if self.choice.backend == "device":
            return MuxWatchdog(cfg.node, cfg.timing.watchdog_s, cfg.watchdog_mux_socket)
        return ProcessWatchdog(cfg.node, cfg.timing.watchdog_s, log_path=cfg.log_file)

    def open(self) -> None:
        with self._lock:
            if self.wd is None:
                self.wd = self._make()
            if not self.wd.is_open:
                self.wd.open()
                kind = "process watchdog" if isinstance(self.wd, ProcessWatchdog) else "watchdog device (mux)"
                self.log("info", f"watchdog active ({kind}, {self.cfg.timing.watchdog_s:g} s)")

    def feed(self) -> None:
        if self.wd is None or not self.wd.is_open:
            self.open()
        assert self.wd is not None
        self.wd.feed()

    def close(self) -> None:
        with self._lock:
            if self.wd is not None and self.wd.is_open:
                self.wd.close(clean=True)
                self.log("info", "watchdog closed (disarmed)")

    @property
    def armed(self) -> bool:
        return self.wd is not None and self.wd.is_open


def _loop(name: str, stop: threading.Event, log: RoleLog, period_s: float,
          iteration: Any, after: Any = None, env: RuntimeEnv | None = None) -> None:
    """Run a role: its iterations sleep themselves (woken early by changes they act on);
    an iteration that did not sleep (a slave CRM's) is followed by a sleep of the rest of
    the period. The thread stays alive across bugs."""
    while not stop.is_set():
        t0 = time.monotonic()
        slept_before = env.sleeps if env is not None else 0
        try:
            if not iteration():
                return
            if after is not None:
                after()
        except Exception as exc:  # noqa: BLE001 - a bug in one round must not stop the role
            log("err", f"{name} iteration failed: {type(exc).__name__}: {exc}")
            traceback.print_exc()
        rest = t0 + period_s - time.monotonic()
        if env is not None and env.sleeps != slept_before:
            continue  # the role slept (or was woken on purpose)
        if rest > 0 and not stop.is_set():
            (env.sleep if env is not None else stop.wait)(rest)


class NodeDaemon:
    def __init__(self, cfg: NodeConfig, watchdog: Choice | None = None) -> None:
        self.cfg = cfg
        t = cfg.timing
        self.log = NodeLog(cfg.node, cfg.log_file)
        self.dlog = self.log.for_role("daemon")
        self.stop_event = threading.Event()
        self.roles_stop = threading.Event()
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(cfg.data_dir, 0o700)
        self.metrics = HaMetrics()
        me = cfg.self_member.raft_addr
        self.store = StoreNode(me, [m.raft_addr for m in cfg.members], str(cfg.data_dir / "store"),
                               cfg.read_secret(), RaftSettings())
        self.client = Client(self.store)
        lrm_log = self.log.for_role("lrm")
        self.agents = AgentHost(cfg.node, cfg.data_dir / "run", t.max_workers,
                                monitor_interval_s=max(4 * t.loop_s, 2.0), log=lrm_log, metrics=self.metrics)
        self.watchdog = WatchdogDoor(cfg, lrm_log, watchdog)
        self.ctx = NodeContext(cfg, self.client, self.agents, self.watchdog, self.roles_stop)
        self.crm_env = RuntimeEnv(self.ctx, "crm", self.log.for_role("crm"))
        self.lrm_env = RuntimeEnv(self.ctx, "lrm", lrm_log)
        self.agents.env = self.lrm_env
        self.agents.on_worker_done = self.ctx.worker_done
        # Fencing waits for the node lease anyway (lease_timeout_s on our clock); marking a
        # node's services 'fence' earlier than that gains nothing and only makes a short
        # hiccup costlier, so the fence delay ends about when the lease can expire.
        fence_delay_s = max(t.loop_s, t.lease_timeout_s - self.ctx.online_window_s - t.loop_s)
        # With fence devices (datacenter ha.fencing = hardware|both) a node's fence begins
        # once it was not seen online for a loop: a confirmed power-off needs no lease wait.
        if cfg.fence_config is not None:
            from harepl.runtime.fence.config import FenceRunner, load_fence_cfg

            self.ctx.fence = FenceRunner(load_fence_cfg(cfg.fence_config), self.log.for_role("crm"))
        self.crm = CRM(self.crm_env, round_s=t.loop_s, wait_round_s=t.loop_s, fence_delay_s=fence_delay_s,
                       fence_delay_hw_s=t.loop_s)
        self.lrm = LRM(self.lrm_env, active_round_s=t.loop_s, wait_round_s=t.loop_s, stop_margin_s=t.margin_s)
        self._last_states: dict[str, str] = {}
        self.backend = DaemonBackend(cfg.node, tuple(m.name for m in cfg.members), self.client)
        self.backend.membership = Membership(cfg.node, cfg.members, self.client)  # type: ignore[attr-defined]
        token = cfg.read_api_token()
        cfg.api_socket.parent.mkdir(parents=True, exist_ok=True)
        self.api = serve_api(self.backend, unix_path=cfg.api_socket, tcp=cfg.api_tcp, token=token,
                             metrics=self.metrics)
        self.threads: list[threading.Thread] = []

    # --- LRM extras -----------------------------------------------------------------------
    def after_lrm(self) -> None:
        self._push_lease_metrics()

    def _push_lease_metrics(self) -> None:
        for name in [f"agent:{m.name}" for m in self.cfg.members] + ["manager"]:
            _h, _e, _s, age = self.ctx.lease_seen(name)
            if age is not None:
                self.metrics.set_lease_age(name, age)

    def after_crm(self) -> None:
        manager = self.crm.manager
        if manager is None:
            self._last_states = {}
            return
        states = {sid: sd.get("state", "") for sid, sd in manager.ss.items()}
        for sid, state in states.items():
            old = self._last_states.get(sid)
            if old is not None and old != state:
                self.metrics.count_transition(old, state)
        self._last_states = states

    # --- life cycle --------------------------------------------------------------------------
    def start(self) -> None:
        t = self.cfg.timing
        self.dlog("info", f"starting: node {self.cfg.node}, profile {self.cfg.profile} (loop {t.loop_s:g} s, "
                          f"lease_local {t.lease_local_s:g} s, watchdog {t.watchdog_s:g} s, "
                          f"lease_timeout {t.lease_timeout_s:g} s), raft {self.cfg.self_member.raft_addr}, "
                          f"api {self.cfg.api_socket}")
        self.dlog(self.watchdog.choice.level, f"watchdog: {self.watchdog.choice.why}")
        crm_log, lrm_log = self.log.for_role("crm"), self.log.for_role("lrm")
        self.threads = [
            threading.Thread(target=self.ctx.run_lease_keeper, args=(lrm_log,), name="lease", daemon=True),
            threading.Thread(target=self.ctx.run_watcher, name="watch", daemon=True),
            threading.Thread(target=watch_config_drift, name="members", daemon=True,
                             args=(self.client, self.cfg.members, self.dlog, self.stop_event)),
            threading.Thread(target=_loop, name="crm", daemon=True,
                             args=("crm", self.roles_stop, crm_log, t.loop_s, self.crm.do_one_iteration,
                                   self.after_crm, self.crm_env)),
            threading.Thread(target=_loop, name="lrm", daemon=True,
                             args=("lrm", self.roles_stop, lrm_log, t.loop_s, self.lrm.do_one_iteration,
                                   self.after_lrm, self.lrm_env)),
            threading.Thread(target=self._monitor_fence_devices, name="fence-monitor", daemon=True),
            # CPUs and memory for the 'static' scheduler, once the store can commit
            threading.Thread(target=publish_node_stats, name="stats", daemon=True,
                             args=(self.client, self.cfg.node, self.roles_stop, self.dlog)),
        ]
        for th in self.threads:
            th.start()

    def _monitor_fence_devices(self, every_s: float = 60.0) -> None:
        """`status` (never `off`) of every fence device, at start and then every minute;
        a warning for a node whose every device fails."""
        fence = self.ctx.fence
        if fence is None:
            return
        log = self.log.for_role("crm")
        while not self.roles_stop.is_set():
            health = fence.monitor()
            for dev, state in sorted(health.items()):
                log("info" if state in ("on", "off") else "warn", f"fence device {dev}: {state}")
            for node in fence.cfg.nodes():
                if all(not v.startswith(("on", "off")) for k, v in health.items() if k.endswith(f"-> {node}")):
                    log("warn", f"node '{node}' has no working fence device")
            self.roles_stop.wait(every_s)

    def request_stop(self) -> None:
        self.stop_event.set()
        self.ctx.wake_all()

    def request_node_shutdown(self, reboot: bool) -> None:
        self.agents.shutdown_flags = (True, reboot)
        self.request_stop()

    def wait(self) -> None:
        while not self.stop_event.is_set():
            self.stop_event.wait(1.0)
            if not any(th.is_alive() for th in self.threads):
                break

    def shutdown(self) -> None:
        """Graceful stop. A daemon stop (SIGTERM) is Proxmox's LRM restart: services are
        frozen and keep running. A node shutdown or reboot (systemd's queued jobs, or
        SIGUSR1/SIGUSR2 from the lab) applies the datacenter's shutdown policy: services
        are stopped, frozen or migrated away first. The CRM gives its lease up."""
        self.dlog("info", "received shutdown request")
        self.lrm.shutdown()
        self.crm.shutdown()
        node_down = self.lrm.node_going_down()
        # a daemon restart waits at most one lease timeout; a node shutdown waits for its
        # services to stop or move, within the unit's TimeoutStopSec (deploy/harepl.service)
        wait_s = NODE_SHUTDOWN_WAIT_S if node_down else self.cfg.timing.lease_timeout_s
        deadline = time.monotonic() + wait_s
        for th in self.threads:
            if th.name in ("crm", "lrm"):
                th.join(max(0.0, deadline - time.monotonic()))
        lrm_done = not any(th.name == "lrm" and th.is_alive() for th in self.threads)
        self.roles_stop.set()
        self.ctx.wake_all()
        for th in self.threads:
            th.join(2.0)
        keeper_done = not any(th.name == "lease" and th.is_alive() for th in self.threads)
        if node_down and lrm_done and keeper_done and not self.watchdog.armed:
            # every local service is stopped or gone and the watchdog closed cleanly: free
            # the node lease, so the master need not wait out lease_timeout_s to recover
            # them (Proxmox's LRM releases its agent lock here too)
            if self.lrm_env.release_node_lease_for_shutdown():
                self.dlog("info", f"released lease 'agent:{self.cfg.node}' (node shutdown, nothing left running)")
        self.api.close()
        self.agents.close()
        self.store.stop()
        self.dlog("info", "stopped")
        self.log.close()


def _own_session(cfg: NodeConfig) -> str | None:
    """The process watchdog fences by killing our session: we must lead one."""
    if os.getsid(0) == os.getpid():
        return None
    try:
        os.setsid()
    except OSError:
        if cfg.watchdog_backend in ("process", "auto"):
            return ("the process watchdog kills this daemon's whole session, but the daemon is not a "
                    "session leader and cannot become one (run it with setsid, or under systemd)")
    return None


def _startup_error(cfg: NodeConfig, exc: BaseException) -> str | None:
    """The one line for a start-up failure that got past check_host (a race: something
    took the port or the socket in between); None for one we do not know."""
    me = cfg.self_member
    if type(exc).__name__ == "SyncObjException" and "BindError" in str(exc):
        key = f"nodes[{cfg.members.index(me)}].raft_port"
        return (f"{key}: cannot bind node {me.name}'s Raft port {me.raft_addr} (in use, or not an address of this "
                f"machine); stop what listens there, or change {key}")
    if isinstance(exc, OSError):
        text = str(exc)
        if "already serving on" in text or "not a socket" in text:
            return f"api.socket: {text}"
        if exc.errno == errno.EADDRINUSE and cfg.api_tcp is not None:
            return f"api.tcp: TCP API port {cfg.api_tcp[0]}:{cfg.api_tcp[1]} is already in use; change api.tcp"
        if exc.filename:
            return f"cannot start: {exc.filename}: {exc.strerror or exc} (check the paths in {cfg.source})"
    if isinstance(exc, ConfigError):
        return str(exc)
    return None


def _log_thread_crash(log: RoleLog) -> None:
    """A thread that dies of an exception says so in the node log, not only on stderr."""
    default = threading.excepthook

    def hook(args: Any) -> None:
        name = args.thread.name if args.thread is not None else "?"
        log("err", f"thread {name} died: {args.exc_type.__name__}: {args.exc_value}")
        default(args)

    threading.excepthook = hook


def run_daemon(cfg: NodeConfig) -> int:
    problem = _own_session(cfg)
    if problem:
        return refuse(problem, cfg)
    # every file the daemon writes is root-only, also the ones pysyncobj replaces by
    # rename (raft.journal.meta); deploy/harepl.service sets the same UMask
    os.umask(0o077)
    try:
        watchdog = prepare(cfg)  # the multiplexer the device needs, or one line why not
    except ConfigError as exc:
        return refuse(str(exc), cfg)
    try:
        daemon = NodeDaemon(cfg, watchdog)
    except Exception as exc:  # noqa: BLE001 - a refused start is one line, not a traceback
        line = _startup_error(cfg, exc)
        if line is not None:
            return refuse(line, cfg)
        log_refusal(f"cannot start: {type(exc).__name__}: {exc}: " + " | ".join(
            traceback.format_exception(exc)).replace("\n", " "), cfg)
        print(f"harepl daemon: cannot start: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    _log_thread_crash(daemon.dlog)
    signal.signal(signal.SIGTERM, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGINT, lambda *_: daemon.request_stop())
    # the node goes down (without systemd to ask): nodeshutdown.py
    signal.signal(signal.SIGUSR1, lambda *_: daemon.request_node_shutdown(reboot=False))
    signal.signal(signal.SIGUSR2, lambda *_: daemon.request_node_shutdown(reboot=True))
    daemon.start()
    # systemd (Type=notify): the Raft port and the API are up; STATUS follows quorum
    threading.Thread(target=report_readiness, name="sd-notify", daemon=True,
                     args=(daemon.store.has_quorum, cfg.node, daemon.stop_event)).start()
    daemon.wait()
    sd_notify("STOPPING=1")
    daemon.shutdown()
    return 0
