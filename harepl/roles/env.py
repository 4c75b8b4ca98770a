"""The `Env`: the one door between the CRM/LRM roles and the world.

Modeled on Proxmox's `PVE::HA::Env`, adapted to harepl's lease/epoch design (docs/safety.md).
Two implementations exist: the simulator's (`harepl.sim`, in memory, virtual clock) and the
runtime's (over the Raft-replicated store). The roles (`harepl.roles.crm`, `.lrm`) must not
assume anything that only holds in one of them: every write may be rejected, every read may
fail while the store is unavailable, resource actions may be asynchronous.

One `Env` object serves one role on one node (Proxmox creates a separate env for the CRM and
for the LRM of a node; so do we: the manager lease is held by the CRM's env, the node lease
by the LRM's env).

Errors an implementation may raise (the roles handle them; anything else is a bug):
- `StaleLeaseError`: a write carried an epoch that is no longer current (we were deposed).
- `StoreUnavailableError`: the replicated state cannot be read/written right now
  (no quorum, timeout). Proxmox's equivalent is a pmxcfs error.
- `WatchdogUnavailableError`: the watchdog cannot be armed or fed (no device, its
  multiplexer gone); one line. The LRM then runs nothing new and says why in its status.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

from harepl.core.fencing import DeviceResult
from harepl.core.types import (
    DatacenterConfig,
    GroupConfig,
    LrmStatus,
    ManagerStatus,
    NodeInfo,
    RuleConfig,
    ServiceConfig,
)
from harepl.store.errors import StaleLeaseError as StaleLeaseError  # re-exported for the roles
from harepl.store.errors import StoreUnavailableError as StoreUnavailableError

WatchdogHandle = str


class WatchdogUnavailableError(RuntimeError):
    """The watchdog cannot be armed or fed; the message is one line for the log."""

WorkerHandle = str


@runtime_checkable
class ResourceAgent(Protocol):
    """Drives one kind of resource on the local node (vm:, ct:, fa:, exec, ocf, systemd).

    Semantics follow Proxmox's `PVE::HA::Resources` plugins: all methods are idempotent and
    report failure through their return value (never by raising for an expected failure).
    They may block (they are called from LRM workers); implementations bound their time.
    """

    def check_running(self, sid: str) -> bool:
        """True if the resource is running on this node."""
        ...

    def start(self, sid: str) -> None:
        """Try to start the resource here; the caller checks `check_running` afterwards."""
        ...

    def shutdown(self, sid: str, timeout_s: float | None) -> None:
        """Try to stop the resource (gracefully within timeout_s, 0 = hard stop)."""
        ...

    def migrate(self, sid: str, target: str, online: bool) -> bool:
        """Move the resource to `target` (online=live migration, else stop+relocate).

        Returns True if the resource left this node. Must move the service's configured
        node (`service_config[sid]['node']`) to `target` on success.
        """
        ...

    def remove_locks(self, sid: str, locks: list[str], fenced_node: str) -> str | None:
        """Remove the first of `locks` held by the resource (after fencing); return it."""
        ...


@runtime_checkable
class Env(Protocol):
    # --- identity, time, logging ---------------------------------------------------------

    def nodename(self) -> str:
        """The name of the node this role runs on."""
        ...

    def get_time(self) -> float:
        """Seconds on a *monotonic* clock (never the wall clock; never goes backwards).

        All safety timing (fence delay, lease expiry, watchdog feeding) uses this clock.
        """
        ...

    def sleep(self, seconds: float) -> None:
        """Wait; the simulator only advances its virtual clock."""
        ...

    def sleep_until(self, t: float) -> None:
        """Wait until get_time() >= t (no-op if already past)."""
        ...

    def log(self, level: str, msg: str) -> None:
        """Log one line. level: debug|info|notice|warn|warning|err|email.

        The simulator prints Proxmox's shape: `info     20    node1/crm: <msg>`.
        """
        ...

    def sendmail(self, subject: str, text: str) -> None:
        """Notify the operator (fencing). The simulator logs the subject at level 'email'."""
        ...

    def loop_start_hook(self) -> None:
        """Called at the start of every role iteration (the simulator syncs its clock)."""
        ...

    def loop_end_hook(self) -> None:
        """Called at the end of every role iteration."""
        ...

    # --- membership -----------------------------------------------------------------------

    def quorate(self) -> bool:
        """True if this node is a member of a quorate partition *right now*."""
        ...

    def get_node_info(self) -> tuple[dict[str, NodeInfo], bool]:
        """(membership as seen from this node, quorate). Every configured node is a key;
        `online` is true only for members of this node's quorate partition. A node that
        left the cluster's member list is absent (NodeStatus then marks it 'gone')."""
        ...

    def cluster_state_update(self) -> bool:
        """Refresh the local view of the replicated state; False if it is inconsistent or
        unavailable this round (the roles then skip their work, as Proxmox does on a
        pmxcfs failure)."""
        ...

    # --- leases (docs/safety.md) ------------------------------------------------------------

    def get_ha_manager_lock(self) -> bool:
        """Acquire or renew the manager lease (`ha_manager_lock`). True iff this node holds
        it now, with a committed renewal. A new holder gets a new, larger epoch; later
        manager writes through this env carry it. Must return False when not quorate.
        Implementations log `got lock 'ha_manager_lock'` when the lease changes hands."""
        ...

    def release_ha_manager_lock(self) -> bool:
        """Give the manager lease up voluntarily (CRM shutdown / going idle)."""
        ...

    def get_ha_agent_lock(self, node: str | None = None) -> bool:
        """Hold the node lease of `node` (default: this node).

        Own node (the LRM, every loop; it feeds the watchdog only on True): make sure this
        node holds its lease (take it when free or expired, renew it otherwise) and return
        True iff it is held *and* locally valid now, as `node_lease_valid()`. The simulator
        renews in this call; the daemon's lease keeper renews once per loop on its own
        thread and this call reports what that achieved: the same answer, at most a loop
        later. Foreign node (the CRM master fencing a failed node): take it only after
        `lease_timeout_s` of our own monotonic time without seeing it renewed; taking it
        (new epoch) is what acknowledges the fence (docs/safety.md). False when not quorate
        or when the lease is held, and not expired, by someone else."""
        ...

    def release_ha_agent_lock(self) -> bool:
        """The LRM no longer needs this node's lease: every local service is stopped or
        frozen and the watchdog is closed. After this the LRM must not rely on the lease
        (feed a watchdog, start a service) until `get_ha_agent_lock()` says True again.
        The simulator releases it, as Proxmox does (another node may take it at once); the
        daemon keeps renewing it as the node's heartbeat (its 'online' state). Either way
        nothing runs there that a new holder could recover."""
        ...

    def node_lease_valid(self) -> bool:
        """True while this node's lease is locally valid: a renewal sent at t_sent was
        committed and get_time() < t_sent + lease_local_s. Only while it holds may the
        LRM feed the watchdog or start a service."""
        ...

    # --- watchdog (LRM only) ----------------------------------------------------------------

    def watchdog_open(self) -> WatchdogHandle:
        """Arm the watchdog: the node is reset if it is not updated within watchdog_s.
        Raises WatchdogUnavailableError when it cannot be armed."""
        ...

    def watchdog_update(self, handle: WatchdogHandle) -> None:
        """Feed the watchdog; call only while the node lease is locally valid. Raises
        WatchdogUnavailableError when it can no longer be fed (it fires)."""
        ...

    def watchdog_close(self, handle: WatchdogHandle) -> None:
        """Disarm cleanly; only when no service of this node is running unfrozen."""
        ...

    def watchdog_expires_at(self, handle: WatchdogHandle) -> float:
        """When (on the get_time() clock) the armed watchdog fires unless fed again."""
        ...

    # --- fence devices (CRM master only; core/fencing.py decides, docs/safety.md) ---------------

    def fence_device_levels(self, node: str) -> int:
        """How many levels of fence devices `node` has (0: none configured)."""
        ...

    def fence_device(self, node: str, level: int) -> DeviceResult | None:
        """Power `node` off with every parallel device of `level` (0-based). The first call
        starts the attempt (it may take seconds); calls while it runs return None, the
        next one its result, once. `off` counts only when each device's `off` succeeded
        and a `status` after it said off. Never raises for a device problem."""
        ...

    def take_fenced_node_lease(self, node: str) -> bool | None:
        """`node` was confirmed powered off by its fence device: take its lease at a new
        epoch now, without waiting for it to expire, by compare-and-swap on the lease's
        (epoch, seq) as seen when its first fence attempt started — so a node that renewed
        since (a device that lied, or powered off another machine) keeps its lease and this
        returns False. None: not committed now (no quorum, a timeout); ask again."""
        ...

    # --- replicated state ---------------------------------------------------------------------

    def read_manager_status(self) -> ManagerStatus:
        """The last committed manager_status ({} if none). May raise StoreUnavailableError."""
        ...

    def write_manager_status(self, status: ManagerStatus) -> None:
        """Replace manager_status. Only the CRM master calls this; the write carries the
        manager-lease epoch and is rejected (StaleLeaseError) if that epoch is stale."""
        ...

    def read_lrm_status(self, node: str | None = None) -> LrmStatus:
        """The last committed lrm_status of `node` (default: this node), {} if none."""
        ...

    def write_lrm_status(self, status: LrmStatus) -> None:
        """Replace this node's lrm_status; carries the node-lease epoch once the LRM holds
        the lease (before that, only while it has never held it: a status with mode/state
        and no results). Raises StaleLeaseError if the epoch is stale."""
        ...

    def read_service_config(self) -> dict[str, ServiceConfig]:
        """All HA resources, normalised (state 'enabled' -> 'started', defaults filled:
        max_restart=1, max_relocate=1, failback=True, type from the sid prefix)."""
        ...

    def update_service_config(self, sid: str, changes: Mapping[str, object]) -> None:
        """Change fields of one resource (the master uses it for 'stop' -> state=stopped).
        Carries the manager epoch."""
        ...

    def steal_service(self, sid: str, current_node: str, new_node: str) -> None:
        """Move a fenced service's configured node (master only, after the fence is
        acknowledged by taking the node lease). Carries the manager epoch."""
        ...

    def read_group_config(self) -> dict[str, GroupConfig]:
        """HA groups by name ({} if none)."""
        ...

    def read_rules_config(self) -> dict[str, RuleConfig]:
        """HA rules by id ({} if none)."""
        ...

    def get_datacenter_settings(self) -> DatacenterConfig:
        """Cluster-wide settings (ha.shutdown_policy, crs.ha)."""
        ...

    def get_static_node_stats(self) -> dict[str, dict[str, float]]:
        """node -> {'maxcpu': CPUs, 'maxmem': bytes}, for the 'static'/'dynamic' scheduler
        (only called when datacenter crs.ha selects one; {} falls back to 'basic')."""
        ...

    def get_service_stats(self, kind: str) -> dict[str, dict[str, float]]:
        """sid -> {'maxcpu', 'maxmem'}: configured limits (kind 'static') or current usage
        (kind 'dynamic', as {'maxcpu': cpu, 'maxmem': mem}). Only called as above."""
        ...

    def read_crm_commands(self) -> list[str]:
        """Read *and clear* the queued CRM commands (master only), oldest first."""
        ...

    def queue_crm_command(self, cmd: str) -> None:
        """Append a command ('migrate SID NODE', 'stop SID TIMEOUT', ...) for the master."""
        ...

    def any_pending_crm_command(self) -> bool:
        """True if read_crm_commands() would return something."""
        ...

    def is_node_shutdown(self) -> tuple[bool, bool]:
        """(shutdown, reboot): whether this node is shutting down / rebooting (the LRM
        chooses freeze/stop/migrate by the shutdown policy from this)."""
        ...

    # --- resource actions (LRM only) ------------------------------------------------------------

    def get_max_workers(self) -> int:
        """How many resource actions may run at once. 0 means: run them synchronously
        inside start_worker (Proxmox's regression-test mode; the `pve` sim profile)."""
        ...

    def resource_agent(self, sid: str) -> ResourceAgent | None:
        """The agent for this resource's type on this node, or None if the type is unknown."""
        ...

    def start_worker(self, sid: str, job: Callable[[], int]) -> WorkerHandle:
        """Run `job` (returns an exit code) for `sid`. With get_max_workers() == 0 the job
        runs before this returns. Otherwise it runs asynchronously; the LRM never has more
        than get_max_workers() unfinished workers and never two for one sid."""
        ...

    def stop_all_services(self, deadline: float) -> tuple[list[str], list[str]]:
        """Emergency stop: stop every HA service that may run on this node, all at once
        (an action already running on a service is waited for first), by `deadline`
        (get_time() clock). Returns (confirmed stopped, not confirmed stopped)."""
        ...

    def take_service_deaths(self) -> list[tuple[str, str]]:
        """(sid, what the monitor saw) for every local service found dead since the last
        call (a service the LRM had started that is no longer running)."""
        ...

    def poll_worker(self, handle: WorkerHandle) -> int | None:
        """The job's exit code once finished (then the handle is forgotten), else None.
        A job that raised yields -1."""
        ...
