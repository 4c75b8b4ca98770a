"""Transport for pysyncobj: persist before sending, keepalives, heartbeat tracking and
logging of unauthenticated connections (part of `harepl.store.raft`)."""

from __future__ import annotations

import logging
import struct
import time
import zlib
from typing import Any

from pysyncobj import pickle as _pickle
from pysyncobj.monotonic import monotonic as _raft_clock
from pysyncobj.tcp_connection import CONNECTION_STATE, TcpConnection
from pysyncobj.transport import TCPTransport

from .durable import _DurableJournal

log = logging.getLogger("harepl.store.raft")

_KEEPALIVE = {"type": "harepl_keepalive"}  # ignored by pysyncobj's message handler
#: Marks an append_entries that only carries a new commit index to a follower that
#: already acknowledged every entry (sent right after a commit so followers apply at
#: once).  pysyncobj's follower answers every append_entries; its answer to this one
#: repeats what its last one said, so ours skips it: 2 of the ~10 messages a commit
#: costs the leader.  Skipping an answer is what a lost message does (always safe in
#: Raft); heartbeats are still answered, so leader liveness and quorum knowledge are
#: unchanged.  A follower without this code ignores the key and answers.
_NO_ACK = "harepl_no_ack"

#: largest message an incoming connection may announce.  pysyncobj has no limit: a peer
#: announcing a 2 GB message and streaming bytes grows our memory without end (and its
#: buffer concatenation is quadratic).  Its own messages are far smaller: 64 KiB batches,
#: snapshots in 64 KiB pieces, our per-tick coalescing at most a few MiB.
MAX_MESSAGE_BYTES = 64 << 20


#: messages up to this size (pickled) are sent as stored zlib blocks: deflate's set-up
#: (a 256 KiB state for level 3) cost 15-80 us per message here, more than the rest of
#: a heartbeat's send; the receiver's zlib.decompress reads either form unchanged.
SMALL_MESSAGE_BYTES = 4096


def _compress(data: bytes) -> bytes:
    if len(data) > SMALL_MESSAGE_BYTES:
        return zlib.compress(data, 3)  # what pysyncobj does
    c = zlib.compressobj(0, zlib.DEFLATED, 9, 1)  # level 0, 512 B window, smallest state
    return c.compress(data) + c.flush()


class _CappedConnection(TcpConnection):  # type: ignore[misc]
    """TcpConnection that drops a peer announcing a negative or oversized message, and
    sends small messages without deflate's set-up cost (same wire format)."""

    def send(self, message: Any) -> None:
        # TcpConnection.send, with _compress instead of zlib.compress(..., 3)
        if self.sendRandKey:
            message = (self.sendRandKey, message)
        data = _compress(_pickle.dumps(message))
        if self.encryptor:
            data = self.encryptor.encrypt_at_time(data, int(_raft_clock()))
        self._TcpConnection__writeBuffer += struct.pack("i", len(data)) + data
        self._TcpConnection__trySendBuffer()

    def _TcpConnection__processRead(self) -> bool:  # noqa: N802 - overrides the private method
        more = bool(TcpConnection._TcpConnection__processRead(self))
        buf = self._TcpConnection__readBuffer
        if len(buf) >= 4:
            (length,) = struct.unpack("i", buf[:4])
            if length < 0 or length > MAX_MESSAGE_BYTES:
                self.disconnect()
                return False
        return more


