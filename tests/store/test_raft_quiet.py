"""An idle or lightly used store sends fewer messages (each costs a wake-up of the Raft
thread on both ends): followers skip the answer to an append_entries that only carries a
new commit index, and the leader's keepalives are not sent on connections its heartbeats
keep alive.  Three real members on real sockets in this process; every commit still
reaches every member."""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harepl.store import vocabulary as C
from harepl.store.client import Client
from harepl.store.raft import StoreNode
from harepl.store.raft import transport as T

pytestmark = pytest.mark.timeout(120)


def _port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def _until(pred: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s  # hang protection only
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def members() -> Iterator[list[StoreNode]]:
    addrs = [f"127.0.0.1:{_port()}" for _ in range(3)]
    nodes = [StoreNode(a, addrs, tempfile.mkdtemp(prefix="quiet-"), "test-secret") for a in addrs]
    yield nodes
    for n in nodes:
        n.stop()


def test_commit_only_appends_are_not_answered_and_all_members_apply(members: list[StoreNode]) -> None:
    _until(lambda: sum(n.is_leader() for n in members) == 1 and all(n.has_quorum() for n in members),
           "a quorate leader")
    leader = next(n for n in members if n.is_leader())
    followers = [n for n in members if n is not leader]
    sent: list[tuple[Any, dict[str, Any]]] = []
    real_send = T.TCPTransport.send

    def spy(self: Any, node: Any, message: Any) -> bool:
        if self is leader.transport and isinstance(message, dict):
            sent.append((node, message))
        return bool(real_send(self, node, message))

    T.TCPTransport.send = spy  # type: ignore[method-assign]
    try:
        client = Client(leader)
        for _ in range(20):
            client.submit_checked(C.noop(), 5.0)
        # a follower's own command: it is answered (apply_command_response) and applied there
        Client(followers[0]).submit_checked(C.noop(), 5.0)
    finally:
        T.TCPTransport.send = real_send  # type: ignore[method-assign]
    target = leader.status()["last_applied"]
    _until(lambda: all(n.status()["last_applied"] >= target for n in followers), "followers applying all")
    marked = [m for _n, m in sent if m.get("type") == "append_entries" and m.get(T._NO_ACK)]
    assert marked, "the leader sent no commit-only append_entries"
    assert all(not m.get("entries") for m in marked)  # entries always get an answer
    assert sum(f.transport.acks_skipped for f in followers) >= 1
    # the followers' answers to entries still count: commits kept coming (21 above), and
    # the leader's view of both followers is complete
    assert all(n.status()["commit_index"] >= target for n in members)


def test_coalesced_append_with_entries_is_always_answered() -> None:
    commit_only = {"type": "append_entries", "term": 2, "commit_index": 5, "entries": [],
                   "prevLogIdx": 5, "prevLogTerm": 2, T._NO_ACK: True}
    with_entry = {"type": "append_entries", "term": 2, "commit_index": 5, "entries": [(b"x", 6, 2)],
                  "prevLogIdx": 5, "prevLogTerm": 2}
    merged = T._coalesce([("n", commit_only), ("n", with_entry)])
    assert len(merged) == 1 and merged[0][1]["entries"] and T._NO_ACK not in merged[0][1]
    both_empty = T._coalesce([("n", commit_only), ("n", dict(commit_only, commit_index=6))])
    assert both_empty[0][1].get(T._NO_ACK) and both_empty[0][1]["commit_index"] == 6


def test_leader_sends_no_keepalive_on_connections_its_heartbeats_keep_alive(members: list[StoreNode]) -> None:
    _until(lambda: sum(n.is_leader() for n in members) == 1 and all(n.has_quorum() for n in members),
           "a quorate leader")
    leader = next(n for n in members if n.is_leader())
    followers = [n for n in members if n is not leader]
    keepalives: dict[tuple[str, str], int] = {}
    real_send = T.TCPTransport.send
    by_transport = {id(n.transport): n.self_addr for n in members}

    def spy(self: Any, node: Any, message: Any) -> bool:
        if message == T._KEEPALIVE:
            key = (by_transport.get(id(self), "?"), str(node.id))
            keepalives[key] = keepalives.get(key, 0) + 1
        return bool(real_send(self, node, message))

    T.TCPTransport.send = spy  # type: ignore[method-assign]
    try:
        # the followers never talk to each other but through keepalives: wait for both
        a, b = followers[0].self_addr, followers[1].self_addr
        _until(lambda: keepalives.get((a, b), 0) >= 3 and keepalives.get((b, a), 0) >= 3,
               "keepalives between the followers")
    finally:
        T.TCPTransport.send = real_send  # type: ignore[method-assign]
    # the leader's heartbeats (every 0.1 s) keep its connections read; a keepalive there
    # would need a 0.5 s gap in its heartbeats (possible only on a stalled machine)
    from_leader = sum(v for (src, _dst), v in keepalives.items() if src == leader.self_addr)
    between_followers = keepalives[(a, b)] + keepalives[(b, a)]
    assert from_leader < between_followers
