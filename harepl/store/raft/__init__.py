"""Raft replication of the state store on pysyncobj 0.3.17 -- the only package importing it
(`durable.py`: the fsynced journal, `transport.py`: the guarded transport).

One replicated method, `_Replica.apply_command(raw_json)`, runs `harepl.store.apply.apply`
on this node's SQLite database (in memory; the Raft journal and the snapshot file are the
durable copy).  `StoreNode` is the facade used by `harepl.store.client`.

Hazards of pysyncobj handled here (issue 4), each fixed by wrapping, never by copying:

1. *An exception in a replicated method wedges the cluster*: `apply` never raises for a
   command; an environment fault (disk full, I/O error) raises `StoreFault`, and
   `apply_command` stops this member (`on_fault`, default `os._exit(70)`) with one
   critical log line instead of letting pysyncobj retry the entry forever.
2. *Nothing is fsynced*: `_DurableJournal` subclasses the FileJournal; `_GuardedTransport.send`
   flushes (msync + fsync of journal, fsync of meta and directory) before any message
   leaves the node after a journal write (a leader's append_entries excepted: its
   fsync overlaps replication), and the tick loop flushes at the end of every tick,
   before the next commit computation.  So a follower acknowledges, and a candidate
   asks for votes, only from persisted state, and a leader counts itself toward a
   commit only for entries on its disk.  Snapshots are written
   with fsync of file and directory; a received snapshot is fsynced before use.
3. *A timed-out call may commit later; callbacks are lost after a snapshot install*:
   every command has a unique id and `apply` deduplicates; the client retries with the
   same id and, after a timeout or error, looks the id up in the local database.
4. *A cut-off leader believes it leads for leaderFallbackTimeout (30 s)*: we set it below
   the election timeout, and `StoreNode.has_quorum()` is judged from fresh heartbeats on
   this node's monotonic clock (`quorum_timeout_s`), not from `_isLeader()`.  Safety
   itself comes from leases and fencing epochs checked at apply.
5. *Batching adds ~100 ms per commit; a late node waits 5 s to connect*: see
   `RaftSettings` for every setting and why.
6. *Idle connections die on first use*: pysyncobj drops a connection at the first send
   after `connectionTimeout` without reading; followers never talk to each other, so
   the first vote request after a leader died was lost.  Keepalives every 0.5 s.
7. *Two membership changes at once*: pysyncobj never records the pending change, so
   its one-at-a-time check never fires; `_Replica` overrides it.
8. *No pre-vote, no leader stickiness*: a node cut off from the leader only (partial
   partition) or rejoining after a partition bumped its term and deposed a healthy
   leader, repeatedly.  `election.py` adds both (Raft thesis 9.6) by overriding.
9. *Pickle on the wire*: the cluster secret is mandatory (`SecretMissing`); connections
   that fail to authenticate (wrong secret, garbage) are dropped and logged in one line.
10. *Outsiders reach the port before any authentication*: pysyncobj listens on 0.0.0.0
   whatever the member address, buffers any frame an unauthenticated peer announces (one
   60 MiB garbage frame stalled a member's tick thread for seconds: it lost its lease) and
   holds silent connections forever.  We bind the member address; `transport.py` caps
   frames before the key exchange at 4 KiB, drops unauthenticated connections after 1 s
   and beyond 128 at once, listens with a backlog of 256 and accepts up to 64 per poll
   (pysyncobj: 5 and one, so a flood made every connect wait for SYN retries), and logs
   each drop (rate-limited) on 'harepl.store.raft', which a node log with a file
   receives (`nodelog.attach_store_logging`).
11. *pysyncobj replaces `socket.inet_ntop`* with a Windows-only version on import (only
   its `inet_pton` is guarded by `os.name`): anything in the process formatting an
   address with it raised TypeError.  Restored right after the import.
"""

from __future__ import annotations

import _socket
import logging
import os
import pickle
import socket
import sqlite3
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.config import FAIL_REASON

from .. import reads
from ..apply import StoreFault, apply
from ..schema import connect
from .durable import SNAPSHOT, DiskFull, _DurableJournal, _fsync_path, stand_aside
from .election import _ElectionGuard
from .transport import _DeadlinePoller, _GuardedTransport, _raft_clock  # type: ignore[attr-defined]

