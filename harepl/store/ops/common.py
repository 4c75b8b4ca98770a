"""What the handlers of every domain share: `Rejected`, fencing, digest checks.

Handler rules (`harepl.store.apply`): deterministic, no clock, no randomness, no I/O
beyond `conn`; a refusal raises `Rejected` (apply rolls the command back and records the
rejection identically on every node).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from .. import reads
from ..envelope import MANAGER_LEASE, Field, optional
from ..fields import count, digest

DIGEST_MISMATCH = "config changed meanwhile (digest mismatch) - reload and retry"
#: result flag of a status write that changed nothing (no history event); never returned
UNCHANGED = "_unchanged"

#: the optional epoch of an operator op (fenced on the manager lease when given)
EPOCH: Field = optional(count)
#: the optional digest of an edit (version 2): the object as the editor read it
DIGEST: Field = optional(digest, since=2)


class Rejected(Exception):
    """A command the state refuses: ``reason`` is the result's reason, ``error`` one line."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(error)
        self.reason = reason
        self.error = error


def canon(obj: Any) -> str:
    """Canonical JSON (sorted keys, no whitespace): same bytes on every node."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def fence(conn: sqlite3.Connection, lease: str, epoch: int, holder: str | None = None) -> None:
    """Refuse ('stale_epoch') unless `epoch` is the current epoch of a held `lease`."""
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


def fence_optional(conn: sqlite3.Connection, cmd: dict[str, Any]) -> None:
    """An operator op that carries an epoch acts for the CRM master: fence it."""
    if "epoch" in cmd:
        fence(conn, MANAGER_LEASE, cmd["epoch"])


def check_digest(c: dict[str, Any], current: Any) -> None:
    """Refuse an edit made from a read that is no longer current (object changed or gone)."""
    if "digest" in c and (current is None or reads.digest(current) != c["digest"]):
        raise Rejected("conflict", DIGEST_MISMATCH)


def edit(c: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The ``changes`` and ``delete`` of a field-level edit (`*_update`), refused if they
    name one key twice or nothing."""
    changes, delete = dict(c["changes"]), list(c.get("delete", []))
    params = changes.get("params") or {}
    both = sorted((set(changes) & set(delete))
                  | {k for k in delete if k.startswith("params.") and k[len("params."):] in params})
    if both:
        raise Rejected("invalid", f"cannot set and delete {both[0]!r} at once")
    if not changes and not delete:
        raise Rejected("invalid", "nothing to change")
    return changes, delete
