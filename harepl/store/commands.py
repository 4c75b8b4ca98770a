"""The versioned JSON command vocabulary of the replicated store.

A command is one JSON object.  Every command has:

- ``v``     -- vocabulary version, currently ``1``;
- ``id``    -- unique string chosen by the proposer (uuid4 hex).  Applying the same id
              twice changes nothing and returns the first result, so callers retry
              with the same id after a timeout;
- ``op``    -- the operation, one of `OPS`;
- ``ts``    -- proposer's wall-clock time (float seconds).  History only: `apply` never
              compares it with anything;
- ``epoch`` -- the fencing token, on every op that acts for a lease holder (marked
              "fenced" below).  Applying a fenced command whose epoch is not the lease's
              current epoch, or whose lease is released, records a rejection.

Operations (fields besides the four above; ``?`` = optional):

lease_acquire   lease, holder, seen_epoch, seen_seq
    Compare-and-swap.  The acquirer states the (epoch, seq) of the lease that it saw go
    stale on its own monotonic clock (0, 0 for a lease never held).  Granted only if the
    lease still has exactly that (epoch, seq); then holder := holder, epoch += 1,
    seq += 1.  Result: ``epoch``, ``seq``.
lease_renew     lease, holder, epoch            fenced (lease)
    seq += 1.  Rejected unless holder and epoch match.  Result: ``seq``.
lease_release   lease, holder, epoch            fenced (lease)
    holder := NULL, seq += 1 (the epoch stays; the next acquire increments it).
manager_status_set  status, epoch               fenced ('manager')
lrm_status_set      node, status, epoch?        fenced ('agent:<node>')
    Without an epoch (an LRM that never held its lease yet) it is accepted only while
    the node's lease is not held and the status has no ``results``.
crm_command_enqueue cmd                         (operator; string like "migrate SID NODE")
crm_command_consume upto_seq, epoch             fenced ('manager')
    Deletes queued commands with seq <= upto_seq; result ``commands`` = [[seq, cmd], ...]
    deleted, so a read-and-clear is one atomic step.
resource_add    sid, config                     config as in CONTRACTS.md ("enabled" -> "started")
resource_set    sid, changes, delete?           partial update; ``delete`` lists optional keys
resource_remove sid
resource_move   sid, from_node, to_node, epoch  fenced ('agent:<from_node>')
    An LRM's migration moving the configured node (Proxmox moves the guest's config
    file).  Rejected ('conflict') unless the service is configured on from_node.
group_set       name, config                    upsert {"nodes": {node: prio}, "restricted", "nofailback"}
group_remove    name
rule_set        rule_id, rule                   upsert
rule_remove     rule_id
node_add        node, addr?
node_remove     node
noop            (nothing)                       barrier for linearizable reads

Version 2 (``v: 2``; every version-1 command is still accepted and means what it meant,
so an old log replays to the same state):

group_set, rule_set, resource_set   + digest?   refused unless the object's current
    digest (`harepl.store.reads.digest`, SHA1 of its canonical JSON as read) equals it:
    "config changed meanwhile (digest mismatch) - reload and retry".
group_update    name, changes, delete?, digest?
rule_update     rule_id, changes, delete?, digest?
resource_update sid, changes, delete?, digest?
    Field-level edits merged inside apply (no read-modify-write by the proposer, so two
    operators editing different fields of one object both win).  ``changes`` holds only
    the named fields; a resource's ``params`` are merged key by key and ``delete`` may
    name ``params.KEY``.  Deleting restricted/nofailback/strict/disable or a resource's
    max_restart/max_relocate/failback means "back to the default".
dc_options_set  options, delete?, digest?       datacenter HA settings (commands_v2.DC_OPTIONS)
    ``options`` = {"ha": {"shutdown_policy": ...}, "crs": {"ha": ..., ...}}, merged key
    by key; ``delete`` lists "SECTION" or "SECTION.KEY".  Digest of the whole settings.
node_stats_set  node, maxcpu, maxmem            a node's static capacity (CPUs, bytes)

Operator ops (resource_*, group_*, rule_*, node_*, dc_options_set, crm_command_enqueue) carry no epoch;
if they do carry one, they are fenced on the 'manager' lease (the CRM master may change
the configuration, e.g. when it removes a service).

`validate` checks a decoded command and returns its normalised form or raises
`CommandError` with one clear line.  The constructors below build valid commands.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

VERSION = 2
SUPPORTED_VERSIONS = (1, 2)

MANAGER_LEASE = "manager"

SERVICE_TYPES = ("vm", "ct", "fa", "exec", "ocf", "systemd")
REQUESTED_STATES = ("started", "stopped", "disabled", "ignored")
SHUTDOWN_POLICIES = ("conditional", "freeze", "failover", "migrate")
CRS_MODES = ("basic", "static")
REBALANCE_METHODS = ("exhaustive", "topsis")
DIGEST_MISMATCH = "config changed meanwhile (digest mismatch) - reload and retry"
CRM_COMMAND_RE = re.compile(
    r"^(migrate|relocate) \S+ \S+$|^stop \S+ \d+$|^(enable|disable)-node-maintenance \S+$"
)
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")


class CommandError(ValueError):
    """A command that fails validation (becomes a recorded rejection at apply)."""


def agent_lease(node: str) -> str:
    """Name of a node's LRM lease."""
    return f"agent:{node}"


