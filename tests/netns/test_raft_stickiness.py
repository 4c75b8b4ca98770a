"""Partial partitions and rejoining nodes must not depose a healthy Raft leader (and a
partial partition ends in one hand-off, not a flap).

Three real store members (`tests/support/store_node.py`), each in its own network
namespace (tests/netns/netlab.py's Topology), talking real TCP. Without pre-vote and
leader stickiness (harepl/store/raft/election.py) both tests fail: the node that cannot
hear the leader bumps its term and its request_vote deposes the leader (found by the
Jepsen test, docs/testing.md). Nothing here asserts speed: only terms, leadership and
that every write committed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harepl.runtime.apiprobe import get_json
from harepl.store import vocabulary as C
from tests.netns.netlab import RAFT_PORT, Topology
from tests.support.localcluster import STORE_NODE, Cluster, Member

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]

NAMES = ("node1", "node2", "node3")


class NetStoreCluster(Cluster):
    """localcluster's Cluster with one namespace (own address) per member."""

    topo: Topology

    def name(self, m: Member) -> str:
        return NAMES[self.members.index(m)]

    start_timeout_s = 30.0

    def command(self, m: Member, peers: str | None = None, extra: list[str] | None = None) -> list[str]:
        # as before: the netns members take no extra arguments
        return ["ip", "netns", "exec", self.topo.ns(self.name(m)), *STORE_NODE,
                "--addr", m.addr, "--peers", peers or self.peers, "--data-dir", m.data_dir,
                "--secret-file", self.secret_file]

    def process_env(self) -> dict[str, str] | None:
        return dict(os.environ, PYTHONPATH=os.getcwd())


@pytest.fixture
def netstore(request: pytest.FixtureRequest) -> Iterator[NetStoreCluster]:
    topo = Topology(3)
    root = tempfile.mkdtemp(prefix="hs-", dir="/tmp")  # short: AF_UNIX paths <= 107 bytes
    c = NetStoreCluster(root, 3)
    c.topo = topo
    for m, name in zip(c.members, NAMES, strict=True):
        m.addr = f"{topo.address(name)}:{RAFT_PORT}"
    ok = False
    try:
        topo.setup()
        c.start_all()
        c.wait_leader()
        yield c
        ok = not (getattr(request.node, "rep_call", None) and request.node.rep_call.failed)
    finally:
        c.stop_all()
        errors = topo.teardown()
        if ok:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"store logs kept in {root}")
        assert not errors, errors


def status(m: Member) -> dict[str, Any]:
    return m.call({"call": "status"}, timeout_s=5)  # type: ignore[no-any-return]


