"""State shapes shared by the core, the roles, the simulator, the store and the runtime.

All of them are plain JSON-able dicts (TypedDicts), with exactly the keys Proxmox's
`Manager.pm` / `LRM.pm` keep, so a manager_status written by harepl reads like one written
by `pve-ha-crm`. See docs/design.md, section 3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NotRequired, TypedDict

# --- enumerations (as string literals, the on-disk / on-wire spelling) -------------------

ServiceState = Literal[
    "stopped",
    "request_stop",
    "request_start",
    "request_start_balance",
    "started",
    "fence",
    "recovery",
    "freeze",
    "migrate",
    "relocate",
    "error",
]
SERVICE_STATES: tuple[str, ...] = (
    "stopped", "request_stop", "request_start", "request_start_balance", "started",
    "fence", "recovery", "freeze", "migrate", "relocate", "error",
)

RequestedState = Literal["started", "stopped", "disabled", "ignored"]
REQUESTED_STATES: tuple[str, ...] = ("started", "stopped", "disabled", "ignored")

NodeState = Literal["online", "maintenance", "unknown", "fence", "gone"]
NODE_STATES: tuple[str, ...] = ("online", "maintenance", "unknown", "fence", "gone")

CrmState = Literal["wait_for_quorum", "master", "slave", "lost_manager_lock"]
LrmState = Literal["wait_for_agent_lock", "active", "lost_agent_lock", "maintenance"]
LrmMode = Literal["active", "restart", "shutdown", "maintenance"]

ShutdownPolicy = Literal["conditional", "freeze", "failover", "migrate"]

# Agent / LRM result codes (Proxmox's PVE::HA::Tools exit codes).
SUCCESS = 0
ERROR = 1
ETRY_AGAIN = 2
EWRONG_NODE = 3
EUNKNOWN_SERVICE_TYPE = 4
EUNKNOWN_COMMAND = 5
EINVALID_PARAMETER = 6
EUNKNOWN_SERVICE = 7
IGNORED = 8


# --- CRM (manager) status -----------------------------------------------------------------

class ServiceStatus(TypedDict):
    """One entry of manager_status['service_status'] (Proxmox's `$sd`)."""

    state: str  # ServiceState
    node: str
    uid: str
    target: NotRequired[str]  # migrate / relocate / request_start_balance
    failed_nodes: NotRequired[list[str]]  # relocation policy: nodes where a start failed
    maintenance_node: NotRequired[str]  # node to move back to once out of maintenance
    running: NotRequired[int]  # 1 once the LRM reported a successful start ('started' only)
    timeout: NotRequired[int]  # request_stop from a 'stop SID TIMEOUT' command
    cmd: NotRequired[list[str]]  # pending crm command: [task, arg]
    stop_unconfirmed: NotRequired[int]  # 'error' after a failed stop: may still run (policy)


class NodeRequest(TypedDict, total=False):
    maintenance: int


class ManagerStatus(TypedDict, total=False):
    """The CRM master's state, written only by the master (carrying the manager epoch)."""

    master_node: str
    node_status: dict[str, str]  # node -> NodeState
    service_status: dict[str, ServiceStatus]
    node_request: dict[str, NodeRequest]
    timestamp: float
    disarm: dict[str, str]  # {'mode': 'freeze'|'ignore', 'state': 'disarming'|'disarmed'}
    fence_status: dict[str, str]  # node -> what its fence devices did (hardware fencing only)


# --- LRM status ---------------------------------------------------------------------------

class LrmResult(TypedDict):
    sid: str
    state: str  # the requested service state the action was run for
    exit_code: int


class LrmStatus(TypedDict, total=False):
    """Written by a node's LRM (carrying its node-lease epoch once it holds the lease)."""

    mode: str  # LrmMode
    state: str  # LrmState
    results: dict[str, LrmResult]  # uid -> result
    timestamp: float
    watchdog_error: str  # only while the LRM cannot arm or feed its watchdog (one line)


# --- configuration ------------------------------------------------------------------------

class ServiceConfig(TypedDict, total=False):
    """One HA resource, normalised (see core.config.normalize_service_config)."""

    type: str  # vm | ct | fa | exec | ocf | systemd
    state: str  # RequestedState ('enabled' normalised to 'started')
    node: str
    group: str
    max_restart: int
    max_relocate: int
    failback: bool
    comment: str
    lock: str  # simulator / Proxmox guest lock (backup, migrate, ...)
    params: dict[str, str]


class GroupConfig(TypedDict, total=False):
    nodes: dict[str, int]  # node -> priority (higher is preferred)
    restricted: bool
    nofailback: bool


class RuleConfig(TypedDict, total=False):
    type: str  # node-affinity | resource-affinity
    resources: list[str]
    nodes: dict[str, int]  # node-affinity: node -> priority
    strict: bool
    affinity: str  # resource-affinity: positive | negative
    disable: bool


class NodeInfo(TypedDict):
    """Cluster membership as seen by one node (Proxmox's get_node_info entries)."""

    online: bool  # member of the quorate partition


class DatacenterHa(TypedDict, total=False):
    shutdown_policy: str  # ShutdownPolicy
    fencing: str  # watchdog | hardware | both (core/fencing.py)


class DatacenterCrs(TypedDict, total=False):
    ha: str  # basic | static
    ha_rebalance_on_start: bool


class DatacenterConfig(TypedDict, total=False):
    ha: DatacenterHa
    crs: DatacenterCrs


# --- effects: the configuration changes a manager round asks the CRM role to commit ---------
#
# Apply order (harepl.roles.crm applies them; the simulator runs the same role):
#   1. the effects, one by one, in the order the round produced them (services in sorted
#      order, each at the transition that decided it);
#   2. then the round's manager_status.
# Effects come first because the status they go with may depend on them: a service
# recovered to node B is 'started' on B in that status, and B's LRM can start it only once
# the service's configuration names B (otherwise it answers EWRONG_NODE). This is
# Proxmox's order too: `steal_service` runs inside the round, the status is flushed at its
# end.


@dataclass(frozen=True)
class StealService:
    """Move a service's configuration from a fenced node to its recovery node."""

    sid: str
    current_node: str
    new_node: str


@dataclass(frozen=True)
class UpdateServiceConfig:
    """Change fields of a service's configuration (e.g. `state: stopped` after a
    'stop SID TIMEOUT' command)."""

    sid: str
    changes: dict[str, object] = field(default_factory=dict)


Effect = StealService | UpdateServiceConfig