class _GuardedTransport(TCPTransport):  # type: ignore[misc]
    """TCP transport that persists before sending, tracks heartbeats for quorum
    knowledge, and logs connections that fail to authenticate."""

    journal: _DurableJournal | None = None

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:  # noqa: N803
        self.last_heard: dict[Any, float] = {}      # node -> monotonic time of any reply
        self.last_append: dict[Any, float] = {}     # node -> time of its last append_entries
        self._held: list[tuple[Any, Any]] = []
        self._held_nodes: set[Any] = set()
        self._next_keepalive = 0.0
        self._last_sent: dict[Any, float] = {}     # node -> time we last sent it anything
        # leader: set while StoreNode sends a new commit index only (see _NO_ACK)
        self.commit_only_round = False
        self._no_ack_to: Any = None                 # follower: node whose _NO_ACK message we handle
        self.acks_skipped = 0
        self.keepalive_s = 0.5
        self._incoming_peer: dict[int, str] = {}
        self._bad_log_at: dict[str, float] = {}
        self.bad_connections = 0
        super().__init__(syncObj, selfNode, otherNodes)

    def addNode(self, node: Any) -> None:  # noqa: N802 - pysyncobj API
        super().addNode(node)
        conn = self._connections.get(node)
        if type(conn) is TcpConnection:  # our outgoing connection to node
            conn.__class__ = _CappedConnection

    def _key_exchanged(self, node: Any) -> bool:
        """pysyncobj calls an outgoing connection CONNECTED at the TCP connect, before the
        key exchange; a message sent then reaches the peer where it expects our address,
        and the peer drops the connection ("did not authenticate" in its log; seen at
        startup as a 0.3 s+ reconnect delay).  The message was lost anyway: don't send."""
        return bool(self._syncObj.isNodeConnected(node))

    def _send_now(self, node: Any, message: Any) -> bool:
        if not self._key_exchanged(node):
            return False
        ok = bool(super().send(node, message))
        if ok:
            self._last_sent[node] = time.monotonic()
        return ok

    def send(self, node: Any, message: Any) -> bool:
        if not self._key_exchanged(node):
            return False
        if isinstance(message, dict):
            kind = message.get("type")
            if (kind == "append_entries" and self.commit_only_round and not message.get("entries")
                    and "prevLogIdx" in message and "transmission" not in message):
                message = dict(message, **{_NO_ACK: True})
            elif (kind == "next_node_idx" and self._no_ack_to is not None and node == self._no_ack_to
                    and message.get("success")
                    and not message.get("reset")):
                self.acks_skipped += 1
                return True  # what the leader would learn, it already knows (see _NO_ACK)
        # After a journal write, hold every outgoing message (acks, votes, appends) until
        # `flush()` has made the writes durable -- once per tick, so many entries share
        # one fsync.  Order per peer is kept: nothing overtakes a held message.
        j = self.journal
        if j is not None and (self._held or j.dirty):
            if (isinstance(message, dict) and message.get("type") == "append_entries"
                    and node not in self._held_nodes):
                # A leader may replicate before its own fsync (Raft thesis 10.2.1): it
                # only must not count itself for commit before the fsync, and the
                # fsync (end of this tick) always precedes the next commit computation
                # (start of the next tick).  Takes the leader's fsync off the commit path.
                return self._send_now(node, message)
            self._held.append((node, message))
            self._held_nodes.add(node)
            return True
        return self._send_now(node, message)

    def flush(self) -> None:
        """fsync pending journal writes, then release the held messages (tick thread)."""
        if self.journal is not None:
            self.journal.sync()
        held, self._held = self._held, []
        self._held_nodes.clear()
        for node, message in _coalesce(held):
            self._send_now(node, message)
        now = time.monotonic()
        if now >= self._next_keepalive:
            # pysyncobj drops a connection that has not *read* anything for
            # connectionTimeout -- and it checks that when it next sends.  Followers never
            # talk to each other, so the first request_vote after a leader dies went
            # into a connection declared dead on the spot and was lost (measured: 5-node
            # elections of 2-2.9 s).  A tiny keepalive to every peer we sent nothing to
            # for keepalive_s keeps them all live (a leader's heartbeats and the
            # followers' answers already do it for their connections).
            due = now + self.keepalive_s
            for node in list(self._connections):
                last = self._last_sent.get(node, -1e18)
                if now - last >= self.keepalive_s and self._send_now(node, _KEEPALIVE):
                    last = now
                due = min(due, max(last + self.keepalive_s, now + 0.01))
            self._next_keepalive = due

    def wait_bound_s(self) -> float:
        """How long the tick loop may wait in poll before this transport has work:
        the next keepalive, or the next connection attempt to an absent peer."""
        wait = self._next_keepalive - time.monotonic()
        retry_s = self._syncObj.conf.connectionRetryTime
        now = _raft_clock()
        for node in self._nodes:
            conn = self._connections.get(node)
            if conn is not None and conn.state == CONNECTION_STATE.DISCONNECTED and self._shouldConnect(node):
                wait = min(wait, self._lastConnectAttempt.get(node, -1e18) + retry_s - now)
        return wait

    def _onMessageReceived(self, node: Any, message: Any) -> None:  # noqa: N802
        if message == _KEEPALIVE:
            return  # only there to be read: it keeps the connection's read timer fresh
        now = time.monotonic()
        self.last_heard[node] = now
        if isinstance(message, dict) and message.get("type") == "append_entries":
            self.last_append[node] = now
            if message.get(_NO_ACK) and not message.get("entries"):
                self._no_ack_to = node
                try:
                    super()._onMessageReceived(node, message)
                finally:
                    self._no_ack_to = None
                return
        super()._onMessageReceived(node, message)

    def _onNewIncomingConnection(self, conn: Any) -> None:  # noqa: N802
        try:
            sock = conn._TcpConnection__socket  # pinned 0.3.17: only to name the peer in the log
            host, port = sock.getpeername()[:2]
            self._incoming_peer[id(conn)] = f"{host}:{port}"
        except Exception:  # noqa: BLE001
            self._incoming_peer[id(conn)] = "unknown peer"
        if type(conn) is TcpConnection:
            conn.__class__ = _CappedConnection
        super()._onNewIncomingConnection(conn)

    def _onDisconnected(self, conn: Any) -> None:  # noqa: N802
        peer = self._incoming_peer.pop(id(conn), None)
        if peer is not None and conn in self._unknownConnections:
            # never authenticated: wrong cluster secret, garbage, or not a harepl peer
            self.bad_connections += 1
            host = peer.rsplit(":", 1)[0]
            now = time.monotonic()
            if now - self._bad_log_at.get(host, -1e9) > 10.0:  # one line per source per 10 s
                self._bad_log_at[host] = now
                log.warning("raft port: dropped connection from %s that did not authenticate "
                            "(wrong cluster secret or garbage); %d such so far", peer, self.bad_connections)
        super()._onDisconnected(conn)


