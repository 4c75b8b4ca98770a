"""The domain vocabulary, in one place: every state and mode, the defaults, the name rules.

Pure (no I/O, nothing above `harepl.core` imported), so every layer can import it: the
core and the roles decide with it, the store checks commands with it, the API, the CLI,
the TUI and the metrics name and offer the same values.  The spellings are Proxmox's
(pve-ha-manager: `Manager.pm`, `NodeStatus.pm`, `CRM.pm`, `LRM.pm`, `Resources.pm`,
`Config.pm`, `Tools.pm`), the on-disk and on-wire strings: each enum is a `StrEnum`, so a
member *is* its string (``ServiceState.STARTED == "started"``, JSON writes ``"started"``)
and code that still compares plain strings keeps working.

Test a plain string with the tuples (``state in REQUESTED_STATES``): on Python 3.11 ``in``
on the enum class itself raises for a non-member.

Two rules for changing anything here (docs/design.md, "Vocabulary"):

- a value, a default or a name rule that the store checks is part of the replicated
  history: `apply` must decide an old entry the same way on every replica, whatever its
  version, so a stricter rule goes where new input enters (API, CLI, scenario files) or
  behind a new ``since`` of a store op, never into a check `apply` runs on entries
  already committed (`COMMITTED_NAME_RE` is that frozen rule);
- a new state is a new spelling on disk: an older reader must be able to ignore it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

# --- services -----------------------------------------------------------------------------


class ServiceType(StrEnum):
    """A resource's type, the prefix of its id (``vm:100``); selects the agent."""

    VM = "vm"            #: a virtual machine (Proxmox's PVEVM; here libvirt VirtualDomain)
    CT = "ct"            #: a container (Proxmox's PVECT; here podman)
    FA = "fa"            #: the simulator's "failing" test resource (Proxmox's VirtFail)
    EXEC = "exec"        #: a command line harepl runs and tracks itself
    OCF = "ocf"          #: an OCF resource agent script
    SYSTEMD = "systemd"  #: a systemd unit


class RequestedState(StrEnum):
    """What the operator asks of a service: the ``state`` of its configuration
    (Proxmox's resources.cfg ``state``, Resources.pm)."""

    STARTED = "started"    #: keep it running; recover it on node failure
    STOPPED = "stopped"    #: keep it stopped, but still move it off a failed node
    DISABLED = "disabled"  #: stop it and leave it where it is; the only way out of 'error'
    IGNORED = "ignored"    #: out of HA's hands: dropped from the manager status, never touched


#: accepted on input, stored as their target (Resources.pm: "`enabled` is just an alias")
REQUESTED_STATE_ALIASES: dict[str, RequestedState] = {"enabled": RequestedState.STARTED}


class ServiceState(StrEnum):
    """The CRM's state of a service: manager_status ``service_status[sid].state``
    (Proxmox's Manager.pm, one ``next_state_*`` per state)."""

    STOPPED = "stopped"              #: stopped, as the LRM confirmed
    REQUEST_STOP = "request_stop"    #: to be stopped; waiting for the LRM to confirm
    REQUEST_START = "request_start"  #: to be started; the CRM first picks its node (CRS)
    REQUEST_START_BALANCE = "request_start_balance"  #: to be moved to the picked node, then started
    STARTED = "started"              #: active: its LRM keeps it running (restarts it, reports)
    FENCE = "fence"                  #: its node left the quorum: wait until that node is fenced
    RECOVERY = "recovery"            #: its node is fenced: wait for a node to recover it on
    FREEZE = "freeze"                #: its LRM restarts or shuts down: do not touch it
    MIGRATE = "migrate"              #: being live-migrated to ``target``
    RELOCATE = "relocate"            #: being stopped, moved to ``target`` and started there
    ERROR = "error"                  #: failed beyond its limits: hands off until disabled


class NodeState(StrEnum):
    """The CRM's state of a node: manager_status ``node_status`` (NodeStatus.pm)."""

    ONLINE = "online"            #: in the quorate partition; its LRM may run services
    MAINTENANCE = "maintenance"  #: online, but its services are moved away (and back after)
    UNKNOWN = "unknown"          #: not seen in the quorate partition; fenced after a grace time
    FENCE = "fence"              #: must be fenced (its agent lease taken) before any recovery
    GONE = "gone"                #: removed from the cluster; forgotten once nothing refers to it


