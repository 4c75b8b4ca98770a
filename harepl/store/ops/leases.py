"""Leases: the compare-and-swap acquire, the holder's renew and release.

A lease is (holder, epoch, seq).  Judging it stale happens on the judge's own monotonic
clock (`harepl.store.leases`); here only its changes are applied.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from ..envelope import Op, required
from ..fields import count, name
from .common import Rejected, fence


def _acquire(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """lease_acquire: granted only if the lease still has exactly the (epoch, seq) the
    acquirer saw go stale (0, 0 for a lease never held); then holder := holder, epoch += 1,
    seq += 1.  Result: ``epoch``, ``seq``."""
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


ACQUIRE = Op("lease_acquire", _acquire, since=1, fields={
    "lease": required(name), "holder": required(name),
    "seen_epoch": required(count), "seen_seq": required(count)})


def _renew(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """lease_renew (fenced on the lease): seq += 1.  Rejected unless holder and epoch
    match.  Result: ``seq``."""
    fence(conn, c["lease"], c["epoch"], c["holder"])
    conn.execute("UPDATE leases SET seq = seq + 1, renewed_ts = ? WHERE name = ?", (c["ts"], c["lease"]))
    (seq,) = conn.execute("SELECT seq FROM leases WHERE name = ?", (c["lease"],)).fetchone()
    return {"lease": c["lease"], "epoch": c["epoch"], "seq": seq}


RENEW = Op("lease_renew", _renew, since=1, quiet=True, fields={
    "lease": required(name), "holder": required(name), "epoch": required(count)})


def _release(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """lease_release (fenced on the lease): holder := NULL, seq += 1 (the epoch stays; the
    next acquire increments it)."""
    fence(conn, c["lease"], c["epoch"], c["holder"])
    conn.execute("UPDATE leases SET holder = NULL, seq = seq + 1, renewed_ts = ? WHERE name = ?",
                 (c["ts"], c["lease"]))
    (seq,) = conn.execute("SELECT seq FROM leases WHERE name = ?", (c["lease"],)).fetchone()
    return {"lease": c["lease"], "epoch": c["epoch"], "seq": seq}


RELEASE = Op("lease_release", _release, since=1, fields={
    "lease": required(name), "holder": required(name), "epoch": required(count)})

OPS = (ACQUIRE, RENEW, RELEASE)


def lease_acquire(lease: str, holder: str, seen_epoch: int, seen_seq: int, **kw: Any) -> dict[str, Any]:
    return ACQUIRE.make(lease=lease, holder=holder, seen_epoch=seen_epoch, seen_seq=seen_seq, **kw)


def lease_renew(lease: str, holder: str, epoch: int, **kw: Any) -> dict[str, Any]:
    return RENEW.make(lease=lease, holder=holder, epoch=epoch, **kw)


def lease_release(lease: str, holder: str, epoch: int, **kw: Any) -> dict[str, Any]:
    return RELEASE.make(lease=lease, holder=holder, epoch=epoch, **kw)
