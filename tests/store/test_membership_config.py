"""Which membership a restarted store member uses when its configured peers are stale
(pysyncobj 0.3.17, dynamicMembershipChange=True), with real member processes.

What pysyncobj does (read in syncobj.py, checked here): a member starts with its
configured peers; loading a snapshot replaces them with the membership stored in the
snapshot; committed membership entries in the journal are replayed on top at the first
ticks. So the committed membership wins over a stale peer list whether the change is in
the journal or already in a snapshot (the daemon's TOML `[[nodes]]` is such a list).
"""

from __future__ import annotations

import os
import time

import pytest

from harepl.store import vocabulary as C
from tests.support.localcluster import Cluster, Member

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


def _members(m: Member) -> list[str]:
    return sorted(m.call({"call": "status"})["members"])


def _wait_members(m: Member, want: list[str], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while _members(m) != sorted(want):
        assert time.monotonic() < deadline, f"{m.addr}: members {_members(m)}, want {sorted(want)}"
        time.sleep(0.1)


def test_restart_with_stale_peers_keeps_the_committed_membership(make_cluster) -> None:
    c: Cluster = make_cluster(4, start=False)
    a, b, d, new = c.members
    first3 = ",".join(m.addr for m in (a, b, d))
    for m in (a, b, d):
        c.start(m, peers=first3)
    leader = c.wait_leader([a, b, d])
    c.start(new, peers=c.peers)  # the joining member lists everyone, itself included
    leader.call({"call": "member", "action": "add", "addr": new.addr, "timeout": 10})
    last = c.submit(new, C.noop())
    c.wait_applied(c.members, last["seq"])
    all4 = [m.addr for m in c.members]
    # one follower takes a snapshot (membership inside it), another keeps only its journal
    followers = [m for m in (a, b, d) if m is not leader]
    snap, journal_only = followers
    snap.call({"call": "compact"})
    snapshot = os.path.join(snap.data_dir, "raft.snapshot")
    deadline = time.monotonic() + 20
    while not os.path.exists(snapshot):  # pysyncobj writes it on its next ticks
        assert time.monotonic() < deadline, "no snapshot written"
        time.sleep(0.1)
    assert not os.path.exists(os.path.join(journal_only.data_dir, "raft.snapshot"))
    for m in (snap, journal_only):
        c.kill(m)
        c.start(m, peers=first3)  # stale: without the added member
        _wait_members(m, all4)
    # remove a member; a restart that still lists it does not bring it back
    leader = c.wait_leader([a, b, d, new])
    gone = next(m for m in (a, b, d) if m is not leader and m is not journal_only)
    leader.call({"call": "member", "action": "remove", "addr": gone.addr, "timeout": 10})
    c.kill(gone)
    rest = [m.addr for m in c.members if m is not gone]
    c.kill(journal_only)
    c.start(journal_only, peers=c.peers)  # stale: still lists the removed member
    _wait_members(journal_only, rest)
    assert c.submit(journal_only, C.noop())["ok"]
