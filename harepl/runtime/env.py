"""The real `Env` (harepl.roles.env): the CRM and LRM roles over the replicated store.

One `NodeContext` per daemon holds what both roles of a node share: the store client, the
lease judges (this node's monotonic observations of every lease), this node's own node
lease, its agents and its watchdog. Each role gets its own `RuntimeEnv` (Proxmox does the
same): the CRM's env holds the manager lease, the LRM's env drives the node lease.

Leases (docs/safety.md), all on `time.monotonic()`:
- The node lease `agent:<node>` is renewed by a keeper thread once per loop (at once
  again after a failure), whether or not services run: its renewals are also how the other
  nodes see this node alive (`get_node_info`), and every lrm_status write carries its
  epoch. It is *locally valid* until `t_sent + lease_local_s` of the last acknowledged
  renewal; the watchdog is fed only while it is.
- A foreign lease (the CRM fencing a node, a standby taking the manager lease) is taken
  only when free or unchanged for its timeout on our own clock, by compare-and-swap.
- Every write acting for a holder carries the epoch; a rejection raises StaleLeaseError.

The wall clock appears only in `timestamp` fields of statuses, which are for humans.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

from harepl.core.fencing import DeviceResult
from harepl.core.lrm import is_fence_requested
from harepl.core.types import (
    DatacenterConfig,
    GroupConfig,
    LrmStatus,
    ManagerStatus,
    NodeInfo,
    RuleConfig,
    ServiceConfig,
)
from harepl.roles.env import (
    ResourceAgent,
    StaleLeaseError,
    StoreUnavailableError,
    WatchdogHandle,
    WorkerHandle,
)
from harepl.runtime import failpoints
from harepl.runtime.config import NodeConfig
from harepl.runtime.nodelog import RoleLog
from harepl.store import reads
from harepl.store import vocabulary as C
from harepl.store.client import Client, Rejected
from harepl.store.leases import HolderLease, LeaseJudge

# service states in which the CRM master waits for an LRM's result to move on
WAITING_STATES = ("migrate", "relocate", "request_stop")
# the watcher reads the replica only after this node applied a command that may change
# what it looks at (manager_status, lrm_status, crm_commands); these ops never do
# (lease renewals are most of an idle cluster's commits)
UNWATCHED_OPS = frozenset({"lease_acquire", "lease_renew", "lease_release", "noop"})
# a burst of changes is read together: at most one read per this gap
WATCH_MIN_GAP_S = 0.02
# a failed read is retried after this
WATCH_RETRY_S = 0.1
# how often the watcher re-checks its stop event while nothing changes
WATCH_IDLE_WAIT_S = 1.0

# an unchanged lrm_status is re-written this often (the API calls a status older than
# 30 s "old timestamp - dead?")
LRM_STATUS_KEEPALIVE_S = 10.0

# jobs the LRM may hand to the runner at once (the runner runs `max_workers` of them)
RUNNER_QUEUE_LIMIT = 10_000


class NodeContext:
    """What the CRM and LRM of one node share. Thread-safe where the roles meet."""

    def __init__(self, cfg: NodeConfig, client: Client, agents: Any, watchdog: Any,
                 stop_event: threading.Event) -> None:
        self.cfg = cfg
        self.node = cfg.node
        self.timing = cfg.timing
        self.client = client
        self.agents = agents        # harepl.runtime.agenthost.AgentHost
        self.watchdog = watchdog    # harepl.runtime.wdclient.WatchdogDoor
        self.stop_event = stop_event
        self.fence: Any = None  # harepl.runtime.fence.config.FenceRunner, when devices are configured
        self.fence_seen: dict[str, tuple[int, int]] = {}  # node -> its lease when its fence began
        t = cfg.timing
        # how long a commit may take before we call the store unavailable this round
        self.commit_timeout_s = max(0.2, min(t.loop_s, t.lease_local_s / 2))
        # a standby takes the manager lease after this much silence of the master; the
        # master's writes are fenced by its epoch, so this only bounds CRM failover time
        self.manager_timeout_s = t.lease_local_s + t.loop_s
        # a node is 'online' while its node lease keeps being renewed
        self.online_window_s = t.lease_local_s
        now = time.monotonic()
        self._lock = threading.Lock()
        self.node_judge = LeaseJudge(t.lease_timeout_s, now)
        self.manager_judge = LeaseJudge(self.manager_timeout_s, now)
        self.node_lease = HolderLease(t.lease_local_s)
        self.holds_node_lease = False
        self.quorate_cache = False
        # the manager status asks for this node to be fenced: the keeper lets the node
        # lease lapse so that the master can take it (set by the watcher)
        self.fence_requested = False
        # wake-ups: a role sleeping out its loop is woken when something it acts on changed
        # (a transition for this node, a CRM command, an LRM result the master waits for),
        # so a planned move costs a few commits rather than a few loops
        self.wake = {"crm": threading.Event(), "lrm": threading.Event()}
        self._ms_body: str | None = None
        self._lrm_bodies: dict[str, str] = {}
        self._ncmds = 0
        self.my_view: dict[str, tuple[Any, Any, Any]] = {}
        self._waiting_uids: set[str] = set()
        # set on the Raft thread when an applied command may change what the watcher
        # reads; starts set (the replica may hold state from before we listened)
        self.replica_changed = threading.Event()
        self.replica_changed.set()
        self.watch_reads = 0  # how often the watcher read the replica (tests count it)
        add_listener = getattr(getattr(client, "node", None), "add_apply_listener", None)
        if add_listener is not None:
            add_listener(self._on_applied)

    # --- wake-ups -------------------------------------------------------------------------
    def _on_applied(self, raw: str | None, result: dict[str, Any] | None) -> None:
        """Raft thread, after each apply (None, None: a snapshot was installed)."""
        if raw is not None and result is not None:
            if not result.get("ok") or result.get("duplicate"):
                return  # a rejection or a duplicate changes nothing
            try:
                op = json.loads(raw).get("op")
            except (ValueError, AttributeError):
                op = None
            if op in UNWATCHED_OPS:
                return
        self.replica_changed.set()

    def run_watcher(self) -> None:
        """Wake the roles on changes they act on: reads the replica once per batch of
        relevant applied commands, never while nothing changed (an idle node's watcher
        costs nothing but a wait)."""
        changed = self.replica_changed
        while not self.stop_event.is_set():
            if not changed.wait(WATCH_IDLE_WAIT_S) or self.stop_event.is_set():
                continue
            changed.clear()
            gap_s = WATCH_MIN_GAP_S
            try:
                self._watch_once()
            except Exception:  # noqa: BLE001 - a failed look is retried shortly
                changed.set()
                gap_s = WATCH_RETRY_S
            self.stop_event.wait(gap_s)

    def _watch_once(self) -> None:
        def query(conn: Any) -> tuple[Any, Any, int]:
            ms = conn.execute("SELECT body FROM manager_status WHERE id = 1").fetchone()
            lrm = conn.execute("SELECT node, body FROM lrm_status").fetchall()
            ncmds = conn.execute("SELECT count(*) FROM crm_commands").fetchone()[0]
            return (ms[0] if ms else None), lrm, int(ncmds)

        ms_body, lrm_rows, ncmds = self.client.read(query, linearizable=False)
        if ms_body != self._ms_body:
            self._ms_body = ms_body
            ms = json.loads(ms_body) if ms_body else {}
            ss = ms.get("service_status", {})
            view = {sid: (sd.get("state"), sd.get("node"), sd.get("target")) for sid, sd in ss.items()
                    if self.node in (sd.get("node"), sd.get("target"))}
            if view != self.my_view:
                self.my_view = view
                self.wake["lrm"].set()
            self.fence_requested = is_fence_requested(ss, self.node, ms.get("node_status", {}).get(self.node, ""))
            self._waiting_uids = {sd["uid"] for sd in ss.values()
                                  if sd.get("state") in WAITING_STATES and "uid" in sd}
        if ncmds > self._ncmds:
            self.wake["crm"].set()
        self._ncmds = ncmds
        for node, body in lrm_rows:
            if body != self._lrm_bodies.get(node):
                self._lrm_bodies[node] = body
                if self._waiting_uids and set(json.loads(body).get("results", {})) & self._waiting_uids:
                    self.wake["crm"].set()
        self.watch_reads += 1

    def worker_done(self, sid: str, exit_code: int) -> None:
        """A job finished: wake the LRM if it ends a transition (or failed)."""
        state = self.my_view.get(sid, (None,))[0]
        if exit_code != 0 or state != "started":
            self.wake["lrm"].set()

    def wake_all(self) -> None:
        for ev in self.wake.values():
            ev.set()
        self.replica_changed.set()  # the watcher, too, looks at its stop event at once

    # --- observations -----------------------------------------------------------------
    def observe(self) -> dict[str, dict[str, Any]]:
        """Read the lease table of our replica and note changes on our clock."""
        leases: dict[str, dict[str, Any]] = self.client.read(reads.leases, linearizable=False)
        now = time.monotonic()
        with self._lock:
            for name, row in leases.items():
                judge = self.manager_judge if name == C.MANAGER_LEASE else self.node_judge
                judge.observe(name, int(row["epoch"]), int(row["seq"]), row["holder"], now)
        return leases

    def lease_seen(self, name: str) -> tuple[str | None, int, int, float | None]:
        """(holder, epoch, seq, age_s) as we last saw it."""
        judge = self.manager_judge if name == C.MANAGER_LEASE else self.node_judge
        with self._lock:
            epoch, seq = judge.seen(name)
            return judge.holder(name), epoch, seq, judge.age(name, time.monotonic())

    def lease_expired(self, name: str) -> bool:
        judge = self.manager_judge if name == C.MANAGER_LEASE else self.node_judge
        with self._lock:
            return judge.expired(name, time.monotonic())

    def quorate(self) -> bool:
        q = self.client.quorate()
        self.quorate_cache = q
        return q

    # --- the node lease (its own keeper thread) -----------------------------------------
    def run_lease_keeper(self, log: RoleLog) -> None:
        """Renew this node's lease once per loop; after a failed attempt retry at once
        (a Raft election must cost as little lease time as possible)."""
        period_s = self.timing.loop_s
        while not self.stop_event.is_set():
            ok = False
            try:
                ok = self.keep_node_lease(log)
            except Exception as exc:  # noqa: BLE001 - never let the keeper die
                log("err", f"lease keeper: {type(exc).__name__}: {exc}")
            self.stop_event.wait(period_s if ok else 0.05)

    def keep_node_lease(self, log: RoleLog) -> bool:
        """One renewal (or take) of this node's lease; True if it was committed."""
        name = C.agent_lease(self.node)
        if not self.quorate():
            return False
        if self.fence_requested:
            # Proxmox's LRM stops renewing its lock when the master wants the node
            # fenced; so must we, or the master waits for the lease to expire forever
            # (a node restarted while marked 'fence' renewed it and hung there).
            self._lose_node_lease(log, "node need to be fenced - letting the lease lapse")
            return False
        self.observe()
        holder, epoch, seq, _age = self.lease_seen(name)
        t_sent = time.monotonic()
        ok = False
        try:
            if holder == self.node:
                # ours (also after a daemon restart: same node, the old incarnation is gone)
                res = self.client.submit(C.lease_renew(name, self.node, epoch), self.commit_timeout_s)
                if res.get("ok"):
                    if not self.holds_node_lease:
                        log("info", f"successfully acquired lock '{name}'")
                    self.holds_node_lease = ok = True
                    self.node_lease.acknowledged(t_sent, epoch)
                else:
                    self._lose_node_lease(log, f"renewal rejected: {res.get('error')}")
            elif holder is None or self.lease_expired(name):
                res = self.client.submit(C.lease_acquire(name, self.node, epoch, seq), self.commit_timeout_s)
                if res.get("ok"):
                    log("info", f"successfully acquired lock '{name}' (epoch {res['epoch']})")
                    self.holds_node_lease = ok = True
                    self.node_lease.acknowledged(t_sent, int(res["epoch"]))
                elif self.holds_node_lease:
                    self._lose_node_lease(log, f"acquire rejected: {res.get('error')}")
            elif self.holds_node_lease:
                self._lose_node_lease(log, f"held by {holder} (epoch {epoch})")
        except StoreUnavailableError:
            pass  # retried at once by the keeper; the LRM logs the consequence
        self.observe()
        return ok

    def _lose_node_lease(self, log: RoleLog, why: str) -> None:
        if self.holds_node_lease:
            log("err", f"lost lock 'agent:{self.node}' - {why}")
        self.holds_node_lease = False
        self.node_lease.lost()

    def node_lease_valid(self) -> bool:
        return self.holds_node_lease and self.node_lease.valid(time.monotonic())

    def node_lease_deadline(self) -> float:
        return self.node_lease.valid_until