class Watch:
    """Writes through `writer` and samples every member's status while `seconds` pass."""

    def __init__(self, c: NetStoreCluster) -> None:
        self.c = c
        self.samples: list[tuple[str, dict[str, Any]]] = []
        self.writes = 0
        self.failed: list[str] = []

    def run(self, writer: Member, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                self.c.submit(writer, C.noop(), timeout_s=3)
                self.writes += 1
            except RuntimeError as e:  # the member's one-line error (no leader, timeout)
                self.failed.append(str(e))
            for m in self.c.members:
                self.samples.append((self.c.name(m), status(m)))
            time.sleep(0.05)

    def terms(self, name: str) -> set[int]:
        return {st["term"] for n, st in self.samples if n == name}

    def states(self, name: str) -> set[str]:
        return {st["state"] for n, st in self.samples if n == name}


def roles(c: NetStoreCluster) -> tuple[Member, list[Member]]:
    leader = c.wait_leader()
    return leader, [m for m in c.members if m is not leader]


def test_partial_partition_hands_off_once_to_the_node_that_reaches_everyone(netstore: NetStoreCluster) -> None:
    """Leader <-> one follower cut, both still reach the third node. Before: the cut-off
    node's elections deposed the leader again and again (terms 1, 2, 4, ... in 10 s).
    Now: the cut-off node never starts an election (pre-vote denied), the leader keeps
    leading, and once the cut has lasted it hands leadership to the third node -- one
    planned election -- after which all three hear the leader again."""
    c = netstore
    leader, (cut_off, bridge) = roles(c)
    c.submit(leader, C.noop())
    term0 = status(leader)["term"]
    before = status(cut_off)["elections"]  # counters include the first election
    c.topo.cut(c.name(leader), c.name(cut_off))
    w = Watch(c)
    w.run(leader, 10.0)

    assert not w.failed, w.failed[:5]
    assert w.writes > 0
    # one term change at most, and only to the bridge: no flapping
    for name in NAMES:
        assert w.terms(name) <= {term0, term0 + 1}, (name, w.terms(name))
    leaders = {(st["term"], st["addr"]) for _, st in w.samples if st["state"] == "leader"}
    assert leaders <= {(term0, leader.addr), (term0 + 1, bridge.addr)}, leaders
    # the cut-off node's election timer fired, yet it never started an election
    after = status(cut_off)["elections"]
    assert after["prevotes_started"] > before["prevotes_started"], (before, after)
    assert after["prevotes_passed"] == before["prevotes_passed"], (before, after)
    # ... and it has a leader again: the bridge, reached by everyone
    assert status(leader)["elections"]["handoffs"] == 1
    for m in c.members:
        st = status(m)
        assert st["term"] == term0 + 1 and st["leader"] == bridge.addr and st["quorum"], st
    last = c.submit(cut_off, C.noop())  # through its own leader, while still cut
    c.wait_applied(c.members, last["seq"])

    # heal: nothing changes
    c.topo.uncut(c.name(leader), c.name(cut_off))
    last = c.submit(leader, C.noop())
    c.wait_applied(c.members, last["seq"])
    assert {status(m)["term"] for m in c.members} == {term0 + 1}


def test_rejoining_node_does_not_depose_the_majority_leader(netstore: NetStoreCluster) -> None:
    c = netstore
    leader, (lone, other) = roles(c)
    c.submit(leader, C.noop())
    term0 = status(leader)["term"]
    before = status(lone)["elections"]
    # cut `lone` off from everybody for longer than the election timeout (1.2 s) and the
    # connection timeout (2 s: its connections are declared dead)
    c.topo.partition(c.name(lone))
    w = Watch(c)
    w.run(leader, 4.0)
    while_away = status(lone)
    c.topo.heal(c.name(lone))
    w.run(leader, 5.0)

    assert not w.failed, w.failed[:5]
    assert w.terms(c.name(leader)) == {term0} and w.states(c.name(leader)) == {"leader"}, \
        (w.terms(c.name(leader)), w.states(c.name(leader)))
    assert w.terms(c.name(other)) == {term0}, w.terms(c.name(other))
    # it did time out, and never ran for election
    assert while_away["elections"]["prevotes_started"] > before["prevotes_started"], (before, while_away)
    assert status(lone)["elections"]["prevotes_passed"] == before["prevotes_passed"], (before, status(lone))
    # the rejoined node caught up with every write and follows the same leader
    last = c.submit(leader, C.noop())
    c.wait_applied([lone], last["seq"])
    st = status(lone)
    assert st["leader"] == leader.addr and st["term"] == term0, st


# -- the HA view: real daemons (tests/netns/conftest.py's netcluster) -----------------------

# lease_local_s 4 s (fast profile: 2 s, default: 5 s): the cut-off node is leaderless
# until the hand-off (two of its pre-votes, at most ~2.4 s), so its local lease must
# outlast that; 2 s does not always (see docs/testing.md)
@pytest.mark.timing(lease_local_s=4.0, lease_timeout_s=9.0)
def test_partial_partitions_leave_every_service_running(netcluster: Any) -> None:
    c = netcluster
    sids = [f"exec:p{i}" for i in range(1, 4)]
    for sid, node in zip(sids, NAMES, strict=True):
        c.add_exec("node1", sid, node)
    for sid, node in zip(sids, NAMES, strict=True):
        c.wait_running(sid, node=node)
    logs_at = {n: len(c.log(n)) for n in NAMES}
    # the Raft leader is not visible from outside; it is in at least one of two
    # different pairs (and a hand-off during the first cut moves it into the second)
    for a, b in (("node1", "node2"), ("node2", "node3")):
        c.topo.cut(a, b)
        time.sleep(6.0)  # the fault's duration, not a speed assertion
        quorate = {n: get_json(c.lab.node(n).api_socket, "/status", timeout_s=3.0)["quorate"] for n in NAMES}
        c.topo.uncut(a, b)
        assert all(quorate.values()), (a, b, quorate)  # everyone has a leader again
    for sid, node in zip(sids, NAMES, strict=True):
        ev = [(e["event"], e["node"]) for e in c.events(sid)]
        assert ev == [("start", node)], (sid, ev)  # never stopped, never moved
    for n in NAMES:
        new = c.log(n)[logs_at[n]:]
        assert "lost lease" not in new and "stopping all local services" not in new, (n, new[-3000:])
