"""Transport for pysyncobj: persist before sending, keepalives, heartbeat tracking, and
the guard of the Raft port against outsiders (part of `harepl.store.raft`).

pysyncobj's key exchange on a connection, with the cluster secret (Fernet):

    dialler -> acceptor: K1              (encrypted; replayable: bound to nothing fresh)
    acceptor -> dialler: (K1, K2)        (bound to the dialler's fresh K1: authenticated)
    dialler -> acceptor: (K2, own addr)  (bound to the acceptor's fresh K2: authenticated)

Until that is done a connection is *unauthenticated*: its peer may be anyone who reaches
the port.  pysyncobj buffers whatever such a peer announces (60 MiB of garbage stalled
the tick thread for seconds: the node lost its lease) and keeps a silent connection
forever (600 held in a flood).  Here an unauthenticated connection may announce frames
of at most PRE_AUTH_MAX_FRAME_BYTES, is read one frame at a time, is dropped after
PRE_AUTH_TIMEOUT_S, and at most MAX_UNAUTHENTICATED exist at once; each drop is logged,
one line per source host per DROP_LOG_WINDOW_S with a count."""

from __future__ import annotations

import logging
import select
import struct
import time
import zlib
from typing import Any

from pysyncobj import pickle as _pickle
from pysyncobj.monotonic import monotonic as _raft_clock
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.tcp_connection import CONNECTION_STATE, TcpConnection
from pysyncobj.tcp_server import SERVER_STATE, TcpServer
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

#: largest frame an unauthenticated connection may announce.  The key exchange's frames
#: measured 228-332 B (a key, two keys, a key and a member address); a 253-character
#: host name adds ~340 B: 4 KiB leaves a margin of six.
PRE_AUTH_MAX_FRAME_BYTES = 4096
#: an incoming connection that has not finished the key exchange after this is dropped
#: (on loopback or a LAN the exchange takes a few milliseconds).
PRE_AUTH_TIMEOUT_S = 1.0
#: most incoming connections in the key exchange at once; a new one beyond this drops the
#: oldest (a flood cannot keep a member's own reconnect out for more than its few ms).
#: Twice the largest cluster (64 nodes) reconnecting at once.
MAX_UNAUTHENTICATED = 128
#: refused/garbage connections: one log line per source host per window, with a count
DROP_LOG_WINDOW_S = 10.0
#: hosts tracked separately by the drop log; beyond, they share one line
DROP_LOG_MAX_HOSTS = 256
#: the listening socket's accept queue.  pysyncobj listens with a backlog of 5 and accepts
#: one connection per poll: an outsider opening connections filled the queue, and every
#: further SYN -- a member's reconnect too -- was dropped by the kernel and retried by the
#: dialler only 1 s, then 3 s, 7 s later (measured: 300 sequential connects took 46 s).
LISTEN_BACKLOG = 2 * MAX_UNAUTHENTICATED
#: most connections accepted per readable event of the listening socket (then the tick
#: goes on and the next poll accepts more: a flood cannot starve the members' traffic)
ACCEPT_PER_POLL = 64


#: messages up to this size (pickled) are sent as stored zlib blocks: deflate's set-up
#: (a 256 KiB state for level 3) cost 15-80 us per message here, more than the rest of
#: a heartbeat's send; the receiver's zlib.decompress reads either form unchanged.
SMALL_MESSAGE_BYTES = 4096


def _compress(data: bytes) -> bytes:
    if len(data) > SMALL_MESSAGE_BYTES:
        return zlib.compress(data, 3)  # what pysyncobj does
    c = zlib.compressobj(0, zlib.DEFLATED, 9, 1)  # level 0, 512 B window, smallest state
    return c.compress(data) + c.flush()


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n} B"