class RuntimeEnv:
    """`harepl.roles.env.Env` for one role ('crm' or 'lrm') of one node."""

    def __init__(self, ctx: NodeContext, role: str, log: RoleLog,
                 on_transition: Callable[[str, str], None] | None = None) -> None:
        self.ctx = ctx
        self.role = role
        self._log = log
        self.manager_lease = HolderLease(ctx.manager_timeout_s)
        self.holds_manager_lease = False
        self.on_transition = on_transition
        self.sleeps = 0  # how often the role slept (the daemon's loop reads it)
        self._last_lrm_write: tuple[str, int] | None = None
        self._last_lrm_write_at = 0.0
        self._last_wake = 0.0

    # --- identity, time, logging ---------------------------------------------------------
    def nodename(self) -> str:
        return self.ctx.node

    def get_time(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        # interruptible: a change this role acts on (or a shutdown) wakes it early
        self.sleeps += 1
        ev = self.ctx.wake[self.role]
        if ev.wait(max(0.0, seconds)):
            ev.clear()
            # let a burst of changes land together, and never run more than ten
            # woken iterations per loop (a failing job must not make the LRM spin)
            now = time.monotonic()
            gap_s = max(0.01, self._last_wake + self.ctx.timing.loop_s / 10 - now)
            time.sleep(gap_s)
            self._last_wake = now + gap_s

    def sleep_until(self, t: float) -> None:
        self.sleep(t - time.monotonic())

    def log(self, level: str, msg: str) -> None:
        self._log(level, msg)

    def sendmail(self, subject: str, text: str) -> None:
        self._log("email", subject)

    def loop_start_hook(self) -> None:
        if self.role == "lrm":
            self.ctx.agents.poll(self)

    def loop_end_hook(self) -> None:
        pass

    # --- membership ------------------------------------------------------------------------
    def quorate(self) -> bool:
        return self.ctx.quorate()

    def get_node_info(self) -> tuple[dict[str, NodeInfo], bool]:
        quorate = self.quorate()
        info: dict[str, NodeInfo] = {}
        members = [m.name for m in self.ctx.cfg.members]
        try:
            extra = self.ctx.client.read(reads.nodes, linearizable=False)
        except Exception:  # noqa: BLE001 - the config's member list is enough
            extra = {}
        if extra:  # after a membership change the committed node list wins (runtime/membership.py)
            members = []
        nodes = sorted(set(members) | set(extra))
        seen = {node: self.ctx.lease_seen(C.agent_lease(node)) for node in nodes}
        # Missed renewals count only while other renewals commit: the freshest lease change
        # of any node (ours too) is the store's own progress, so a Raft leader change or a
        # stalled store, during which no lease changes, never makes a node look dead (a
        # node in 'fence' may be powered off at once by its fence device, issue 10).
        ages = [age for holder, _e, _s, age in seen.values() if holder is not None and age is not None]
        progress = min(ages) if ages else 0.0
        for node in nodes:
            if node == self.ctx.node:
                online = quorate
            else:
                holder, _e, _s, age = seen[node]
                online = quorate and holder == node and age is not None and \
                    age - progress < self.ctx.online_window_s
            info[node] = {"online": online}
        return info, quorate

    def cluster_state_update(self) -> bool:
        try:
            self.ctx.observe()
        except Exception as exc:  # noqa: BLE001 - an unreadable replica skips the round
            self._log("err", f"cluster state update failed: {exc}")
            return False
        return True

    # --- leases ----------------------------------------------------------------------------
    def get_ha_manager_lock(self) -> bool:
        ctx = self.ctx
        name = C.MANAGER_LEASE
        if not self.quorate():
            return False
        ctx.observe()
        holder, epoch, seq, _age = ctx.lease_seen(name)
        t_sent = time.monotonic()
        try:
            if holder == ctx.node and (self.holds_manager_lease or self.manager_lease.epoch in (0, epoch)):
                res = ctx.client.submit(C.lease_renew(name, ctx.node, epoch), ctx.commit_timeout_s)
                if res.get("ok"):
                    if not self.holds_manager_lease:
                        self._log("info", "successfully acquired lock 'ha_manager_lock'")
                    self.holds_manager_lease = True
                    self.manager_lease.acknowledged(t_sent, epoch)
                    return True
            elif holder is None or ctx.lease_expired(name):
                res = ctx.client.submit(C.lease_acquire(name, ctx.node, epoch, seq), ctx.commit_timeout_s)
                if res.get("ok"):
                    self._log("info", f"got lock 'ha_manager_lock' (epoch {res['epoch']})")
                    self.holds_manager_lease = True
                    self.manager_lease.acknowledged(t_sent, int(res["epoch"]))
                    return True
        except StoreUnavailableError as exc:
            self._log("warn", f"manager lease not committed: {exc}")
            return self.holds_manager_lease and self.manager_lease.valid(time.monotonic())
        self.holds_manager_lease = False
        self.manager_lease.lost()
        return False

    def release_ha_manager_lock(self) -> bool:
        if not self.holds_manager_lease:
            return False
        ok = self._release(C.MANAGER_LEASE, self.manager_lease.epoch)
        self.holds_manager_lease = False
        self.manager_lease.lost()
        return ok

    def get_ha_agent_lock(self, node: str | None = None) -> bool:
        ctx = self.ctx
        if node is None or (node == ctx.node and self.role == "lrm"):
            # renewed by the lease keeper thread
            return ctx.quorate() and ctx.node_lease_valid()
        # the CRM master fencing a failed node: take its lease once expired on our clock.
        # Its own node too (marked 'fence' by an earlier master): the keeper lets that
        # lease lapse, and holding it must not count as fenced until it has expired.
        name = C.agent_lease(node)
        if not self.quorate():
            return False
        ctx.observe()
        holder, epoch, seq, _age = ctx.lease_seen(name)
        try:
            if holder == ctx.node and node != ctx.node:
                res = ctx.client.submit(C.lease_renew(name, ctx.node, epoch), ctx.commit_timeout_s)
                return bool(res.get("ok"))
            if holder is None or ctx.lease_expired(name):
                res = ctx.client.submit(C.lease_acquire(name, ctx.node, epoch, seq), ctx.commit_timeout_s)
                if res.get("ok"):
                    self._log("info", f"got lock '{name}' (epoch {res['epoch']}, was {holder})")
                    ctx.observe()
                    return True
        except StoreUnavailableError as exc:
            self._log("warn", f"lease '{name}' not committed: {exc}")
        return False

    def release_ha_agent_lock(self) -> bool:
        # The node lease doubles as this node's heartbeat, so an idle LRM keeps it (the
        # watchdog is closed by the LRM). The daemon releases it for real on shutdown.
        return True

    def release_node_lease_for_shutdown(self) -> bool:
        ctx = self.ctx
        if not ctx.holds_node_lease:
            return False
        ok = self._release(C.agent_lease(ctx.node), ctx.node_lease.epoch)
        ctx.holds_node_lease = False
        ctx.node_lease.lost()
        return ok

    def _release(self, name: str, epoch: int) -> bool:
        try:
            res = self.ctx.client.submit(C.lease_release(name, self.ctx.node, epoch), self.ctx.commit_timeout_s)
        except StoreUnavailableError:
            return False
        return bool(res.get("ok"))

    # --- fence devices (CRM master; harepl/runtime/fence/) ----------------------------------------
    def fence_device_levels(self, node: str) -> int:
        fence = self.ctx.fence
        return len(fence.levels(node)) if fence is not None else 0

    def fence_device(self, node: str, level: int) -> DeviceResult | None:
        ctx = self.ctx
        if ctx.fence is None:
            return DeviceResult(False, "no fence devices configured on this node (fence.config)")
        if level == 0 and not ctx.fence.busy(node, level):
            # the lease as it is before any device acts: a confirmed off takes it by CAS on this
            ctx.observe()
            _holder, epoch, seq, _age = ctx.lease_seen(C.agent_lease(node))
            ctx.fence_seen[node] = (epoch, seq)
        return ctx.fence.attempt(node, level)  # type: ignore[no-any-return]

    def take_fenced_node_lease(self, node: str) -> bool | None:
        ctx = self.ctx
        name = C.agent_lease(node)
        seen = ctx.fence_seen.get(node)
        if seen is None or not self.quorate():
            return None
        try:
            res = ctx.client.submit(C.lease_acquire(name, ctx.node, seen[0], seen[1]), ctx.commit_timeout_s)
        except StoreUnavailableError as exc:
            self._log("warn", f"lease '{name}' not committed: {exc}")
            return None
        del ctx.fence_seen[node]
        ctx.observe()
        if res.get("ok"):
            self._log("info", f"got lock '{name}' (epoch {res['epoch']}) - node '{node}' confirmed off by its "
                              "fence device")
            return True
        self._log("err", f"lease '{name}' not taken after its fence: {res.get('error') or res}")
        return False

    # --- watchdog (LRM only) -----------------------------------------------------------------
    def watchdog_open(self) -> WatchdogHandle:
        self.ctx.watchdog.open()
        return "watchdog"

    def watchdog_update(self, handle: WatchdogHandle) -> None:
        # feed only while the node lease is locally valid (checked again here)
        if self.ctx.node_lease_valid():
            self.ctx.watchdog.feed()

    def watchdog_close(self, handle: WatchdogHandle) -> None:
        self.ctx.watchdog.close()

    def watchdog_expires_at(self, handle: WatchdogHandle) -> float:
        wd = self.ctx.watchdog.wd
        return wd.fires_at_s() if wd is not None else float("inf")  # type: ignore[no-any-return]

    def node_lease_valid(self) -> bool:
        return self.ctx.node_lease_valid()

    # --- replicated state ---------------------------------------------------------------------
    def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return self.ctx.client.read(lambda c: fn(c, *args), linearizable=False)
        except Exception as exc:  # noqa: BLE001
            raise StoreUnavailableError(f"read failed: {exc}") from exc

    def _submit_fenced(self, cmd: dict[str, Any]) -> dict[str, Any]:
        res = self.ctx.client.submit(cmd, self.ctx.commit_timeout_s)
        if res.get("ok"):
            return res
        if res.get("reason") == "stale_epoch":
            raise StaleLeaseError(str(res.get("error")))
        raise StoreUnavailableError(f"{cmd['op']} rejected: {res.get('error')}")

    def _manager_epoch(self) -> int:
        if not self.holds_manager_lease:
            raise StaleLeaseError("not holding the manager lease")
        return self.manager_lease.epoch

    def read_manager_status(self) -> ManagerStatus:
        return self._read(reads.manager_status)  # type: ignore[no-any-return]

    def write_manager_status(self, status: ManagerStatus) -> None:
        body = dict(status)
        body["timestamp"] = time.time()  # wall clock, for humans (status display) only
        self._submit_fenced(C.manager_status_set(body, self._manager_epoch()))

    def read_lrm_status(self, node: str | None = None) -> LrmStatus:
        return cast(LrmStatus, self._read(reads.lrm_status, node or self.ctx.node) or {})

    def write_lrm_status(self, status: LrmStatus) -> None:
        ctx = self.ctx
        if not ctx.holds_node_lease:
            raise StoreUnavailableError(f"no lease 'agent:{ctx.node}' yet")
        body = dict(status)
        body.pop("timestamp", None)
        # the newest command version this node knows: newer commands are proposed only
        # once every running node knows them (store.client, rolling upgrades)
        body["vocab"] = max(C.SUPPORTED_VERSIONS)
        # The LRM writes every loop; an unchanged status under the same epoch is only
        # re-written as a keep-alive for the time shown in `ha-manager status` (liveness
        # itself is judged from the node lease). Saves a commit per loop on an idle node.
        key = (json.dumps(body, sort_keys=True), ctx.node_lease.epoch)
        now = time.monotonic()
        if key == self._last_lrm_write and now - self._last_lrm_write_at < LRM_STATUS_KEEPALIVE_S:
            return
        body["timestamp"] = time.time()  # wall clock, for humans only
        self._submit_fenced(C.lrm_status_set(ctx.node, body, ctx.node_lease.epoch))
        self._last_lrm_write, self._last_lrm_write_at = key, now
        if body.get("mode") == "active":
            failpoints.stall("stall-after-active-status")

    def read_service_config(self) -> dict[str, ServiceConfig]:
        return self._read(reads.service_config)  # type: ignore[no-any-return]

    def update_service_config(self, sid: str, changes: Mapping[str, object]) -> None:
        self._submit_fenced(C.resource_set(sid, dict(changes), epoch=self._manager_epoch()))

    def steal_service(self, sid: str, current_node: str, new_node: str) -> None:
        self._submit_fenced(C.resource_set(sid, {"node": new_node}, epoch=self._manager_epoch()))

    def move_service_config(self, sid: str, new_node: str) -> bool:
        """After a successful migration by this node's LRM (Proxmox moves the guest's
        config file; we move the configured node), fenced by our node lease.

        The service is stopped here by now, so an indeterminate outcome (timeout during
        an election) is retried with the same command id until it is definite: a move
        that committed unseen left the service configured on the target while the CRM
        believed the migration failed, and Proxmox's rule for that case (service
        registered on the wrong node) is 'error' (Jepsen finding
        indeterminate-config-move).  Only the job's worker thread waits here; if our
        lease was taken meanwhile, the retry is a definite stale-epoch rejection."""
        ctx = self.ctx
        cmd = C.resource_move(sid, ctx.node, new_node, ctx.node_lease.epoch)
        while True:
            try:
                res = ctx.client.submit(cmd, ctx.commit_timeout_s)
            except StoreUnavailableError as exc:
                if ctx.stop_event.is_set():
                    self._log("err", f"moving '{sid}' to {new_node}: outcome unknown at shutdown ({exc})")
                    return False
                ctx.stop_event.wait(ctx.commit_timeout_s / 4)
                continue
            if not res.get("ok"):
                self._log("err", f"moving '{sid}' to {new_node} rejected: {res.get('error')}")
            return bool(res.get("ok"))

    def read_group_config(self) -> dict[str, GroupConfig]:
        return self._read(reads.groups)  # type: ignore[no-any-return]

    def read_rules_config(self) -> dict[str, RuleConfig]:
        return self._read(reads.rules)  # type: ignore[no-any-return]

    def get_datacenter_settings(self) -> DatacenterConfig:
        # replicated by `ha-manager datacenter set` (store op dc_options_set), already
        # validated by apply: {"ha": {"shutdown_policy": ...}, "crs": {"ha": ..., ...}}
        return self._read(reads.datacenter)  # type: ignore[no-any-return]

    def get_static_node_stats(self) -> dict[str, dict[str, float]]:
        # each daemon publishes its CPUs and memory at start (harepl.runtime.nodestats); a
        # node missing here makes the core fall back to 'basic' with a warning
        return self._read(reads.node_stats)  # type: ignore[no-any-return]

    def get_service_stats(self, kind: str) -> dict[str, dict[str, float]]:
        # each service's configured CPUs and memory (resource parameters maxcpu / maxmem,
        # docs/scheduling.md), for 'static'; 'dynamic' has no live figures yet and uses
        # the same
        from harepl.core.placement import configured_service_stats

        return configured_service_stats(self.read_service_config())  # type: ignore[arg-type]

    def read_crm_commands(self) -> list[str]:
        queued = self._read(reads.crm_commands)
        if not queued:
            return []
        upto = max(seq for seq, _cmd in queued)
        res = self._submit_fenced(C.crm_command_consume(upto, self._manager_epoch()))
        return [cmd for _seq, cmd in res.get("commands", [])]

    def queue_crm_command(self, cmd: str) -> None:
        try:
            self.ctx.client.submit_checked(C.crm_command_enqueue(cmd), self.ctx.commit_timeout_s)
        except Rejected as exc:
            self._log("err", f"could not queue '{cmd}': {exc}")

    def any_pending_crm_command(self) -> bool:
        return bool(self._read(reads.crm_commands))

    def is_node_shutdown(self) -> tuple[bool, bool]:
        return self.ctx.agents.shutdown_kind()

    # --- resource actions (LRM only) ------------------------------------------------------------
    def get_max_workers(self) -> int:
        # The agents' ActionRunner enforces `max_workers` concurrent actions and queues the
        # rest fairly (first come, first run). The roles' LRM makes one pass per loop and
        # re-queues waiting jobs with start_tries=0 every loop, so with its own limit the
        # same few services win every pass and others starve (measured: 20 services, 4
        # workers, a new service waited 9 s). So the LRM may hand over every job at once.
        return RUNNER_QUEUE_LIMIT

    def resource_agent(self, sid: str) -> ResourceAgent | None:
        return self.ctx.agents.resource_agent(sid, self)

    def start_worker(self, sid: str, job: Callable[[], int]) -> WorkerHandle:
        return self.ctx.agents.start_worker(sid, job)

    def poll_worker(self, handle: WorkerHandle) -> int | None:
        return self.ctx.agents.poll_worker(handle)  # type: ignore[no-any-return]

    def stop_all_services(self, deadline: float) -> tuple[list[str], list[str]]:
        # every configured service, wherever the CRM placed it: anything may run here
        # after a restart, and this read is local (no quorum needed)
        try:
            configs = self.read_service_config()
        except StoreUnavailableError:
            configs = {}
        return self.ctx.agents.stop_all(configs, deadline)  # type: ignore[no-any-return]

    def take_service_deaths(self) -> list[tuple[str, str]]:
        return [(res.sid, res.status.value if res.status is not None else "unknown")
                for res in self.ctx.agents.take_deaths()]
