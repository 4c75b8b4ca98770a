"""Deterministic application of one command to a node's SQLite state.

`apply(conn, raw)` is the body of the single replicated method.  Rules:

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
"conflict" with error `vocabulary.DIGEST_MISMATCH`.  ``seq`` counts applied
commands on this database (the same on every node).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from . import vocabulary as C
from .ops.common import UNCHANGED, Rejected, canon
from .schema import APPLIED_IDS_MAX, EVENTS_MAX, migrate

__all__ = ["Rejected", "StoreFault", "TooNew", "apply", "canon"]

# SQLite primary result codes that mean "this machine has a problem", not "this command
# is wrong": IOERR, FULL, NOMEM, CANTOPEN, CORRUPT, NOTADB, BUSY, LOCKED, READONLY, PROTOCOL.
_ENV_FAULT_CODES = {10, 13, 7, 14, 11, 26, 5, 6, 8, 15}

# bounded tables are trimmed every this many commands (they hold up to MAX + 99 rows)
_PRUNE_EVERY = 100


class StoreFault(RuntimeError):
    """A non-deterministic local fault while applying; the member must stop."""


class TooNew(StoreFault):
    """A committed command of a newer vocabulary than this node's harepl knows.  Recording
    it as a rejection would make this node's state differ from the upgraded nodes' (a
    rolling upgrade must never split the state): the member stops until it is upgraded."""


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
        raise TooNew(f"the log holds a version-{version} command ({str((obj or {}).get('op'))[:40]!r}) but this "
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
    quiet = False
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
        decl = C.REGISTRY.lookup(cmd["op"], int(cmd["v"]))
        assert decl is not None  # validate() found it
        quiet = decl.quiet
        try:
            fields = decl.handler(conn, cmd)
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
    _record(conn, seq, cid, op, ts, cmd, result, quiet)
    conn.execute("COMMIT")
    return result


def _next_seq(conn: sqlite3.Connection) -> int:
    (value,) = conn.execute("UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
                            "WHERE key = 'applied_count' RETURNING value").fetchone()
    return int(value)


def _record(conn: sqlite3.Connection, seq: int, cid: str | None, op: str, ts: float,
            cmd: dict[str, Any] | None, result: dict[str, Any], quiet_op: bool = False) -> None:
    quiet = result["ok"] and (bool(result.pop(UNCHANGED, False)) or quiet_op)
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