class CrmState(StrEnum):
    """A node's CRM role state (CRM.pm)."""

    WAIT_FOR_QUORUM = "wait_for_quorum"      #: not in the quorate partition: does nothing
    MASTER = "master"                        #: holds the manager lease and runs the manager
    SLAVE = "slave"                          #: quorate, another node is master: waits for the lease
    LOST_MANAGER_LOCK = "lost_manager_lock"  #: was master, lost the lease: stops, or the watchdog fires


class LrmState(StrEnum):
    """A node's LRM state: lrm_status ``state`` (LRM.pm)."""

    WAIT_FOR_AGENT_LOCK = "wait_for_agent_lock"  #: has no service to run, or waits for its node's lease
    ACTIVE = "active"                            #: holds its node's agent lease and runs its services
    LOST_AGENT_LOCK = "lost_agent_lock"          #: lost the lease: stops its services before the watchdog fires
    MAINTENANCE = "maintenance"                  #: in maintenance: holds the lease, runs nothing


class LrmMode(StrEnum):
    """What a node's LRM is doing: lrm_status ``mode`` (LRM.pm)."""

    ACTIVE = "active"            #: normal operation
    RESTART = "restart"          #: restarting (the daemon, not the node): services freeze
    SHUTDOWN = "shutdown"        #: the node shuts down: the shutdown policy decides
    MAINTENANCE = "maintenance"  #: the node enters maintenance: its services move away


# --- datacenter settings (Proxmox's datacenter.cfg ``ha`` and ``crs``) --------------------


class ShutdownPolicy(StrEnum):
    """datacenter ``ha: shutdown_policy``: what a node shutdown does to its services."""

    CONDITIONAL = "conditional"  #: freeze them on reboot; on poweroff stop them, to be recovered elsewhere
    FREEZE = "freeze"            #: freeze them: they stay, and start again where they were
    FAILOVER = "failover"        #: recover them elsewhere once the node is down
    MIGRATE = "migrate"          #: move them away before the node goes down


class CrsMode(StrEnum):
    """datacenter ``crs: ha``: how the CRM picks a node for a service."""

    BASIC = "basic"    #: fewest services
    STATIC = "static"  #: configured CPU and memory of nodes and services


# --- placement rules ----------------------------------------------------------------------


class RuleType(StrEnum):
    """An HA rule's ``type`` (Rules/NodeAffinity.pm, Rules/ResourceAffinity.pm)."""

    NODE_AFFINITY = "node-affinity"          #: resources prefer (or, strict, need) some nodes
    RESOURCE_AFFINITY = "resource-affinity"  #: resources keep together (positive) or apart


class Affinity(StrEnum):
    """A resource-affinity rule's ``affinity``."""

    POSITIVE = "positive"  #: on one node
    NEGATIVE = "negative"  #: on different nodes


# the values as tuples of plain strings, in declaration order, for `in` tests and messages
SERVICE_TYPES: tuple[str, ...] = tuple(t.value for t in ServiceType)
REQUESTED_STATES: tuple[str, ...] = tuple(s.value for s in RequestedState)
SERVICE_STATES: tuple[str, ...] = tuple(s.value for s in ServiceState)
NODE_STATES: tuple[str, ...] = tuple(s.value for s in NodeState)
CRM_STATES: tuple[str, ...] = tuple(s.value for s in CrmState)
LRM_STATES: tuple[str, ...] = tuple(s.value for s in LrmState)
LRM_MODES: tuple[str, ...] = tuple(m.value for m in LrmMode)
SHUTDOWN_POLICIES: tuple[str, ...] = tuple(p.value for p in ShutdownPolicy)
CRS_MODES: tuple[str, ...] = tuple(m.value for m in CrsMode)
RULE_TYPES: tuple[str, ...] = tuple(t.value for t in RuleType)
AFFINITIES: tuple[str, ...] = tuple(a.value for a in Affinity)


# --- defaults -----------------------------------------------------------------------------

#: A service configured without ``state`` is started: Proxmox's schema default
#: (Resources.pm ``default => 'started'``) and what it reads (Config.pm
#: read_and_check_resources_config: ``$d->{state} = 'started' if !defined($d->{state})``).
#: The store, the API and the CLI use it.
DEFAULT_REQUESTED_STATE = RequestedState.STARTED.value

#: ...except in a simulator scenario's ``service_config`` file, where a service without
#: ``state`` is disabled, as in Proxmox's own simulator (Sim/Hardware.pm
#: read_service_config: ``$d->{state} = 'disabled' if !$d->{state}``); the 108 Proxmox
#: scenarios are written against it.  `harepl.core.config.normalize_service` reads those.
SCENARIO_DEFAULT_REQUESTED_STATE = RequestedState.DISABLED.value