def _coalesce(held: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Merge held messages per peer, keeping per-peer order: contiguous append_entries
    of one term become one message (pysyncobj without batching sends one per command),
    and consecutive successful acks collapse to the last.  Fewer messages = fewer
    pickle/zlib/Fernet rounds, which is what limits throughput here."""
    out: list[tuple[Any, Any]] = []
    last: dict[Any, int] = {}
    for node, msg in held:
        i = last.get(node)
        prev = out[i][1] if i is not None else None
        if i is not None and isinstance(prev, dict) and isinstance(msg, dict) and prev.get("type") == msg.get("type"):
            if (msg["type"] == "append_entries" and "entries" in prev and "entries" in msg
                    and "transmission" not in prev and "transmission" not in msg
                    and prev["term"] == msg["term"]
                    and msg["prevLogIdx"] == (prev["entries"][-1][1] if prev["entries"] else prev["prevLogIdx"])):
                merged = dict(prev, entries=list(prev["entries"]) + list(msg["entries"]),
                              commit_index=msg["commit_index"])
                if merged["entries"] or not msg.get(_NO_ACK):
                    merged.pop(_NO_ACK, None)  # an answer is wanted
                out[i] = (node, merged)
                continue
            if (msg["type"] == "next_node_idx" and prev["success"] and msg["success"]
                    and not prev["reset"] and not msg["reset"]):
                out[i] = (node, msg)
                continue
        last[node] = len(out)
        out.append((node, msg))
    return out


class _DeadlinePoller:
    """pysyncobj's poller, waiting no longer than `bound_s()` allows.

    `SyncObj._onTick` ends with `poll(timeToWait)`; with a fixed short wait an idle node
    woke 20 times a second for nothing, and a wake-up of this thread costs ~0.1 ms of CPU
    here.  Installed as `SyncObj._poller`, it shortens each wait to the next thing due on
    a timer, computed right before the wait (after the tick's own work)."""

    def __init__(self, inner: Any, bound_s: Any) -> None:
        self._inner = inner
        self._bound_s = bound_s

    def subscribe(self, descr: Any, callback: Any, eventMask: Any) -> None:  # noqa: N803 - pysyncobj API
        self._inner.subscribe(descr, callback, eventMask)

    def unsubscribe(self, descr: Any) -> None:
        self._inner.unsubscribe(descr)

    def poll(self, timeout: float) -> None:
        self._inner.poll(min(timeout, self._bound_s()))