class _CappedConnection(TcpConnection):  # type: ignore[misc]
    """TcpConnection that drops a peer announcing a negative or oversized message (a few
    KiB before the key exchange is done, MAX_MESSAGE_BYTES after), reads one frame at a
    time before it, and sends small messages without deflate's set-up cost (same wire
    format).  Installed by `_GuardedTransport` on every connection (class swap)."""

    #: accepted by our server (set by `_GuardedTransport`); else dialled by us
    harepl_incoming = False
    #: incoming: the peer named a member in a message bound to our fresh key
    harepl_named = False
    harepl_peer = "unknown peer"
    harepl_accepted_at = 0.0
    #: why we dropped it (for the log); None: the peer closed it or pysyncobj did
    harepl_drop_reason: str | None = None

    def authenticated(self) -> bool:
        if self.harepl_incoming:
            return self.harepl_named
        # dialled: the acceptor's first answer carries our fresh key (sendRandKey is set
        # from it; disconnect() clears it again)
        return self.sendRandKey is not None

    def drop(self, reason: str) -> None:
        self.harepl_drop_reason = reason
        self.disconnect()

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
            if self.authenticated():
                if length < 0 or length > MAX_MESSAGE_BYTES:
                    self.drop(f"announced a message of {_mib(length)} (limit {_mib(MAX_MESSAGE_BYTES)})")
                    return False
            else:
                if length < 0 or length > PRE_AUTH_MAX_FRAME_BYTES:
                    what = "a negative frame length" if length < 0 else f"a frame of {_mib(length)}"
                    self.drop(f"did not authenticate: announced {what} before the key exchange "
                              f"(limit {PRE_AUTH_MAX_FRAME_BYTES} B)")
                    return False
                if len(buf) >= 4 + length:
                    return False  # a whole frame: parse it before reading further
        return more

    def _TcpConnection__processParseMessage(self) -> Any:  # noqa: N802 - overrides the private method
        was_authenticated = self.authenticated()
        message = TcpConnection._TcpConnection__processParseMessage(self)
        if message is None and self.harepl_drop_reason is None and self.state == CONNECTION_STATE.DISCONNECTED:
            # pysyncobj drops a frame that fails to decrypt, unpickle or match our key, silently
            self.harepl_drop_reason = (
                "sent a message that fails to decrypt or to match the key exchange" if was_authenticated else
                "did not authenticate: sent a frame that does not decrypt with the cluster secret "
                "(wrong secret or garbage)")
        return message


class _GuardedServer(TcpServer):  # type: ignore[misc]
    """pysyncobj's TcpServer with an accept queue of LISTEN_BACKLOG and up to
    ACCEPT_PER_POLL accepts per readable event (class swap by `_GuardedTransport`)."""

    def bind(self) -> None:
        super().bind()
        # listen() again on a listening socket sets its backlog (Linux, BSD)
        self._TcpServer__socket.listen(LISTEN_BACKLOG)

    def _TcpServer__onNewConnection(self, descr: Any, event: int) -> None:  # noqa: N802 - overrides the private method
        if not event & POLL_EVENT_TYPE.READ:
            TcpServer._TcpServer__onNewConnection(self, descr, event)
            return
        for _ in range(ACCEPT_PER_POLL):
            # one accept each; a readable listening socket with nothing left raises EAGAIN,
            # which pysyncobj's handler ignores
            TcpServer._TcpServer__onNewConnection(self, descr, POLL_EVENT_TYPE.READ)
            if self._TcpServer__state != SERVER_STATE.BINDED or not _readable(self._TcpServer__socket):
                break
        if event & POLL_EVENT_TYPE.ERROR:
            self.unbind()


def _readable(sock: Any) -> bool:
    p = select.poll()  # not select(): a descriptor above 1023 would make it raise
    p.register(sock, select.POLLIN)
    return bool(p.poll(0))


class _DropLog:
    """Dropped connections, logged one line per source host per `window_s`: the first
    drop at once, the rest of the window counted and summed up in one line when it ends
    (`flush`, every tick).  A flood from one host is one line per window; from many
    hosts, at most `max_hosts` lines per window plus one for all the others."""

    OTHERS = "other hosts"

    def __init__(self, window_s: float = DROP_LOG_WINDOW_S, max_hosts: int = DROP_LOG_MAX_HOSTS) -> None:
        self.window_s = window_s
        self.max_hosts = max_hosts
        self._hosts: dict[str, list[Any]] = {}  # host -> [window end, drops since the line, last reason]

    def note(self, peer: str, reason: str, now: float) -> None:
        host = peer.rsplit(":", 1)[0]
        if host not in self._hosts and len(self._hosts) >= self.max_hosts:
            host = self.OTHERS
        w = self._hosts.get(host)
        if w is None:
            self._hosts[host] = [now + self.window_s, 0, reason]
            log.warning("raft port: dropped connection from %s: %s", peer, reason)
        else:
            w[1] += 1
            w[2] = reason

    def flush(self, now: float) -> None:
        for host, w in list(self._hosts.items()):
            if now < w[0]:
                continue
            if w[1]:
                log.warning("raft port: dropped %d more connections from %s in the last %.0f s (last: %s)",
                            w[1], host, self.window_s, w[2])
                self._hosts[host] = [now + self.window_s, 0, w[2]]
            else:
                del self._hosts[host]


