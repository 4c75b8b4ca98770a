"""`Membership` over three in-process store members (real pysyncobj on 127.0.0.1 sockets,
real SQLite): the cases the lab test cannot produce on purpose -- a change interrupted
between its Raft step and its node-list step, and two requests at once on one node."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from harepl.runtime.config import Member
from harepl.runtime.membership import Membership, MembershipError
from harepl.store.client import Client
from harepl.store.raft import RaftSettings, StoreNode
from tests.support.localcluster import free_ports

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def trio(tmp_path) -> Iterator[tuple[list[StoreNode], tuple[Member, ...]]]:  # type: ignore[no-untyped-def]
    ports = free_ports(3)
    members = tuple(Member(f"n{i + 1}", "127.0.0.1", p) for i, p in enumerate(ports))
    addrs = [m.raft_addr for m in members]
    nodes = [StoreNode(a, addrs, str(tmp_path / f"n{i}"), "test-secret", RaftSettings(quorum_timeout_s=1.0))
             for i, a in enumerate(addrs)]
    yield nodes, members
    for n in nodes:
        n.stop()


def _leader(nodes: list[StoreNode]) -> StoreNode:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for n in nodes:
            if n.is_leader() and len(n._responsive()) == len(nodes):
                return n
        time.sleep(0.05)
    raise AssertionError("no leader hearing everyone")


def test_an_interrupted_add_blocks_other_changes_until_repeated(trio) -> None:  # type: ignore[no-untyped-def]
    nodes, members = trio
    leader = _leader(nodes)
    client = Client(leader)
    client.barrier()
    name = next(m.name for m in members if m.raft_addr == leader.self_addr)
    m = Membership(name, members, client)
    ghost = f"127.0.0.1:{free_ports(1)[0]}"
    # the Raft step of an add done, the node-list step not (a daemon died in between)
    m._seed({mb.name: mb.raft_addr for mb in members})
    client.add_member(ghost, 10)
    view = m.view()
    assert [(r["raft_member"], r["ha_node"]) for r in view["members"] if r["addr"] == ghost] == [(True, False)]
    with pytest.raises(MembershipError) as e:
        m.add("n5", f"127.0.0.1:{free_ports(1)[0]}")
    assert e.value.status == 409 and "is a Raft member but not an HA node" in e.value.message
    # repeating that add completes it; the member has not caught up (never started), so
    # the next change waits, except removing it
    assert m.add("n4", ghost) == {"node": "n4", "addr": ghost, "added": True}
    assert {r["node"] for r in m.view()["members"] if r["ha_node"] and r["raft_member"]} == \
        {"n1", "n2", "n3", "n4"}
    with pytest.raises(MembershipError, match="node 'n4' .* joined but has not caught up"):
        m.add("n5", f"127.0.0.1:{free_ports(1)[0]}")
    assert m.remove("n4")["removed"]
    assert sorted(client.node.members()) == sorted(mb.raft_addr for mb in members)
    assert sorted(client.nodes()) == ["n1", "n2", "n3"]


def test_a_second_request_on_the_same_node_is_refused_while_one_runs(trio) -> None:  # type: ignore[no-untyped-def]
    nodes, members = trio
    leader = _leader(nodes)
    m = Membership("n1", members, Client(leader))
    assert m._lock.acquire(blocking=False)  # a change is running on this node
    try:
        with pytest.raises(MembershipError) as e:
            m.remove("n2")
        assert e.value.status == 409 and "in progress on this node" in e.value.message
    finally:
        m._lock.release()
    assert sorted(Client(leader).node.members()) == sorted(mb.raft_addr for mb in members)
