"""An ApiBackend over one node's own SQLite state file, applying commands directly.

This is a one-node store without Raft: always quorate, every write applied at once
through the store's real `apply` on a real SQLite file. The tests use it to run the API
and the CLI over the real store; the daemon's backend (runtime) goes through the Raft
client instead but can reuse `cluster_state()` and `events_after()` on its replica.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from harepl.runtime.api.backend import ClusterState, WriteResult
from harepl.store import reads, schema
from harepl.store import vocabulary as commands
from harepl.store.apply import apply


def cluster_state(conn: sqlite3.Connection, node: str, quorate: bool,
                  nodes: tuple[str, ...] = ()) -> ClusterState:
    """A ClusterState read from a state database (one read transaction, so consistent).

    `timestamp` (display only) falls back to the proposer's wall time stored with the row.
    """
    own_txn = not conn.in_transaction   # a caller's open transaction already gives one snapshot
    if own_txn:
        conn.execute("BEGIN")
    try:
        manager = reads.manager_status(conn)
        row = conn.execute("SELECT ts FROM manager_status WHERE id = 1").fetchone()
        if manager and "timestamp" not in manager and row is not None:
            manager["timestamp"] = row[0]
        lrm = reads.lrm_statuses(conn)
        for lrm_node, ts in conn.execute("SELECT node, ts FROM lrm_status"):
            lrm[lrm_node].setdefault("timestamp", ts)
        known = tuple(sorted(reads.nodes(conn))) or tuple(nodes)
        return ClusterState(node=node, quorate=quorate, manager_status=manager, lrm_status=lrm,
                            resources=reads.service_config(conn), groups=reads.groups(conn),
                            rules=reads.rules(conn), nodes=known, datacenter=reads.datacenter(conn),
                            node_stats=reads.node_stats(conn))
    finally:
        if own_txn:
            conn.execute("COMMIT")


def events_after(conn: sqlite3.Connection, after_seq: int | None, limit: int) -> list[dict[str, Any]]:
    """Store events oldest first: after `after_seq`, or the latest `limit` when None."""
    if after_seq is None:
        return reads.events(conn, limit=limit)
    rows = conn.execute("SELECT seq, ts, id, op, ok, detail FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                        (after_seq, limit)).fetchall()
    return [{"seq": s, "ts": t, "id": i, "op": o, "ok": bool(k), "detail": d} for s, t, i, o, k, d in rows]


def write_result(result: dict[str, Any]) -> WriteResult:
    """The store's apply result as a WriteResult (rejections keep apply's one-line error)."""
    if result.get("ok"):
        return WriteResult(ok=True, result={k: v for k, v in result.items() if k != "ok"})
    return WriteResult(ok=False, error=str(result.get("error") or result.get("reason") or "rejected"),
                       result=result)


class LocalStoreBackend:
    def __init__(self, db_path: str | os.PathLike[str], node: str, nodes: tuple[str, ...] = (),
                 wall_time: Callable[[], float] = time.time) -> None:
        self.node = node
        self._nodes = tuple(nodes)
        self._wall_time = wall_time   # proposer timestamps: history only
        self._lock = threading.Lock()
        self.conn = schema.connect(os.fspath(db_path))

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def read_state(self, fresh: bool = False) -> ClusterState:
        with self._lock:   # one node, applied synchronously: every read is fresh
            return cluster_state(self.conn, self.node, quorate=True, nodes=self._nodes)

    def read_events(self, after_seq: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            return events_after(self.conn, after_seq, limit)

    def submit(self, command: dict[str, Any]) -> WriteResult:
        fields = {k: v for k, v in command.items() if k != "op"}
        with self._lock:
            return write_result(apply(self.conn, commands.make(command["op"], ts=self._wall_time(), **fields)))

    def apply_raw(self, command: dict[str, Any]) -> dict[str, Any]:
        """Apply a full store command."""
        with self._lock:
            return apply(self.conn, command)

    def write_status_as(self, lease: str, holder: str, status_command: Callable[[int], dict[str, Any]]) -> None:
        """Take `lease` for `holder` (compare-and-swap) and apply the status command built
        for its epoch, as a CRM master or an LRM does (tests play the roles with it)."""
        with self._lock:
            current = reads.lease(self.conn, lease)
            epoch = current["epoch"]
            if current["holder"] != holder:
                taken = apply(self.conn, commands.lease_acquire(lease, holder, current["epoch"], current["seq"],
                                                                ts=self._wall_time()))
                if not taken["ok"]:
                    raise RuntimeError(f"lease {lease}: {taken['error']}")
                epoch = taken["epoch"]
            result = apply(self.conn, status_command(epoch))
            if not result["ok"]:
                raise RuntimeError(f"status write for {lease}: {result['error']}")

    def write_manager_status(self, master: str, status: dict[str, Any]) -> None:
        self.write_status_as(commands.MANAGER_LEASE, master,
                             lambda epoch: commands.manager_status_set(status, epoch, ts=self._wall_time()))

    def write_lrm_status(self, node: str, status: dict[str, Any]) -> None:
        self.write_status_as(commands.agent_lease(node), node,
                             lambda epoch: commands.lrm_status_set(node, status, epoch, ts=self._wall_time()))


class LocalApi:
    """A LocalStoreBackend served on a Unix socket (and optionally TCP): what tests and a
    standalone single-node API use. `close()` stops the server and closes the database."""

    def __init__(self, directory: str | os.PathLike[str], node: str = "node1",
                 nodes: tuple[str, ...] = ("node1", "node2", "node3"),
                 tcp: tuple[str, int] | None = None, token: str | None = None) -> None:
        from harepl.runtime.api.server import serve_api
        from harepl.runtime.metrics import HaMetrics

        self.socket_path = os.path.join(os.fspath(directory), "api.sock")
        self.db_path = os.path.join(os.fspath(directory), "state.db")
        self.backend = LocalStoreBackend(self.db_path, node)
        known = set(reads.nodes(self.backend.conn))
        for name in nodes:
            if name not in known:
                self.backend.submit({"op": "node_add", "node": name})
        self.metrics = HaMetrics()
        self.handle = serve_api(self.backend, unix_path=self.socket_path, tcp=tcp, token=token,
                                metrics=self.metrics)

    def close(self) -> None:
        self.handle.close()
        self.backend.close()

    def __enter__(self) -> LocalApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