class _GuardedTransport(TCPTransport):  # type: ignore[misc]
    """TCP transport that persists before sending, tracks heartbeats for quorum
    knowledge, and guards the Raft port against unauthenticated peers (module doc)."""

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
        self._drop_log = _DropLog()
        self.bad_connections = 0                    # incoming connections dropped before authenticating
        super().__init__(syncObj, selfNode, otherNodes)

    def _createServer(self) -> None:  # noqa: N802 - pysyncobj API
        super()._createServer()
        if type(self._server) is TcpServer:
            self._server.__class__ = _GuardedServer

    def addNode(self, node: Any) -> None:  # noqa: N802 - pysyncobj API
        super().addNode(node)
        conn = self._connections.get(node)
        if type(conn) is TcpConnection:  # our outgoing connection to node
            conn.__class__ = _CappedConnection
            conn.harepl_peer = f"member {node.address}"

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
        if self._unknownConnections:
            self._expire_unauthenticated(now)
        self._drop_log.flush(now)
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
        if self._unknownConnections:
            oldest = min(getattr(c, "harepl_accepted_at", 0.0) for c in self._unknownConnections)
            wait = min(wait, oldest + PRE_AUTH_TIMEOUT_S - time.monotonic())
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
        if type(conn) is TcpConnection:
            conn.__class__ = _CappedConnection
        conn.harepl_incoming = True
        conn.harepl_accepted_at = time.monotonic()
        try:
            sock = conn._TcpConnection__socket  # pinned 0.3.17: only to name the peer in the log
            host, port = sock.getpeername()[:2]
            conn.harepl_peer = f"{host}:{port}"
        except Exception:  # noqa: BLE001
            pass
        super()._onNewIncomingConnection(conn)
        if len(self._unknownConnections) > MAX_UNAUTHENTICATED:
            oldest = min(self._unknownConnections, key=lambda c: getattr(c, "harepl_accepted_at", 0.0))
            oldest.drop(f"did not authenticate: more than {MAX_UNAUTHENTICATED} connections in the key "
                        "exchange at once (the oldest is dropped)")

    def _onIncomingMessageReceived(self, conn: Any, message: Any) -> None:  # noqa: N802
        if conn.sendRandKey and not (isinstance(message, str)
                                     and (message in self._nodeAddrToNode or message == "readonly")):
            # the peer has the cluster secret but names no member (a removed node, stale
            # [[nodes]]) or sends a utility command: pysyncobj drops it silently (or raises
            # on an unhashable list)
            what = repr(message)[:80] if isinstance(message, str) else f"a {type(message).__name__} message"
            conn.drop(f"refused: has the cluster secret but {what} is not a member")
            self._unknownConnections.discard(conn)
            return
        super()._onIncomingMessageReceived(conn, message)
        if conn not in self._unknownConnections and conn.state != CONNECTION_STATE.DISCONNECTED:
            conn.harepl_named = True

    def _expire_unauthenticated(self, now: float) -> None:
        # counted to the end of the last poll, not to now: what the peer sent by then has
        # been read, so a stall of this thread cannot fail a member's exchange that its
        # peer finished in time
        polled = getattr(self._syncObj._poller, "polled_at", now)
        for conn in list(self._unknownConnections):
            if polled - getattr(conn, "harepl_accepted_at", polled) > PRE_AUTH_TIMEOUT_S:
                conn.drop(f"did not authenticate within {PRE_AUTH_TIMEOUT_S:g} s")

    def _onDisconnected(self, conn: Any) -> None:  # noqa: N802
        reason = getattr(conn, "harepl_drop_reason", None)
        unauthenticated = conn in self._unknownConnections
        if unauthenticated:
            # never authenticated: wrong cluster secret, garbage, a port scan, not a member
            self.bad_connections += 1
            reason = reason or "closed by the peer before authenticating"
        if reason is not None:
            conn.harepl_drop_reason = None  # a dialled connection object is reused
            self._drop_log.note(getattr(conn, "harepl_peer", "unknown peer"), reason, time.monotonic())
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
        self.polled_at = -1e18  # monotonic end of the last poll

    def subscribe(self, descr: Any, callback: Any, eventMask: Any) -> None:  # noqa: N803 - pysyncobj API
        self._inner.subscribe(descr, callback, eventMask)

    def unsubscribe(self, descr: Any) -> None:
        self._inner.unsubscribe(descr)

    def poll(self, timeout: float) -> None:
        self._inner.poll(min(timeout, self._bound_s()))
        self.polled_at = time.monotonic()  # every ready socket has been read
