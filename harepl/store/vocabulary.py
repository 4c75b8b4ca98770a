"""The store's command vocabulary: the one registry of every op, and what callers use.

    from harepl.store import vocabulary as C
    client.submit(C.lease_renew("manager", "n1", epoch))

`REGISTRY` is built here, explicitly, from each domain's ``OPS`` (`harepl.store.ops`);
importing a module registers nothing.  The envelope (the fields of every command,
versions, rolling upgrades) is `harepl.store.envelope`; each op's fields, the version it
appeared in and its meaning are declared next to its handler in its domain's module:

- leases        `ops.leases`        lease_acquire, lease_renew, lease_release
- status        `ops.status`        manager_status_set, lrm_status_set
- CRM commands  `ops.crm`           crm_command_enqueue, crm_command_consume
- resources     `ops.resources`     resource_add, resource_set, resource_update (v2),
                                    resource_move, resource_remove
- groups, rules `ops.groups_rules`  group_set, group_update (v2), group_remove,
                                    rule_set, rule_update (v2), rule_remove,
                                    resource_purge (v3: a resource out of the config
                                    and out of every rule, at once)
- datacenter    `ops.datacenter`    dc_options_set (v2)
- nodes         `ops.nodes`         node_add, node_remove, node_stats_set (v2)
- noop (here): nothing; the barrier of linearizable reads.

Version 2 also added the optional ``digest`` of group_set, rule_set and resource_set.

`validate` checks a decoded command and returns its normalised form or raises
`CommandError` with one clear line.  The constructors build valid commands, each at the
lowest version that has its op and fields.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from . import envelope
from .envelope import (
    MANAGER_LEASE,
    SUPPORTED_VERSIONS,
    VERSION,
    CommandError,
    Op,
    Registry,
    agent_lease,
    decode,
    encode,
)
from .ops import crm, datacenter, groups_rules, leases, nodes, resources, status
from .ops.common import DIGEST_MISMATCH
from .ops.crm import crm_command_consume, crm_command_enqueue
from .ops.datacenter import DC_OPTIONS, dc_option_check, dc_options_set
from .ops.groups_rules import (
    group_remove,
    group_set,
    group_update,
    resource_purge,
    rule_remove,
    rule_set,
    rule_update,
)
from .ops.leases import lease_acquire, lease_release, lease_renew
from .ops.nodes import node_add, node_remove, node_stats_set
from .ops.resources import resource_add, resource_move, resource_remove, resource_set, resource_update
from .ops.status import lrm_status_set, manager_status_set


def _noop(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """noop: changes nothing (its commit is the barrier)."""
    return {}


NOOP = Op("noop", _noop, since=1, quiet=True)

#: every op of every version, the one table `validate` and `apply` look ops up in
REGISTRY = Registry((*leases.OPS, *status.OPS, *crm.OPS, *resources.OPS, *groups_rules.OPS,
                     *datacenter.OPS, *nodes.OPS, NOOP))


def validate(cmd: dict[str, Any]) -> dict[str, Any]:
    """Check a decoded command; return the normalised command or raise CommandError."""
    return envelope.validate(cmd, REGISTRY)


def min_version(op: str, fields: Iterable[str] = frozenset()) -> int:
    """The lowest command version whose vocabulary has `op` with all `fields`."""
    return envelope.min_version(REGISTRY, op, fields)


def make(op: str, ts: float | None = None, cid: str | None = None, **fields: Any) -> dict[str, Any]:
    """Build a command of op `op` with a fresh unique id, at the lowest version that has
    its fields (given as None: left out) and accepts their values (a value only a later
    version knows, e.g. crs ha=dynamic, makes it a command of that version).  `ts`
    defaults to the wall clock (history only)."""
    given = {k: v for k, v in fields.items() if v is not None}
    first = min_version(op, given)
    if REGISTRY.lookup(op, first) is REGISTRY.lookup(op, VERSION):
        return envelope.command(op, first, given, ts, cid)  # one meaning from `first` on
    for version in range(first, VERSION + 1):
        cmd = envelope.command(op, version, given, ts, cid)
        try:
            validate(cmd)
        except CommandError:
            continue
        return cmd
    return envelope.command(op, first, given, ts, cid)


def noop(**kw: Any) -> dict[str, Any]:
    return NOOP.make(**kw)


__all__ = [
    "DC_OPTIONS", "DIGEST_MISMATCH", "MANAGER_LEASE", "NOOP", "REGISTRY", "SUPPORTED_VERSIONS", "VERSION",
    "CommandError", "agent_lease", "crm_command_consume", "crm_command_enqueue", "dc_option_check",
    "dc_options_set", "decode", "encode", "group_remove", "group_set", "group_update", "lease_acquire",
    "lease_release", "lease_renew", "lrm_status_set", "make", "manager_status_set", "min_version", "node_add",
    "node_remove", "node_stats_set", "noop", "resource_add", "resource_move", "resource_purge", "resource_remove",
    "resource_set", "resource_update", "rule_remove", "rule_set", "rule_update", "validate",
]