#: What an unset setting of a service means (Config.pm read_and_check_resources_config).
SERVICE_DEFAULTS: Mapping[str, object] = MappingProxyType({
    "state": DEFAULT_REQUESTED_STATE, "max_restart": 1, "max_relocate": 1, "failback": True})

#: The keys a service configuration may hold (``sid`` is its id, not a key).
SERVICE_KEYS: tuple[str, ...] = ("type", "state", "node", "group", "max_restart", "max_relocate",
                                 "failback", "comment", "params")

#: What a field-level service edit may delete (also ``params.KEY``, one agent parameter):
#: a key of `SERVICE_DEFAULTS` goes back to its default, the others go.  One list for the
#: store's resource_update (since version 2) and the API.
RESOURCE_DELETABLE: tuple[str, ...] = ("group", "comment", "params", "max_restart", "max_relocate", "failback")

#: What a group edit may delete (restricted and nofailback go back to false).
GROUP_DELETABLE: tuple[str, ...] = ("comment", "restricted", "nofailback")
#: What a rule edit may delete.
RULE_DELETABLE: tuple[str, ...] = ("comment", "disable", "strict")

#: What an unset datacenter HA setting means (Proxmox's datacenter.cfg defaults).
DATACENTER_DEFAULTS: Mapping[str, Mapping[str, object]] = MappingProxyType({
    "ha": MappingProxyType({"shutdown_policy": ShutdownPolicy.CONDITIONAL.value}),
    "crs": MappingProxyType({"ha": CrsMode.BASIC.value})})


def requested_state(raw: object) -> str | None:
    """`raw` as a requested state (aliases resolved), or None if it is not one."""
    if not isinstance(raw, str):
        return None
    state = REQUESTED_STATE_ALIASES.get(raw, raw)
    return str(state) if state in REQUESTED_STATES else None


# --- names --------------------------------------------------------------------------------
#
# One rule per kind of name, for new input (API, CLI, membership changes, scenario files).
# Names already committed to the store are not re-checked against them: the store accepts
# `COMMITTED_NAME_RE`, and an existing node, service, group or rule keeps its name.

#: A node name: a hostname label, letters, digits and '-' inside, at most 63 characters.
#: Proxmox's rule (pve-common JSONSchema.pm pve_verify_node_name, and pve-ha-manager
#: Tools.pm pve_verify_ha_node / parse_node_priority): no '_' and no '.'.
NODE_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
NODE_NAME_RULE = "letters, digits and '-' (not first or last), at most 63 characters"

#: The name part of a service id (after ``TYPE:``); ``vm`` and ``ct`` take a VMID.
SID_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,119}$")
#: A Proxmox VMID (pve-vmid: 1 to 999999999; Proxmox itself starts guests at 100).
VMID_RE = re.compile(r"^[1-9][0-9]{0,8}$")
#: A service id, ``TYPE:NAME`` (Tools.pm pve_verify_ha_resource_id: ``^[a-z]+:\S+$``,
#: narrowed to the name rule above).  The API also requires a known `ServiceType`.
SID_RE = re.compile(r"^(?P<type>[a-z][a-z0-9_-]*):(?P<name>[A-Za-z0-9][A-Za-z0-9_.@-]{0,119})$")

#: A group or rule id: a letter, then letters, digits, '_', '.', '-'; at most 64.
#: (Proxmox's pve-configid is ``[a-z][a-z0-9_-]+``, case-insensitive; harepl also takes
#: '.' and one-letter ids, as it always has: ids in use are not refused.)
CONFIG_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")

#: The widest name a committed store command may carry (node, service, group, rule):
#: frozen with the replicated log; never tightened (see the module docstring).
COMMITTED_NAME_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")


def is_node_name(raw: object) -> bool:
    return isinstance(raw, str) and NODE_NAME_RE.match(raw) is not None


def is_config_id(raw: object) -> bool:
    return isinstance(raw, str) and CONFIG_ID_RE.match(raw) is not None


def split_sid(raw: object) -> tuple[str, str] | None:
    """``(type, name)`` of a well-formed service id, else None (the type is not checked
    against `ServiceType`: the simulator knows more types than the runtime)."""
    m = SID_RE.match(raw) if isinstance(raw, str) else None
    return (m["type"], m["name"]) if m else None