# -- field validators ---------------------------------------------------------------

Validator = Callable[[str, Any], Any]


def _name(field: str, v: Any) -> str:
    if not isinstance(v, str) or not _NAME_RE.match(v):
        raise CommandError(f"{field}: expected a name of letters, digits and _.:@- (got {v!r})")
    return v


def _str(field: str, v: Any) -> str:
    if not isinstance(v, str):
        raise CommandError(f"{field}: expected a string (got {type(v).__name__})")
    return v


def _int(field: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise CommandError(f"{field}: expected a non-negative integer (got {v!r})")
    return v


def _bool(field: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if v in (0, 1):
        return bool(v)
    raise CommandError(f"{field}: expected a boolean (got {v!r})")


def _dict(field: str, v: Any) -> dict[str, Any]:
    if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
        raise CommandError(f"{field}: expected a JSON object")
    return v


def _node_prios(field: str, v: Any) -> dict[str, int]:
    d = _dict(field, v)
    for node, prio in d.items():
        _name(f"{field} node", node)
        if isinstance(prio, bool) or not isinstance(prio, int):
            raise CommandError(f"{field}: priority of {node!r} must be an integer")
    return d


def _crm_cmd(field: str, v: Any) -> str:
    s = _str(field, v)
    if not CRM_COMMAND_RE.match(s):
        raise CommandError(f"{field}: unknown CRM command {s!r}")
    return s


def service_config(field: str, v: Any, partial: bool = False) -> dict[str, Any]:
    """Validate and normalise a service config (CONTRACTS.md shape)."""
    d = dict(_dict(field, v))
    allowed = {"type", "state", "node", "group", "max_restart", "max_relocate", "failback",
               "comment", "params"}
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise CommandError(f"{field}: unknown key(s) {', '.join(unknown)}")
    if "state" in d:
        if d["state"] == "enabled":
            d["state"] = "started"
        if d["state"] not in REQUESTED_STATES:
            raise CommandError(f"{field}.state: expected one of {', '.join(REQUESTED_STATES)}")
    if "type" in d and d["type"] not in SERVICE_TYPES:
        raise CommandError(f"{field}.type: expected one of {', '.join(SERVICE_TYPES)}")
    if "node" in d:
        _name(f"{field}.node", d["node"])
    if "group" in d and d["group"] is not None:
        _name(f"{field}.group", d["group"])
    for k in ("max_restart", "max_relocate"):
        if k in d:
            _int(f"{field}.{k}", d[k])
    if "failback" in d:
        d["failback"] = _bool(f"{field}.failback", d["failback"])
    if "comment" in d and d["comment"] is not None:
        _str(f"{field}.comment", d["comment"])
    if "params" in d and d["params"] is not None:
        _dict(f"{field}.params", d["params"])
    if not partial and "node" not in d:
        raise CommandError(f"{field}: missing 'node'")
    return d


def _service_config(field: str, v: Any) -> dict[str, Any]:
    return service_config(field, v)


def _service_changes(field: str, v: Any) -> dict[str, Any]:
    return service_config(field, v, partial=True)


def _group_config(field: str, v: Any) -> dict[str, Any]:
    d = dict(_dict(field, v))
    unknown = sorted(set(d) - {"nodes", "restricted", "nofailback", "comment"})
    if unknown:
        raise CommandError(f"{field}: unknown key(s) {', '.join(unknown)}")
    if "nodes" not in d:
        raise CommandError(f"{field}: missing 'nodes'")
    _node_prios(f"{field}.nodes", d["nodes"])
    d["restricted"] = _bool(f"{field}.restricted", d.get("restricted", False))
    d["nofailback"] = _bool(f"{field}.nofailback", d.get("nofailback", False))
    if d.get("comment") is not None:
        _str(f"{field}.comment", d["comment"])
    return d


def _rule(field: str, v: Any) -> dict[str, Any]:
    d = dict(_dict(field, v))
    if d.get("type") not in ("node-affinity", "resource-affinity"):
        raise CommandError(f"{field}.type: expected node-affinity or resource-affinity")
    res = d.get("resources", [])
    if not isinstance(res, list) or not all(isinstance(s, str) for s in res):
        raise CommandError(f"{field}.resources: expected a list of service ids")
    d["resources"] = res
    if "nodes" in d:
        _node_prios(f"{field}.nodes", d["nodes"])
    if "strict" in d:
        d["strict"] = _bool(f"{field}.strict", d["strict"])
    if "affinity" in d and d["affinity"] not in ("positive", "negative"):
        raise CommandError(f"{field}.affinity: expected positive or negative")
    if "disable" in d:
        d["disable"] = _bool(f"{field}.disable", d["disable"])
    return d


def _name_list(field: str, v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise CommandError(f"{field}: expected a list of strings")
    return v


# op -> {field: (validator, required)}: the version-1 vocabulary
OPS_V1: dict[str, dict[str, tuple[Validator, bool]]] = {
    "lease_acquire": {"lease": (_name, True), "holder": (_name, True),
                      "seen_epoch": (_int, True), "seen_seq": (_int, True)},
    "lease_renew": {"lease": (_name, True), "holder": (_name, True), "epoch": (_int, True)},
    "lease_release": {"lease": (_name, True), "holder": (_name, True), "epoch": (_int, True)},
    "manager_status_set": {"status": (_dict, True), "epoch": (_int, True)},
    "lrm_status_set": {"node": (_name, True), "status": (_dict, True), "epoch": (_int, False)},
    "crm_command_enqueue": {"cmd": (_crm_cmd, True), "epoch": (_int, False)},
    "crm_command_consume": {"upto_seq": (_int, True), "epoch": (_int, True)},
    "resource_add": {"sid": (_name, True), "config": (_service_config, True), "epoch": (_int, False)},
    "resource_set": {"sid": (_name, True), "changes": (_service_changes, True),
                     "delete": (_name_list, False), "epoch": (_int, False)},
    "resource_remove": {"sid": (_name, True), "epoch": (_int, False)},
    "resource_move": {"sid": (_name, True), "from_node": (_name, True), "to_node": (_name, True),
                      "epoch": (_int, True)},
    "group_set": {"name": (_name, True), "config": (_group_config, True), "epoch": (_int, False)},
    "group_remove": {"name": (_name, True), "epoch": (_int, False)},
    "rule_set": {"rule_id": (_name, True), "rule": (_rule, True), "epoch": (_int, False)},
    "rule_remove": {"rule_id": (_name, True), "epoch": (_int, False)},
    "node_add": {"node": (_name, True), "addr": (_str, False), "epoch": (_int, False)},
    "node_remove": {"node": (_name, True), "epoch": (_int, False)},
    "noop": {},
}

# version 2 (harepl.store.commands_v2, imported at the end of this module) adds itself here
OPS_BY_VERSION: dict[int, dict[str, dict[str, tuple[Validator, bool]]]] = {1: OPS_V1}
#: every op of any version (apply has a handler for each)
OPS: dict[str, dict[str, tuple[Validator, bool]]] = dict(OPS_V1)

_COMMON = {"v", "id", "op", "ts"}


def decode(raw: str | bytes | dict[str, Any]) -> dict[str, Any]:
    """Parse a command from JSON text (or take a dict); raises CommandError."""
    if isinstance(raw, dict):
        return raw
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise CommandError(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise CommandError("a command must be a JSON object")
    return obj


def validate(cmd: dict[str, Any]) -> dict[str, Any]:
    """Check a decoded command; return the normalised command or raise CommandError."""
    version = cmd.get("v")
    if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
        raise CommandError(f"v: unsupported command version {version!r} "
                           f"(expected one of {', '.join(map(str, SUPPORTED_VERSIONS))})")
    ops = OPS_BY_VERSION[version]
    cid = cmd.get("id")
    if not isinstance(cid, str) or not cid or len(cid) > 128:
        raise CommandError("id: expected a non-empty string of at most 128 characters")
    op = cmd.get("op")
    if op not in ops:
        since = "" if op not in OPS else f" in command version {version} (needs v {VERSION})"
        raise CommandError(f"op: unknown operation {op!r}{since}")
    ts = cmd.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        raise CommandError("ts: expected a number (proposer's wall-clock seconds)")
    spec = ops[op]
    unknown = sorted(set(cmd) - _COMMON - set(spec))
    if unknown:
        raise CommandError(f"{op}: unknown field(s) {', '.join(unknown)}")
    out = {k: cmd[k] for k in _COMMON}
    for field, (check, required) in spec.items():
        if field not in cmd:
            if required:
                raise CommandError(f"{op}: missing field {field!r}")
            continue
        out[field] = check(field, cmd[field])
    return out


def encode(cmd: dict[str, Any]) -> str:
    """Canonical JSON text of a command (what goes into the Raft log)."""
    return json.dumps(cmd, sort_keys=True, separators=(",", ":"))


# -- constructors --------------------------------------------------------------------


def min_version(op: str, fields: set[str] | frozenset[str] = frozenset()) -> int:
    """The lowest command version whose vocabulary has `op` with all `fields`.

    Commands are written at this version, not the newest, so that a node still running
    an older harepl during a rolling upgrade can apply everything but the new features
    (which `Client.submit` refuses until every running node supports them)."""
    for version in sorted(OPS_BY_VERSION):
        spec = OPS_BY_VERSION[version].get(op)
        if spec is not None and fields <= set(spec):
            return version
    return VERSION  # unknown op or field: validate() names the problem


def make(op: str, ts: float | None = None, cid: str | None = None, **fields: Any) -> dict[str, Any]:
    """Build a command with a fresh unique id.  `ts` defaults to the wall clock (history only)."""
    given = {k: v for k, v in fields.items() if v is not None}
    cmd: dict[str, Any] = {"v": min_version(op, set(given)), "id": cid or uuid.uuid4().hex, "op": op,
                           "ts": time.time() if ts is None else ts}
    cmd.update(given)
    return cmd


def lease_acquire(lease: str, holder: str, seen_epoch: int, seen_seq: int, **kw: Any) -> dict[str, Any]:
    return make("lease_acquire", lease=lease, holder=holder, seen_epoch=seen_epoch, seen_seq=seen_seq, **kw)


def lease_renew(lease: str, holder: str, epoch: int, **kw: Any) -> dict[str, Any]:
    return make("lease_renew", lease=lease, holder=holder, epoch=epoch, **kw)


def lease_release(lease: str, holder: str, epoch: int, **kw: Any) -> dict[str, Any]:
    return make("lease_release", lease=lease, holder=holder, epoch=epoch, **kw)


def manager_status_set(status: dict[str, Any], epoch: int, **kw: Any) -> dict[str, Any]:
    return make("manager_status_set", status=status, epoch=epoch, **kw)


def lrm_status_set(node: str, status: dict[str, Any], epoch: int | None, **kw: Any) -> dict[str, Any]:
    return make("lrm_status_set", node=node, status=status, epoch=epoch, **kw)


def crm_command_enqueue(cmd: str, **kw: Any) -> dict[str, Any]:
    return make("crm_command_enqueue", cmd=cmd, **kw)


def crm_command_consume(upto_seq: int, epoch: int, **kw: Any) -> dict[str, Any]:
    return make("crm_command_consume", upto_seq=upto_seq, epoch=epoch, **kw)


def resource_add(sid: str, config: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return make("resource_add", sid=sid, config=config, **kw)


def resource_set(sid: str, changes: dict[str, Any], delete: list[str] | None = None,
                 **kw: Any) -> dict[str, Any]:
    return make("resource_set", sid=sid, changes=changes, delete=delete, **kw)


def resource_move(sid: str, from_node: str, to_node: str, epoch: int, **kw: Any) -> dict[str, Any]:
    return make("resource_move", sid=sid, from_node=from_node, to_node=to_node, epoch=epoch, **kw)


def resource_remove(sid: str, **kw: Any) -> dict[str, Any]:
    return make("resource_remove", sid=sid, **kw)


def group_set(name: str, config: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return make("group_set", name=name, config=config, **kw)


def group_remove(name: str, **kw: Any) -> dict[str, Any]:
    return make("group_remove", name=name, **kw)


def rule_set(rule_id: str, rule: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return make("rule_set", rule_id=rule_id, rule=rule, **kw)


def rule_remove(rule_id: str, **kw: Any) -> dict[str, Any]:
    return make("rule_remove", rule_id=rule_id, **kw)


def node_add(node: str, addr: str | None = None, **kw: Any) -> dict[str, Any]:
    return make("node_add", node=node, addr=addr, **kw)


def node_remove(node: str, **kw: Any) -> dict[str, Any]:
    return make("node_remove", node=node, **kw)


def noop(**kw: Any) -> dict[str, Any]:
    return make("noop", **kw)


def group_update(name: str, changes: dict[str, Any], delete: list[str] | None = None,
                 digest: str | None = None, **kw: Any) -> dict[str, Any]:
    return make("group_update", name=name, changes=changes, delete=delete, digest=digest, **kw)


def rule_update(rule_id: str, changes: dict[str, Any], delete: list[str] | None = None,
                digest: str | None = None, **kw: Any) -> dict[str, Any]:
    return make("rule_update", rule_id=rule_id, changes=changes, delete=delete, digest=digest, **kw)


def resource_update(sid: str, changes: dict[str, Any], delete: list[str] | None = None,
                    digest: str | None = None, **kw: Any) -> dict[str, Any]:
    return make("resource_update", sid=sid, changes=changes, delete=delete, digest=digest, **kw)


def dc_options_set(options: dict[str, dict[str, Any]], delete: list[str] | None = None,
                   digest: str | None = None, **kw: Any) -> dict[str, Any]:
    return make("dc_options_set", options=options, delete=delete, digest=digest, **kw)


def node_stats_set(node: str, maxcpu: int, maxmem: int, **kw: Any) -> dict[str, Any]:
    return make("node_stats_set", node=node, maxcpu=maxcpu, maxmem=maxmem, **kw)


# the version-2 vocabulary registers itself in OPS_BY_VERSION and OPS
from . import commands_v2  # noqa: E402,F401
