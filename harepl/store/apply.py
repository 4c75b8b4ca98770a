"""Deterministic application of one command to a node's SQLite state.

`apply(conn, raw)` is the body of the single replicated method.  Rules (DESIGN.md §2):

- no clock, no randomness, no I/O beyond `conn`; the proposer's `ts` is stored for
  history and never compared;
- it never raises for anything about the command: a command that fails validation,
  carries a stale epoch, loses a compare-and-swap, or makes SQLite fail a constraint is
  rolled back completely and recorded as a rejection -- identically on every node,
  because each of these depends only on the command and the database;
- a command whose id was already applied changes nothing and returns the first result;
- the one exception is a fault of this node's environment (disk full, I/O error, out of
  memory, corrupt database): that is not deterministic, so continuing would let this
  copy diverge.  `apply` raises `StoreFault` and the Raft layer stops the member.

Result (a JSON-able dict): ``{"ok": True, "seq": n, ...op fields}`` or
``{"ok": False, "seq": n, "reason": "invalid"|"stale_epoch"|"conflict"|"exists"|
"missing"|"constraint"|"internal", "error": "one line"}``.  A stale ``digest`` is a
"conflict" with error `commands.DIGEST_MISMATCH`.  ``seq`` counts applied
commands on this database (the same on every node).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from . import commands as C
from . import reads
from .schema import APPLIED_IDS_MAX, EVENTS_MAX, migrate

# SQLite primary result codes that mean "this machine has a problem", not "this command
# is wrong": IOERR, FULL, NOMEM, CANTOPEN, CORRUPT, NOTADB, BUSY, LOCKED, READONLY, PROTOCOL.
_ENV_FAULT_CODES = {10, 13, 7, 14, 11, 26, 5, 6, 8, 15}

# ops whose success is a heartbeat, kept out of the bounded history (rejections are kept)
_QUIET_OPS = {"lease_renew", "noop"}
# result flag of a status write that changed nothing (no history event); never returned
_UNCHANGED = "_unchanged"
# bounded tables are trimmed every this many commands (they hold up to MAX + 99 rows)
_PRUNE_EVERY = 100


class StoreFault(RuntimeError):
    """A non-deterministic local fault while applying; the member must stop."""


class TooNew(StoreFault):
    """A committed command of a newer vocabulary than this node's harepl knows.  Recording
    it as a rejection would make this node's state differ from the upgraded nodes' (a
    rolling upgrade must never split the state): the member stops until it is upgraded."""


class Rejected(Exception):
    def __init__(self, reason: str, error: str) -> None:
        super().__init__(error)
        self.reason = reason
        self.error = error


def canon(obj: Any) -> str:
    """Canonical JSON (sorted keys, no whitespace): same bytes on every node."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _is_env_fault(e: BaseException) -> bool:
    if isinstance(e, (MemoryError, OSError)):
        return True
    if isinstance(e, sqlite3.Error):
        code = getattr(e, "sqlite_errorcode", None)
        if code is not None and (code & 0xFF) in _ENV_FAULT_CODES:
            return True
        msg = str(e).lower()
        return any(s in msg for s in ("disk i/o error", "database or disk is full", "malformed",
                                      "out of memory", "unable to open"))
    return False


def apply(conn: sqlite3.Connection, raw: str | bytes | dict[str, Any]) -> dict[str, Any]:
    """Apply one command; return its result.  Raises only StoreFault (see module doc)."""
    try:
        return _apply(conn, raw)
    except StoreFault:
        _rollback_quietly(conn)
        raise
    except BaseException as e:  # noqa: BLE001 - anything else would wedge the cluster
        if _is_env_fault(e):
            raise StoreFault(f"{type(e).__name__}: {e}") from e
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        # A bug outside the per-command savepoint: still deterministic, so record it.
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return _record_only(conn, raw, "internal", f"{type(e).__name__}: {e}")
        except BaseException as e2:  # noqa: BLE001
            raise StoreFault(f"cannot record failure: {type(e2).__name__}: {e2}") from e2


