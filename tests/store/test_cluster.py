"""Real store member processes on 127.0.0.1: election, commits, faults, durability.

No mocks: each member is a `tests/support/store_node.py` process with real pysyncobj on real
sockets and its journal/snapshot on disk.  Timings are never asserted except the
functional requirement that a minority learns it lost quorum within the renewal
timeout.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

from harepl.store import vocabulary as C
from harepl.store.leases import LeaseJudge
from tests.support.localcluster import STORE_NODE, Cluster, Member

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

#: the LRM renewal timeout of the 'default' profile (lease_local_s, docs/safety.md)
RENEWAL_TIMEOUT_S = 5.0


def result_everywhere(c: Cluster, members: list[Member], cid: str) -> list[dict]:
    return [m.call({"call": "read", "what": "result_of", "args": [cid]}) for m in members]


def test_three_nodes_elect_a_leader_and_commit_from_any_node(make_cluster) -> None:
    c = make_cluster(3)
    leader = c.wait_leader()
    leaders = [m for m in c.members if m.call({"call": "status"})["state"] == "leader"]
    assert leaders == [leader]
    for i, m in enumerate(c.members):
        r = c.submit(m, C.node_add(f"n{i}"))
        assert r["ok"], r
    nodes = c.members[0].call({"call": "read", "what": "nodes"})
    assert sorted(nodes) == ["n0", "n1", "n2"]
    ds = c.dumps()
    assert ds[0] == ds[1] == ds[2]


def test_sigkill_leader_elects_new_leader_and_loses_no_acknowledged_write(make_cluster) -> None:
    c = make_cluster(3)
    leader = c.wait_leader()
    follower = next(m for m in c.members if m is not leader)
    acked = []
    for i in range(30):
        cmd = C.crm_command_enqueue(f"migrate vm:{i} n2")
        assert c.submit(follower if i % 2 else leader, cmd)["ok"]
        acked.append(cmd["id"])
    c.kill(leader)
    survivors = [m for m in c.members if m is not leader]
    new_leader = c.wait_leader(survivors)
    assert new_leader is not leader
    for cid in acked:
        assert all(r is not None and r["ok"] for r in result_everywhere(c, survivors, cid))
    assert c.submit(new_leader, C.noop())["ok"]
    # the killed member restarts from its journal and catches up
    c.start(leader)
    last = c.submit(new_leader, C.crm_command_enqueue("relocate vm:1 n3"))
    c.wait_applied(c.members, last["seq"])
    for cid in acked:
        assert leader.call({"call": "read", "what": "result_of", "args": [cid], "linearizable": False})["ok"]
    ds = c.dumps(c.members)
    assert ds[0] == ds[1] == ds[2]


def test_minority_cannot_commit_and_knows_within_the_renewal_timeout(make_cluster) -> None:
    c = make_cluster(3)
    leader = c.wait_leader()
    assert c.submit(leader, C.noop())["ok"]
    # pause the two others: the leader is now alone in a minority
    others = [m for m in c.members if m is not leader]
    for m in others:
        c.pause(m)
    t0 = time.monotonic()
    knew_after = None
    while time.monotonic() - t0 < RENEWAL_TIMEOUT_S:
        if not leader.call({"call": "status"})["quorum"]:
            knew_after = time.monotonic() - t0
            break
        time.sleep(0.02)
    assert knew_after is not None, "minority did not learn it lost quorum within the renewal timeout"
    # and the cut-off leader steps down (pysyncobj's default leaderFallbackTimeout: 30 s)
    while leader.call({"call": "status"})["state"] == "leader":
        assert time.monotonic() - t0 < RENEWAL_TIMEOUT_S, "cut-off leader still claims leadership"
        time.sleep(0.02)
    st = leader.call({"call": "status"})
    assert st["quorum"] is False
    with pytest.raises(RuntimeError, match="StoreUnavailable"):
        c.submit(leader, C.noop(), timeout_s=1.0)
    for m in others:
        c.resume(m)
    c.wait_leader()
    assert c.submit(leader, C.noop(), timeout_s=10)["ok"]


def test_restart_after_sigkill_recovers_from_journal_and_snapshot(make_cluster) -> None:
    c = make_cluster(3, extra_args=["--compact-entries", "40"])
    leader = c.wait_leader()
    acked = []
    for i in range(120):
        cmd = C.crm_command_enqueue(f"stop vm:{i} 10")
        assert c.submit(c.members[i % 3], cmd)["ok"]
        acked.append(cmd["id"])
    # one follower dies and misses entries the others compact away: it must get a snapshot
    lagging = next(m for m in c.members if m is not leader)
    c.kill(lagging)
    for i in range(120, 200):
        cmd = C.crm_command_enqueue(f"stop vm:{i} 10")
        assert c.submit(leader, cmd)["ok"]
        acked.append(cmd["id"])
    for m in c.members:
        assert os.path.exists(os.path.join(m.data_dir, "raft.snapshot")), m.addr
    # the whole cluster is SIGKILLed: every acknowledged entry must come back
    for m in c.members:
        if m.proc is not None and m.proc.poll() is None:
            c.kill(m)
    c.start_all()
    new_leader = c.wait_leader()
    last = c.submit(new_leader, C.noop())
    c.wait_applied(c.members, last["seq"])
    for m in c.members:
        q = m.call({"call": "read", "what": "crm_commands", "linearizable": False})
        assert len(q) == 200, m.addr
    for cid in acked[::7]:
        assert all(r["ok"] for r in result_everywhere(c, c.members, cid))
    ds = c.dumps(c.members)
    assert ds[0] == ds[1] == ds[2]


def test_stale_lease_holder_has_every_command_rejected_and_recorded(make_cluster, tmp_path) -> None:
    c = make_cluster(3)
    c.wait_leader()
    via = c.members[0]
    flag, out = str(tmp_path / "resumed"), str(tmp_path / "holder.out")
    holder = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "holder.py"),
                               via.control, flag, out])
    try:
        deadline = time.monotonic() + 20
        while not (os.path.exists(out) and open(out).read().count("\n") >= 4):
            assert time.monotonic() < deadline and holder.poll() is None
            time.sleep(0.05)
        holder.send_signal(signal.SIGSTOP)
        # a new master judges the lease on its own monotonic clock, then takes it (CAS)
        judge = LeaseJudge(lease_timeout_s=1.0, started_at=time.monotonic())
        taker = c.members[2]
        while True:
            lease = taker.call({"call": "read", "what": "lease", "args": ["manager"]})
            judge.observe("manager", lease["epoch"], lease["seq"], lease["holder"], time.monotonic())
            if judge.expired("manager", time.monotonic()):
                break
            time.sleep(0.1)
        epoch, seq = judge.seen("manager")
        r = c.submit(taker, C.lease_acquire("manager", "new-master", epoch, seq))
        assert r["ok"] and r["epoch"] == epoch + 1, r
        assert c.submit(taker, C.manager_status_set({"master_node": "new-master"}, r["epoch"]))["ok"]
        open(flag, "w").close()
        holder.send_signal(signal.SIGCONT)
        assert holder.wait(30) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
    import json

    lines = [json.loads(x) for x in open(out)]
    late = [x for x in lines if x["after_resume"]]
    assert len(late) >= 10
    assert all(not x["result"]["ok"] and x["result"]["reason"] == "stale_epoch" for x in late), late
    for m in c.members:
        assert m.call({"call": "read", "what": "manager_status"}) == {"master_node": "new-master"}
        rejected = {e["id"] for e in m.call({"call": "read", "what": "events", "args": [1000, True]})}
        assert {x["id"] for x in late} <= rejected


def test_constraint_violation_is_a_rejection_everywhere_and_cluster_keeps_committing(make_cluster) -> None:
    c = make_cluster(3)
    c.wait_leader()
    bad = C.resource_add("vm:100", {"node": "n1", "group": "does-not-exist"})
    r = c.submit(c.members[1], bad)
    assert not r["ok"] and r["reason"] == "constraint"
    for m in c.members:
        assert m.call({"call": "read", "what": "result_of", "args": [bad["id"]]}) == r
    for i in range(20):
        assert c.submit(c.members[i % 3], C.group_set(f"g{i}", {"nodes": {"n1": 1}}))["ok"]
    assert c.submit(c.members[0], C.resource_add("vm:100", {"node": "n1", "group": "g3"}))["ok"]
    ds = c.dumps()
    assert ds[0] == ds[1] == ds[2]


def _send_raw(addr: str, payload: bytes) -> None:
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(payload)
        s.settimeout(5)
        try:
            s.recv(100)  # the member closes the connection on us
        except (TimeoutError, ConnectionResetError):
            pass


def test_garbage_and_wrong_secret_on_raft_port_are_logged_and_harmless(make_cluster) -> None:
    import base64
    import struct
    import zlib

    from cryptography.fernet import Fernet

    c = make_cluster(3)
    leader = c.wait_leader()
    before_cmd = C.crm_command_enqueue("migrate vm:1 n2")
    assert c.submit(leader, before_cmd)["ok"]
    target = c.members[1]
    _send_raw(target.addr, os.urandom(3000))
    _send_raw(target.addr, struct.pack("i", 2**31 - 1) + b"x" * 100)
    # a well-framed message encrypted with another secret (what a wrong --secret-file sends)
    token = Fernet(base64.urlsafe_b64encode(os.urandom(32))).encrypt(zlib.compress(b"\x80\x04N."))
    _send_raw(target.addr, struct.pack("i", len(token)) + token)
    st = target.call({"call": "status"})
    assert st["bad_connections"] >= 2
    assert target.proc is not None and target.proc.poll() is None
    log = target.log()
    assert log.count("did not authenticate") == 1 and "Traceback" not in log  # one line per source per 10 s
    r = c.submit(target, C.noop())
    assert r["ok"]
    for m in c.members:
        assert m.call({"call": "read", "what": "result_of", "args": [before_cmd["id"]]})["ok"]


def test_member_refuses_to_start_without_a_usable_secret(tmp_path) -> None:
    base = [*STORE_NODE, "--addr", "127.0.0.1:1", "--peers", "127.0.0.1:1",
            "--data-dir", str(tmp_path / "d")]
    p = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "without a cluster secret" in p.stderr
    sec = tmp_path / "secret"
    sec.write_text("s3cret")
    sec.chmod(0o644)
    p = subprocess.run([*base, "--secret-file", str(sec)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "chmod 600" in p.stderr
    sec.write_text("")
    sec.chmod(0o600)
    p = subprocess.run([*base, "--secret-file", str(sec)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "empty" in p.stderr


def test_data_files_are_root_only(make_cluster) -> None:
    c = make_cluster(3, extra_args=["--compact-entries", "20"])
    leader = c.wait_leader()
    for _ in range(40):
        c.submit(leader, C.noop())
    m = c.members[0]
    assert stat.S_IMODE(os.stat(m.data_dir).st_mode) == 0o700
    for name in ("raft.journal", "raft.journal.meta", "raft.snapshot"):
        p = os.path.join(m.data_dir, name)
        assert os.path.exists(p), name
        assert stat.S_IMODE(os.stat(p).st_mode) & 0o077 == 0, name


def test_disk_full_stops_only_that_member_with_a_clear_line(make_cluster) -> None:
    c = make_cluster(3, start=False)
    small = c.members[2]
    c.start(c.members[0])
    c.start(c.members[1])
    c.start(small, extra=["--max-db-pages", "40"])
    c.wait_leader()
    via = c.members[0]
    big = "x" * 200_000
    r = c.submit(via, C.group_set("big", {"nodes": {"n1": 1}, "comment": big}), timeout_s=20)
    assert r["ok"], r
    assert small.proc is not None and small.proc.wait(30) == 70
    assert "stopping this member: local fault while applying" in small.log()
    for _ in range(5):  # the two others keep committing (a new leader if `small` led)
        assert c.submit(via, C.noop(), timeout_s=20)["ok"]


def test_timed_out_call_that_commits_later_is_applied_once_on_retry(make_cluster) -> None:
    c = make_cluster(3)
    leader = c.wait_leader()
    follower = next(m for m in c.members if m is not leader)
    c.pause(leader)
    cmd = C.crm_command_enqueue("migrate vm:7 n3")
    with pytest.raises(RuntimeError, match="StoreUnavailable"):
        c.submit(follower, cmd, timeout_s=0.3)  # forwarded to the paused leader, or queued
    c.resume(leader)
    c.wait_leader()
    r = c.submit(follower, cmd)  # retry with the same id
    assert r["ok"]
    q = follower.call({"call": "read", "what": "crm_commands"})
    assert [x[1] for x in q].count("migrate vm:7 n3") == 1


def test_membership_add_and_remove_one_at_a_time(make_cluster) -> None:
    c = make_cluster(4, start=False)
    first3 = ",".join(m.addr for m in c.members[:3])
    for m in c.members[:3]:
        c.start(m, peers=first3)
    leader = c.wait_leader(c.members[:3])
    new = c.members[3]
    c.start(new, peers=c.peers)
    # right after an election the leader may not have heard from every follower yet and
    # rightly refuses ("would lose quorum"): an operator would try again a moment later
    deadline = time.monotonic() + 20
    while True:
        try:
            members = leader.call({"call": "member", "action": "add", "addr": new.addr, "timeout": 10})
            break
        except RuntimeError as exc:
            if "would lose quorum" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert new.addr in members
    assert c.submit(new, C.noop())["ok"]
    last = c.submit(leader, C.noop())
    c.wait_applied(c.members, last["seq"])
    ds = c.dumps(c.members)
    assert len(set(ds)) == 1
    # remove it again; then with one of three paused, removing a live one would lose quorum
    members = leader.call({"call": "member", "action": "remove", "addr": new.addr, "timeout": 10})
    assert new.addr not in members
    c.kill(new)
    others = [m for m in c.members[:3] if m is not leader]
    c.pause(others[0])
    time.sleep(1.5)
    with pytest.raises(RuntimeError, match="would lose quorum"):
        leader.call({"call": "member", "action": "remove", "addr": others[1].addr})
    c.resume(others[0])


def test_five_nodes_survive_leader_sigkill(make_cluster) -> None:
    c = make_cluster(5)
    leader = c.wait_leader()
    acked = []
    for i in range(25):
        cmd = C.crm_command_enqueue(f"migrate vm:{i} n1")
        assert c.submit(c.members[i % 5], cmd)["ok"]
        acked.append(cmd["id"])
    c.kill(leader)
    survivors = [m for m in c.members if m is not leader]
    c.wait_leader(survivors)
    c.kill(survivors[0])  # two of five down: still a majority
    rest = survivors[1:]
    new_leader = c.wait_leader(rest)
    last = c.submit(new_leader, C.noop())
    c.wait_applied(rest, last["seq"])
    for cid in acked:
        assert all(r["ok"] for r in result_everywhere(c, rest, cid))
    ds = c.dumps(rest)
    assert len(set(ds)) == 1



def test_endless_message_on_raft_port_is_cut_off(make_cluster) -> None:
    """A peer announcing a 2 GB message and streaming bytes is dropped at once
    (pysyncobj alone would buffer everything it sends)."""
    import struct

    limit = 64 << 20  # stream this much; the member must cut us off long before

    c = make_cluster(3)
    c.wait_leader()
    target = c.members[0]
    host, port = target.addr.rsplit(":", 1)
    sent = 0
    chunk = b"\0" * (1 << 20)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        try:
            s.sendall(struct.pack("i", 2**31 - 1))
            while sent < limit:
                s.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert sent < limit, "the member kept buffering"
    assert target.proc is not None and target.proc.poll() is None
    assert c.submit(target, C.noop())["ok"]