log = logging.getLogger("harepl.store.raft")

socket.inet_ntop = _socket.inet_ntop  # hazard 11: undo pysyncobj.win_inet_pton's replacement


class _BenignTruncation(logging.Filter):
    """pysyncobj logs CRITICAL "truncating already-applied log entries" when a follower
    receives entries it already has (re-sent after an optimistic nextIndex).  Applied
    entries are committed, so Raft guarantees the re-sent ones are identical: benign --
    and checked: `_DurableJournal` stops the member if a re-added entry differs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("truncating already-applied log entries"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger("pysyncobj").isEnabledFor(logging.DEBUG)
        return True


logging.getLogger("pysyncobj.syncobj").addFilter(_BenignTruncation())

FAIL_NAMES = {v: k for k, v in vars(FAIL_REASON).items() if k.isupper()}
SNAPSHOT_MAGIC = b"HAREPL-SNAPSHOT-1\n"


class SecretMissing(Exception):
    """The cluster secret is absent or empty (pysyncobj's wire format is pickle)."""


@dataclass(frozen=True)
class RaftSettings:
    """Every pysyncobj setting we use, and why.  Times in seconds."""

    #: heartbeat/append period.  0.1 s: three heartbeats fit in the election timeout
    #: even on a loaded 2-core machine.
    append_entries_period_s: float = 0.1
    #: election timeout range.  0.6-1.2 s: a new leader well within the 2 s target, yet
    #: far above scheduler hiccups of a busy machine (fewer spurious elections).
    raft_min_timeout_s: float = 0.6
    raft_max_timeout_s: float = 1.2
    #: a leader without a majority of responses steps down after this.  pysyncobj's
    #: default is 30 s; ours is below the minimum election timeout, so a cut-off leader
    #: has stepped down before the majority side can elect a new one.
    leader_fallback_timeout_s: float = 0.5
    #: a connection without traffic is dead after this (>= raft_max_timeout_s).
    connection_timeout_s: float = 2.0
    #: reconnect attempts to absent peers.  Default 5 s made a late node wait 5 s.
    connection_retry_s: float = 0.3
    #: appendEntriesUseBatch=False: replicate in the tick a command is queued (~1-3 ms
    #: commit) instead of waiting for the next 0.1 s batch.  (We then let pysyncobj
    #: believe it batches and send once per tick ourselves: one message per peer per
    #: tick instead of one per command.)
    append_entries_use_batch: bool = False
    #: quorum knowledge: a node is quorate while it has heard, within this time, from a
    #: majority (leader: follower replies; follower: its leader's heartbeats).  Must be
    #: below the LRM renewal timeout (lease_local_s: 2 s in the 'fast' profile).
    quorum_timeout_s: float = 1.0
    #: log compaction: snapshot (serialized SQLite db) after this many entries or seconds.
    log_compaction_min_entries: int = 10_000
    log_compaction_min_time_s: float = 300.0
    #: our tick loop waits in poll (socket events wake it earlier) until the next thing
    #: due on a timer -- the leader's heartbeat, a follower's election deadline, a
    #: keepalive, a reconnect -- but at most tick_s (pysyncobj's one-second timer,
    #: compaction by time); overdue_tick_s when a deadline has passed and pysyncobj
    #: cannot act on it yet (no peer connected).  Was a fixed 0.05 s: an idle node woke
    #: 20 times a second for nothing.
    tick_s: float = 0.25
    overdue_tick_s: float = 0.05
    #: give up binding the Raft port after this many 1 s attempts (clear error, no hang).
    max_bind_retries: int = 5
    #: durability: fsync before acknowledging.  Off only for the benchmark comparison.
    durable: bool = True

    def conf(self, secret: str, journal: str, dump: str,
             serializer: Callable[..., Any], deserializer: Callable[..., Any],
             on_state_changed: Callable[[int, int], None] | None = None,
             bind_address: str | None = None) -> SyncObjConf:
        return SyncObjConf(
            onStateChanged=on_state_changed,
            password=secret, autoTick=False, appendEntriesPeriod=self.append_entries_period_s,
            raftMinTimeout=self.raft_min_timeout_s, raftMaxTimeout=self.raft_max_timeout_s,
            leaderFallbackTimeout=self.leader_fallback_timeout_s,
            connectionTimeout=self.connection_timeout_s, connectionRetryTime=self.connection_retry_s,
            appendEntriesUseBatch=self.append_entries_use_batch,
            logCompactionMinEntries=self.log_compaction_min_entries,
            logCompactionMinTime=self.log_compaction_min_time_s,
            # commands submitted during an election wait for the leader (the client's
            # timeout bounds the wait; retries reuse the id, so a late commit is harmless)
            commandsWaitLeader=True, dynamicMembershipChange=True,
            journalFile=journal, fullDumpFile=dump, serializer=serializer, deserializer=deserializer,
            bindRetryTime=1.0, maxBindRetries=self.max_bind_retries,
            # the member's own address: pysyncobj binds 0.0.0.0 (every interface) without it
            bindAddress=bind_address,
        )


class _Replica(_ElectionGuard, SyncObj):  # type: ignore[misc]
    """The pysyncobj object: one replicated method over this node's SQLite database;
    elections with pre-vote and leader stickiness (`election.py`)."""

    def __init__(self, node: StoreNode, self_addr: str, peers: list[str], conf: SyncObjConf) -> None:
        self._node = node
        self._pending_change_idx: int | None = None
        # hand-off at the second report (pre-votes are >= raftMinTimeout apart)
        self._init_election_guard(sticky_s=conf.raftMinTimeout, handoff_after_s=conf.raftMinTimeout * 0.8,
                                  window_s=2 * conf.raftMaxTimeout)
        super().__init__(self_addr, peers, conf, transportClass=_GuardedTransport)
        self._last_append = self._SyncObj__transport.last_append

    def _SyncObj__changeCluster(self, request: Any) -> bool:  # noqa: N802 - overrides the private method
        """One membership change at a time.  pysyncobj 0.3.17 means to refuse a change
        while the previous one is uncommitted but never records the previous one's log
        index, so it accepted two at once (test_membership_changes_go_one_at_a_time)."""
        pending = self._pending_change_idx
        if pending is not None and self.raftLastApplied >= pending:
            pending = self._pending_change_idx = None
        if pending is not None:
            return False
        ok = bool(SyncObj._SyncObj__changeCluster(self, request))
        if ok:  # _checkCommandsToApply appends the change right after this returns
            self._pending_change_idx = self._SyncObj__getCurrentLogIndex() + 1
        return ok

    @replicated  # type: ignore[untyped-decorator]
    def apply_command(self, raw: str) -> dict[str, Any]:
        node = self._node
        try:
            with node.db_lock:
                res = apply(node.db, raw)
        except StoreFault as e:
            node.fault(str(e))
            raise  # not reached with the default on_fault (the process exits)
        node._notify_applied(raw, res)
        return res


class StoreNode:
    """One member of the replicated store.

    `submit_async(raw, callback)` proposes a command (JSON text); `callback(result,
    error_name)` runs on the Raft thread when this node applies it (error_name None) or
    when it fails ('MISSING_LEADER', 'NOT_LEADER', 'LEADER_CHANGED', 'DISCARDED',
    'QUEUE_FULL', 'UNKNOWN_OUTCOME', 'REQUEST_DENIED').  Never call blocking store
    operations from inside a callback.

    `add_apply_listener(fn)`: `fn(raw, result)` runs on the Raft thread after this node
    applied a command, and `fn(None, None)` after it installed a snapshot (anything may
    have changed).  The database changes in no other way, so a reader can skip its read
    when no listener call came (the daemon's replica watcher does).  Must not block.
    """

    def __init__(self, self_addr: str, peers: list[str], data_dir: str, secret: str | bytes | None,
                 settings: RaftSettings | None = None,
                 on_fault: Callable[[str], None] | None = None,
                 max_db_pages: int | None = None) -> None:
        if not secret or not (secret.strip() if isinstance(secret, (str, bytes)) else secret):
            raise SecretMissing("refusing to start without a cluster secret: pysyncobj's wire format is "
                                "pickle, so anyone reaching the Raft port could run code on this node")
        self.settings = settings or RaftSettings()
        self.self_addr = self_addr
        self.data_dir = data_dir
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
        os.chmod(data_dir, 0o700)
        self.journal_path = os.path.join(data_dir, "raft.journal")
        self.dump_path = os.path.join(data_dir, "raft.snapshot")
        self.db_lock = threading.RLock()
        self.db: sqlite3.Connection = connect(":memory:")
        if max_db_pages:  # test knob: makes SQLite report "database or disk is full"
            self.db.execute(f"PRAGMA max_page_count = {int(max_db_pages)}")
        self._on_fault = on_fault or _exit_member
        self._stop = threading.Event()
        # before _Replica: loading a snapshot at start-up already notifies
        self._apply_listeners: list[Callable[[str | None, dict[str, Any] | None], None]] = []
        secret_s = secret.decode() if isinstance(secret, bytes) else secret
        conf = self.settings.conf(secret_s.strip(), self.journal_path, self.dump_path,
                                  self._serialize, self._deserialize, self._state_changed,
                                  bind_address=self_addr)
        self._obj = _Replica(self, self_addr, [p for p in peers if p != self_addr], conf)
        # pinned 0.3.17: make the journal durable before the first tick
        self.journal = _DurableJournal.adopt(self._obj._SyncObj__raftLog, self.journal_path,
                                             self.settings.durable)
        self.journal.applied_idx = lambda: int(self._obj.raftLastApplied)
        self.journal.on_divergence = self.fault
        self.transport: _GuardedTransport = self._obj._SyncObj__transport
        self.transport.journal = self.journal
        self.transport.keepalive_s = min(0.5, self.settings.connection_timeout_s / 4)
        # Created without batching (that gives us pysyncobj's wake-up pipe), then switched:
        # pysyncobj without batching builds and sends one append_entries per command;
        # we send once per tick instead (_send_new_entries), right before the flush.
        self._notifier = self._obj._SyncObj__pipeNotifier
        self._obj._poller = _DeadlinePoller(self._obj._poller, self._poll_bound_s)
        conf.appendEntriesUseBatch = True
        self._sent_idx = self._sent_commit = -1
        self._snapshot_failed_at = -1e18
        # both run at the end of every tick, right before pysyncobj polls its sockets
        self._obj.addOnTickCallback(self._send_new_entries)
        self._obj.addOnTickCallback(self._flush)
        self.journal.sync()
        self._restrict_files()
        self._thread = threading.Thread(target=self._run, name=f"raft-{self_addr}", daemon=True)
        self._thread.start()

    # -- lifecycle ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._obj.doTick(self.settings.tick_s)
                self._flush()
            except Exception:  # noqa: BLE001 - keep ticking, as pysyncobj's own loop does
                log.exception("raft tick failed")
                time.sleep(self.settings.tick_s)
        self._obj.destroy()

    def _flush(self) -> None:
        """The transport's flush; while the journal cannot be persisted (disk full) the
        held messages stay held and this member neither leads nor runs (durable.py)."""
        try:
            self.transport.flush()
        except DiskFull:
            stand_aside(self._obj)

    def _poll_bound_s(self) -> float:
        """Seconds until the next timer-driven work (see RaftSettings.tick_s)."""
        o = self._obj
        if o._isLeader():
            due = o._SyncObj__newAppendEntriesTime  # pysyncobj's clock (MONOTONIC_RAW)
        else:
            due = o._SyncObj__raftElectionDeadline
        wait = due - _raft_clock()
        if wait <= 0:
            wait = self.settings.overdue_tick_s
        # +1 ms: pysyncobj acts when its clock is strictly past the deadline
        return max(0.001, min(float(wait), float(self.transport.wait_bound_s())) + 0.001)

    def stop(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def _send_new_entries(self) -> None:
        """Leader: replicate new entries / a new commit index once per tick."""
        o = self._obj
        if not o._isLeader():
            self._sent_idx = self._sent_commit = -1
            return
        idx, commit = o._SyncObj__getCurrentLogIndex(), o.raftCommitIndex
        if (idx, commit) != (self._sent_idx, self._sent_commit):
            # only the commit index moved: followers need not answer (transport._NO_ACK)
            self.transport.commit_only_round = idx == self._sent_idx
            self._sent_idx, self._sent_commit = idx, commit
            try:
                o._SyncObj__sendAppendEntries()
            finally:
                self.transport.commit_only_round = False

    def _state_changed(self, old: int, new: int) -> None:
        names = {0: "follower", 1: "candidate", 2: "leader"}
        log.info("raft %s: %s -> %s", self.self_addr, names.get(old, old), names.get(new, new))

    def fault(self, why: str) -> None:
        log.critical("store: stopping this member: local fault while applying a committed entry "
                     "(%s); the other members continue, restart it once the cause is fixed", why)
        self._on_fault(why)

    def _restrict_files(self) -> None:
        for name in os.listdir(self.data_dir):
            p = os.path.join(self.data_dir, name)
            if os.path.isfile(p):
                os.chmod(p, 0o600)

    # -- snapshots: the serialized SQLite database + pysyncobj's bookkeeping ------------------

    def _serialize(self, path: str, data: Any) -> None:
        disk = self.journal.disk
        if SNAPSHOT in disk.failing and time.monotonic() - self._snapshot_failed_at < 5.0:
            raise OSError("disk full: snapshot retried every 5 s")  # pysyncobj asks every tick
        with self.db_lock:
            db_bytes = self.db.serialize()
        meta = pickle.dumps(data)  # pysyncobj's entries and Node set; authenticated peers only
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(SNAPSHOT_MAGIC + struct.pack("<Q", len(meta)) + meta + db_bytes)
                f.flush()
                if self.settings.durable:
                    os.fsync(f.fileno())
        except OSError as e:  # disk full: pysyncobj keeps the old snapshot and retries
            self._snapshot_failed_at = time.monotonic()
            disk.failed(SNAPSHOT, e)
            try:
                os.unlink(path)  # a partial file would hold the space
            except OSError:
                pass
            raise
        disk.ok(SNAPSHOT)
        # pysyncobj renames path into place; _DurableJournal fsyncs the directory before
        # compacting the journal

    def _deserialize(self, path: str) -> Any:
        if self.settings.durable:
            _fsync_path(path)  # a received snapshot was written without fsync
            _fsync_path(os.path.dirname(path) or ".", directory=True)
        with open(path, "rb") as f:
            blob = f.read()
        if not blob.startswith(SNAPSHOT_MAGIC):
            raise ValueError(f"{path}: not a harepl snapshot")
        off = len(SNAPSHOT_MAGIC)
        (n,) = struct.unpack("<Q", blob[off:off + 8])
        data = pickle.loads(blob[off + 8:off + 8 + n])  # noqa: S301 - our own file / authenticated peer
        with self.db_lock:
            self.db.deserialize(blob[off + 8 + n:])
            self.db.execute("PRAGMA foreign_keys = ON")
        os.chmod(path, 0o600)
        self._notify_applied(None, None)
        return data

    # -- change notification ------------------------------------------------------------------

    def add_apply_listener(self, fn: Callable[[str | None, dict[str, Any] | None], None]) -> None:
        self._apply_listeners.append(fn)

    def _notify_applied(self, raw: str | None, result: dict[str, Any] | None) -> None:
        for fn in list(self._apply_listeners):
            try:
                fn(raw, result)
            except Exception:  # noqa: BLE001 - never let a listener wedge the apply (hazard 1)
                log.exception("apply listener failed")

    # -- proposing ------------------------------------------------------------------------

    def submit_async(self, raw: str, callback: Callable[[dict[str, Any] | None, str | None], None]) -> None:
        def done(res: Any, err: int) -> None:
            callback(res, None if err == FAIL_REASON.SUCCESS else FAIL_NAMES.get(err, str(err)))

        self._obj.apply_command(raw, callback=done)
        self._notifier.notify()  # wake the tick thread now, not at the next poll timeout

    def result_of(self, cid: str) -> dict[str, Any] | None:
        with self.db_lock:
            return reads.result_of(self.db, cid)

    def read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run fn(conn) on the local database, never inside a half-applied command."""
        with self.db_lock:
            return fn(self.db)

    # -- cluster knowledge ----------------------------------------------------------------------

    def members(self) -> list[str]:
        return sorted([self.self_addr] + [n.id for n in self._obj.otherNodes])

    def leader(self) -> str | None:
        ld = self._obj._getLeader()
        return None if ld is None else str(ld.id)

    def has_quorum(self) -> bool:
        """Quorate now, judged on this node's monotonic clock from fresh heartbeats."""
        now = time.monotonic()
        qt = self.settings.quorum_timeout_s
        others = self._obj.otherNodes
        if self._obj._isLeader():
            fresh = sum(1 for n in others if now - self.transport.last_heard.get(n, -1e18) < qt)
            return fresh + 1 > (len(others) + 1) / 2
        ld = self._obj._getLeader()
        if ld is None or ld.id == self.self_addr:
            return False
        return now - self.transport.last_append.get(ld, -1e18) < qt

    def is_leader(self) -> bool:
        """Leader *and* quorate -- never pysyncobj's `_isLeader()` alone."""
        return bool(self._obj._isLeader()) and self.has_quorum()

    def status(self) -> dict[str, Any]:
        o = self._obj
        state = "leader" if o._isLeader() else ("follower" if o._getLeader() is not None else "candidate")
        return {"addr": self.self_addr, "state": state, "leader": self.leader(),
                "quorum": self.has_quorum(), "term": o.raftCurrentTerm, "commit_index": o.raftCommitIndex,
                "last_applied": o.raftLastApplied, "members": self.members(),
                "connected": sorted(str(n.id) for n in o.otherNodes if o.isNodeConnected(n)),
                "log_len": len(self.journal), "fsyncs": self.journal.syncs,
                "bad_connections": self.transport.bad_connections,
                "unauthenticated": len(self.transport._unknownConnections), "elections": dict(o.election_stats)}

    def force_compaction(self) -> None:
        self._obj.forceLogCompaction()

    # -- membership (one change at a time) --------------------------------------------------------

    def _responsive(self) -> set[str]:
        """Members this node believes alive now (itself included)."""
        now = time.monotonic()
        qt = self.settings.quorum_timeout_s
        alive = {self.self_addr}
        for n in self._obj.otherNodes:
            if self._obj._isLeader():
                ok = now - self.transport.last_heard.get(n, -1e18) < qt
            else:  # followers only hear the leader; use the connection state instead
                ok = self._obj.isNodeConnected(n)
            if ok:
                alive.add(str(n.id))
        return alive

    def change_membership(self, action: str, addr: str,
                          callback: Callable[[dict[str, Any] | None, str | None], None]) -> None:
        """Add or remove one member; refuses (ValueError) when it would lose quorum."""
        members = self.members()
        alive = self._responsive()
        if action == "add":
            if addr in members:
                raise ValueError(f"{addr} is already a member")
            need = (len(members) + 1) // 2 + 1
            if len(alive) < need:  # counts the new member as absent until it catches up
                raise ValueError(f"adding {addr} would lose quorum: {len(alive)} of {len(members)} members "
                                 f"respond, {len(members) + 1} members need {need}")
        elif action == "remove":
            if addr not in members:
                raise ValueError(f"{addr} is not a member")
            if addr == self.self_addr:
                raise ValueError("a member cannot remove itself; run the removal on another member")
            need = (len(members) - 1) // 2 + 1
            if len(alive - {addr}) < need:
                raise ValueError(f"removing {addr} would lose quorum: {len(alive - {addr})} of the "
                                 f"{len(members) - 1} remaining members respond, {need} needed")
        else:
            raise ValueError(f"unknown membership action {action!r}")
        def done(res: Any, err: int) -> None:
            callback({"ok": err == FAIL_REASON.SUCCESS},
                     None if err == FAIL_REASON.SUCCESS else FAIL_NAMES.get(err, str(err)))

        fn = self._obj.addNodeToCluster if action == "add" else self._obj.removeNodeFromCluster
        fn(addr, callback=done)
        self._notifier.notify()


def _exit_member(why: str) -> None:
    logging.shutdown()
    os._exit(70)