def _rollback_quietly(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass


def _cmd_id(obj: dict[str, Any] | None) -> str | None:
    cid = obj.get("id") if obj is not None else None
    return cid if isinstance(cid, str) and cid and len(cid) <= 128 else None


def _apply(conn: sqlite3.Connection, raw: str | bytes | dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] | None = None
    try:
        obj = C.decode(raw)
    except C.CommandError as e:
        invalid: str | None = str(e)
    else:
        invalid = None
    version = obj.get("v") if obj is not None else None
    if isinstance(version, int) and not isinstance(version, bool) and version > max(C.SUPPORTED_VERSIONS):
        raise TooNew(f"the log holds a version-{version} command ({str(obj.get('op'))[:40]!r}) but this "
                     f"node's harepl knows versions up to {max(C.SUPPORTED_VERSIONS)}: upgrade harepl on "
                     "this node (it stops instead of diverging from the upgraded nodes)")
    cid = _cmd_id(obj)
    if cid is not None:
        row = conn.execute("SELECT result FROM applied WHERE id = ?", (cid,)).fetchone()
        if row is not None:
            result: dict[str, Any] = json.loads(row[0])
            result["duplicate"] = True
            return result

    op = str(obj["op"]) if obj is not None and isinstance(obj.get("op"), str) else "?"
    ts_raw = obj.get("ts") if obj is not None else None
    ts = float(ts_raw) if isinstance(ts_raw, (int, float)) and not isinstance(ts_raw, bool) else 0.0
    cmd: dict[str, Any] | None = None
    migrate(conn)  # a database from an older snapshot: same upgrade, same log position, everywhere
    conn.execute("BEGIN IMMEDIATE")
    fields: dict[str, Any] | None = None
    if invalid is None:
        try:
            cmd = C.validate(obj or {})
        except C.CommandError as e:
            invalid = str(e)
    if invalid is not None:
        rejection = ("invalid", invalid)
    else:
        assert cmd is not None
        # no savepoint: on failure the whole transaction is rolled back and a new one
        # records the rejection (two statements fewer on the common, successful path)
        try:
            fields = _HANDLERS[cmd["op"]](conn, cmd)
        except BaseException as e:  # noqa: BLE001
            if _is_env_fault(e):
                raise StoreFault(f"{type(e).__name__}: {e}") from e
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
            if isinstance(e, Rejected):
                rejection = (e.reason, e.error)
            elif isinstance(e, sqlite3.IntegrityError):
                rejection = ("constraint", f"SQLite: {e}")
            else:
                rejection = ("internal", f"{type(e).__name__}: {e}")
    seq = _next_seq(conn)
    if fields is not None:
        result = {"ok": True, "seq": seq, **fields}
    else:
        result = {"ok": False, "seq": seq, "reason": rejection[0], "error": rejection[1]}
    _record(conn, seq, cid, op, ts, cmd, result)
    conn.execute("COMMIT")
    return result


def _next_seq(conn: sqlite3.Connection) -> int:
    (value,) = conn.execute("UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
                            "WHERE key = 'applied_count' RETURNING value").fetchone()
    return int(value)


def _record(conn: sqlite3.Connection, seq: int, cid: str | None, op: str, ts: float,
            cmd: dict[str, Any] | None, result: dict[str, Any]) -> None:
    quiet = result["ok"] and (bool(result.pop(_UNCHANGED, False)) or op in _QUIET_OPS)
    if cid is not None:
        conn.execute("INSERT INTO applied (seq, id, result) VALUES (?, ?, ?)", (seq, cid, canon(result)))
        if seq % _PRUNE_EVERY == 0:  # deterministic: depends on seq only
            conn.execute("DELETE FROM applied WHERE seq <= ?", (seq - APPLIED_IDS_MAX,))
    if quiet:
        return
    if result["ok"]:
        shown = {k: v for k, v in (cmd or {}).items() if k not in ("v", "id", "op", "ts", "status")}
        detail = canon(shown)
    else:
        detail = f"{result['reason']}: {result['error']}"
    conn.execute("INSERT INTO events (seq, ts, id, op, ok, detail) VALUES (?, ?, ?, ?, ?, ?)",
                 (seq, float(ts), cid or "", op, 1 if result["ok"] else 0, detail))
    if seq % _PRUNE_EVERY == 0:
        conn.execute("DELETE FROM events WHERE seq <= ?", (seq - EVENTS_MAX,))


def _record_only(conn: sqlite3.Connection, raw: Any, reason: str, error: str) -> dict[str, Any]:
    conn.execute("BEGIN IMMEDIATE")
    seq = _next_seq(conn)
    result = {"ok": False, "seq": seq, "reason": reason, "error": error}
    _record(conn, seq, None, "?", 0.0, None, result)
    conn.execute("COMMIT")
    return result


# -- fencing -------------------------------------------------------------------------


def _fence(conn: sqlite3.Connection, lease: str, epoch: int, holder: str | None = None) -> None:
    row = conn.execute("SELECT holder, epoch FROM leases WHERE name = ?", (lease,)).fetchone()
    if row is None:
        raise Rejected("stale_epoch", f"epoch {epoch} for lease {lease!r}: never acquired")
    cur_holder, cur_epoch = row
    if cur_holder is None:
        raise Rejected("stale_epoch", f"epoch {epoch} for lease {lease!r}: released at epoch {cur_epoch}")
    if epoch != cur_epoch:
        raise Rejected("stale_epoch", f"epoch {epoch} for lease {lease!r}: current epoch is {cur_epoch}")
    if holder is not None and holder != cur_holder:
        raise Rejected("stale_epoch", f"lease {lease!r} is held by {cur_holder!r}, not {holder!r}")


def _fence_optional(conn: sqlite3.Connection, cmd: dict[str, Any]) -> None:
    if "epoch" in cmd:
        _fence(conn, C.MANAGER_LEASE, cmd["epoch"])


# -- handlers: each returns the op-specific result fields or raises Rejected -----------

Handler = Callable[[sqlite3.Connection, dict[str, Any]], dict[str, Any]]


def _lease_acquire(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    row = conn.execute("SELECT epoch, seq FROM leases WHERE name = ?", (c["lease"],)).fetchone()
    epoch, seq = row if row is not None else (0, 0)
    if (c["seen_epoch"], c["seen_seq"]) != (epoch, seq):
        raise Rejected("conflict", f"lease {c['lease']!r} changed: it is at epoch {epoch} seq {seq}, "
                                   f"acquirer saw epoch {c['seen_epoch']} seq {c['seen_seq']}")
    conn.execute(
        "INSERT INTO leases (name, holder, epoch, seq, acquired_ts, renewed_ts) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, epoch = excluded.epoch, "
        "seq = excluded.seq, acquired_ts = excluded.acquired_ts, renewed_ts = excluded.renewed_ts",
        (c["lease"], c["holder"], epoch + 1, seq + 1, c["ts"], c["ts"]))
    return {"lease": c["lease"], "holder": c["holder"], "epoch": epoch + 1, "seq": seq + 1}


def _lease_renew(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    _fence(conn, c["lease"], c["epoch"], c["holder"])
    conn.execute("UPDATE leases SET seq = seq + 1, renewed_ts = ? WHERE name = ?", (c["ts"], c["lease"]))
    (seq,) = conn.execute("SELECT seq FROM leases WHERE name = ?", (c["lease"],)).fetchone()
    return {"lease": c["lease"], "epoch": c["epoch"], "seq": seq}


def _lease_release(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    _fence(conn, c["lease"], c["epoch"], c["holder"])
    conn.execute("UPDATE leases SET holder = NULL, seq = seq + 1, renewed_ts = ? WHERE name = ?",
                 (c["ts"], c["lease"]))
    (seq,) = conn.execute("SELECT seq FROM leases WHERE name = ?", (c["lease"],)).fetchone()
    return {"lease": c["lease"], "epoch": c["epoch"], "seq": seq}


def _manager_status_set(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    _fence(conn, C.MANAGER_LEASE, c["epoch"])
    body = canon(c["status"])
    row = conn.execute("SELECT body FROM manager_status WHERE id = 1").fetchone()
    conn.execute("INSERT OR REPLACE INTO manager_status (id, epoch, body, ts) VALUES (1, ?, ?, ?)",
                 (c["epoch"], body, c["ts"]))
    # written every CRM round: only a change is history
    return {} if row is None or row[0] != body else {_UNCHANGED: True}


def _lrm_status_set(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    lease = C.agent_lease(c["node"])
    if "epoch" in c:
        _fence(conn, lease, c["epoch"])
    else:
        row = conn.execute("SELECT holder FROM leases WHERE name = ?", (lease,)).fetchone()
        if row is not None and row[0] is not None:
            raise Rejected("stale_epoch", f"lrm_status of {c['node']!r} without epoch while {lease!r} is held")
        if c["status"].get("results"):
            raise Rejected("invalid", "lrm_status with results needs the node lease epoch")
    body = canon(c["status"])
    row = conn.execute("SELECT body FROM lrm_status WHERE node = ?", (c["node"],)).fetchone()
    conn.execute("INSERT OR REPLACE INTO lrm_status (node, epoch, body, ts) VALUES (?, ?, ?, ?)",
                 (c["node"], c.get("epoch", 0), body, c["ts"]))
    return {} if row is None or row[0] != body else {_UNCHANGED: True}


def _crm_command_enqueue(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    _fence_optional(conn, c)
    cur = conn.execute("INSERT INTO crm_commands (cmd, ts) VALUES (?, ?)", (c["cmd"], c["ts"]))
    return {"cmd_seq": cur.lastrowid}


def _crm_command_consume(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    _fence(conn, C.MANAGER_LEASE, c["epoch"])
    rows = conn.execute("SELECT seq, cmd FROM crm_commands WHERE seq <= ? ORDER BY seq",
                        (c["upto_seq"],)).fetchall()
    conn.execute("DELETE FROM crm_commands WHERE seq <= ?", (c["upto_seq"],))
    return {"commands": [[s, cmd] for s, cmd in rows]}


_RES_DEFAULTS = {"state": "started", "max_restart": 1, "max_relocate": 1, "failback": True}
_RES_OPTIONAL = ("group", "comment", "params")


def _resource_row(sid: str, cfg: dict[str, Any]) -> tuple[Any, ...]:
    return (sid, cfg["type"], cfg["state"], cfg["node"], cfg.get("group"), cfg["max_restart"],
            cfg["max_relocate"], 1 if cfg["failback"] else 0, cfg.get("comment"),
            None if cfg.get("params") is None else canon(cfg["params"]))


_RES_INSERT = ("INSERT INTO resources (sid, type, state, node, grp, max_restart, max_relocate, failback, "
               "comment, params) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _resource_add(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    _fence_optional(conn, c)
    sid = c["sid"]
    if conn.execute("SELECT 1 FROM resources WHERE sid = ?", (sid,)).fetchone():
        raise Rejected("exists", f"service {sid!r} already exists")
    cfg = {**_RES_DEFAULTS, **c["config"]}
    if "type" not in cfg:
        prefix = sid.split(":", 1)[0] if ":" in sid else ""
        if prefix not in C.SERVICE_TYPES:
            raise Rejected("invalid", f"service {sid!r}: no 'type' and no known type prefix")
        cfg["type"] = prefix
    conn.execute(_RES_INSERT, _resource_row(sid, cfg))
    return {"sid": sid}


def _service_to_edit(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """The service an edit command names, after its fence and digest checks."""
    _fence_optional(conn, c)
    cur = _reads_service(conn, c["sid"])
    if cur is None:
        raise Rejected("missing", f"no such service {c['sid']!r}")
    _check_digest(c, cur)
    return cur


def _resource_set(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    sid = c["sid"]
    cur = _service_to_edit(conn, c)
    cfg = {**cur, **c["changes"]}
    for key in c.get("delete", []):
        if key not in _RES_OPTIONAL:
            raise Rejected("invalid", f"cannot delete {key!r} (only {', '.join(_RES_OPTIONAL)})")
        cfg.pop(key, None)
    conn.execute("DELETE FROM resources WHERE sid = ?", (sid,))
    conn.execute(_RES_INSERT, _resource_row(sid, cfg))
    return {"sid": sid}


def _resource_move(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    _fence(conn, C.agent_lease(c["from_node"]), c["epoch"], c["from_node"])
    row = conn.execute("SELECT node FROM resources WHERE sid = ?", (c["sid"],)).fetchone()
    if row is None:
        raise Rejected("missing", f"no such service {c['sid']!r}")
    if row[0] != c["from_node"]:
        raise Rejected("conflict", f"service {c['sid']!r} is configured on {row[0]!r}, not {c['from_node']!r}")
    conn.execute("UPDATE resources SET node = ? WHERE sid = ?", (c["to_node"], c["sid"]))
    return {"sid": c["sid"], "node": c["to_node"]}


def _resource_remove(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    _fence_optional(conn, c)
    if conn.execute("DELETE FROM resources WHERE sid = ?", (c["sid"],)).rowcount == 0:
        raise Rejected("missing", f"no such service {c['sid']!r}")
    return {"sid": c["sid"]}


def _check_digest(c: dict[str, Any], current: Any) -> None:
    """Refuse an edit made from a read that is no longer current (object changed or gone)."""
    if "digest" in c and (current is None or reads.digest(current) != c["digest"]):
        raise Rejected("conflict", C.DIGEST_MISMATCH)


def _group_set(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    _fence_optional(conn, c)
    _check_digest(c, reads.group(conn, c["name"]))
    _write_group(conn, c["name"], c["config"])
    return {"name": c["name"]}


def _write_group(conn: sqlite3.Connection, name: str, g: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO groups (name, nodes, restricted, nofailback, comment) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(name) DO UPDATE SET nodes = excluded.nodes, restricted = excluded.restricted, "
        "nofailback = excluded.nofailback, comment = excluded.comment",
        (name, canon(g["nodes"]), int(g["restricted"]), int(g["nofailback"]), g.get("comment")))


def _group_remove(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    _fence_optional(conn, c)
    # a group still used by a service: the foreign key makes SQLite refuse (constraint)
    if conn.execute("DELETE FROM groups WHERE name = ?", (c["name"],)).rowcount == 0:
        raise Rejected("missing", f"no such group {c['name']!r}")
    return {"name": c["name"]}


def _rule_set(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    _fence_optional(conn, c)
    _check_digest(c, reads.rule(conn, c["rule_id"]))
    conn.execute("INSERT OR REPLACE INTO rules (id, type, body) VALUES (?, ?, ?)",
                 (c["rule_id"], c["rule"]["type"], canon(c["rule"])))
    return {"rule_id": c["rule_id"]}


def _rule_remove(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    _fence_optional(conn, c)
    if conn.execute("DELETE FROM rules WHERE id = ?", (c["rule_id"],)).rowcount == 0:
        raise Rejected("missing", f"no such rule {c['rule_id']!r}")
    return {"rule_id": c["rule_id"]}


def _node_add(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    _fence_optional(conn, c)
    if conn.execute("SELECT 1 FROM nodes WHERE name = ?", (c["node"],)).fetchone():
        raise Rejected("exists", f"node {c['node']!r} already exists")
    conn.execute("INSERT INTO nodes (name, addr, added_ts) VALUES (?, ?, ?)",
                 (c["node"], c.get("addr"), c["ts"]))
    return {"node": c["node"]}


def _node_remove(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    _fence_optional(conn, c)
    # the node's lease row stays: its epoch must never be reused by a later holder
    if conn.execute("DELETE FROM nodes WHERE name = ?", (c["node"],)).rowcount == 0:
        raise Rejected("missing", f"no such node {c['node']!r}")
    return {"node": c["node"]}


def _noop(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    return {}


_HANDLERS: dict[str, Handler] = {
    "lease_acquire": _lease_acquire, "lease_renew": _lease_renew, "lease_release": _lease_release,
    "manager_status_set": _manager_status_set, "lrm_status_set": _lrm_status_set,
    "crm_command_enqueue": _crm_command_enqueue, "crm_command_consume": _crm_command_consume,
    "resource_add": _resource_add, "resource_set": _resource_set, "resource_move": _resource_move, "resource_remove": _resource_remove,
    "group_set": _group_set, "group_remove": _group_remove,
    "rule_set": _rule_set, "rule_remove": _rule_remove,
    "node_add": _node_add, "node_remove": _node_remove, "noop": _noop,
}


def _reads_service(conn: sqlite3.Connection, sid: str) -> dict[str, Any] | None:
    return reads.service(conn, sid)


# the version-2 handlers (harepl.store.apply_v2) register themselves in _HANDLERS
from . import apply_v2  # noqa: E402,F401
