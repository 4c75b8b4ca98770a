"""The Raft port against outsiders without the cluster secret (issue 8 item 3): real store
members on 127.0.0.0/8, probed by tests/support/raftprobe.py.

- a big garbage frame is dropped at its first bytes, costs no memory, moves no leader;
- idle unauthenticated connections are dropped after ~1 s, at most 128 wait at once;
- the port listens on the member's address, not on every interface;
- drops and refused peers are logged, one line per source host per 10 s with a count,
  and the daemon's node log receives the Raft layer's logging, rate-limited.

Timings are asserted only as generous bounds against hangs.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from pathlib import Path

import pytest

from harepl.runtime.nodelog import STORE_LOGGERS, NodeLog, StoreLogHandler
from harepl.store import vocabulary as C
from harepl.store.raft import StoreNode, transport
from tests.support import raftprobe
from tests.support.localcluster import Cluster, Member
from tests.support.store import free_port, one_member_store, wait_quorate

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


def port_of(m: Member) -> int:
    return int(m.addr.rsplit(":", 1)[1])


def peak_rss_mib(m: Member) -> float:
    assert m.proc is not None
    with open(f"/proc/{m.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):  # peak resident set size
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def wait_for(fn, what: str, timeout_s: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def terms(c: Cluster) -> list[int]:
    return [m.call({"call": "status"})["term"] for m in c.members]


def settled_terms(c: Cluster) -> list[int]:
    """The members' terms once every one has heard the leader's (a member just started
    reports 0 until its first heartbeat)."""
    return wait_for(lambda: len(set(t := terms(c))) == 1 and t, "every member at the leader's term")  # type: ignore[no-any-return]


def drop_lines(m: Member) -> list[str]:
    return [ln for ln in m.log().splitlines() if "raft port: dropped" in ln]


def test_big_garbage_frame_is_dropped_at_once_and_moves_no_leader(make_cluster) -> None:
    c = make_cluster(3)
    leader = c.wait_leader()
    assert c.submit(leader, C.noop())["ok"]
    follower = next(m for m in c.members if m is not leader)
    before_terms = settled_terms(c)
    for target in (follower, leader):
        peak = peak_rss_mib(target)
        r = raftprobe.bigframe(port_of(target), 60)
        # dropped at its first bytes: the 60 MiB never got through (pysyncobj read them
        # all, 17 s of a stalled tick thread here, and the leader lost its leadership)
        assert r["answer"] in ("reset", "closed"), r
        assert r["sent"] < 60 << 20, r
        assert r["seconds"] < 5, r  # generous: the drop is at the first read
        grown = peak_rss_mib(target) - peak
        assert grown < 16, f"{target.addr}: peak RSS grew by {grown:.1f} MiB"  # was +230 MiB
        # the line follows the close the probe saw (same thread, a moment later)
        lines = wait_for(lambda t=target: drop_lines(t), "the drop line", 10)
        assert len(lines) == 1 and "announced a frame of 60.0 MiB before the key exchange" in lines[0], lines
        assert "Traceback" not in target.log()
    assert c.wait_leader() is leader
    assert terms(c) == before_terms  # no election happened
    for m in c.members:
        assert c.submit(m, C.noop())["ok"]


def test_idle_unauthenticated_connections_are_dropped_after_a_second(make_cluster) -> None:
    c = make_cluster(3)
    leader = c.wait_leader()
    target = next(m for m in c.members if m is not leader)
    before_terms = settled_terms(c)
    socks, failed = raftprobe.flood(port_of(target), 300)
    try:
        assert failed == 0
        # the cluster works during the flood
        assert c.submit(target, C.noop())["ok"]
        # all dropped: pysyncobj held them forever (no read, no timeout)
        wait_for(lambda: raftprobe.still_open(socks) == 0, "the idle connections to be dropped", 10)
    finally:
        for s in socks:
            s.close()
    st = target.call({"call": "status"})
    assert st["bad_connections"] >= 300 and st["unauthenticated"] == 0
    assert c.wait_leader() is leader and terms(c) == before_terms
    assert c.submit(target, C.noop())["ok"]
    # one line at the first drop, the other 299 counted in one line when the 10 s window ends
    lines = wait_for(lambda: (ln := drop_lines(target)) and len(ln) >= 2 and ln, "the drop summary line", 20)
    assert len(lines) == 2, lines
    m = re.search(r"dropped (\d+) more connections from 127\.0\.0\.1 in the last 10 s", lines[1])
    assert m and int(m.group(1)) == 299, lines


def test_at_most_128_connections_wait_in_the_key_exchange(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(transport, "PRE_AUTH_TIMEOUT_S", 60.0)  # only the cap drops here
    node = one_member_store(tmp_path)
    port = int(node.self_addr.rsplit(":", 1)[1])
    socks, failed = raftprobe.flood(port, 200)
    try:
        assert failed == 0
        wait_for(lambda: node.status()["unauthenticated"] + node.status()["bad_connections"] == 200,
                 "the member to accept every connection")
        assert node.status()["unauthenticated"] == transport.MAX_UNAUTHENTICATED == 128
        assert node.status()["bad_connections"] == 72  # the oldest (accept order) were dropped
        wait_for(lambda: raftprobe.still_open(socks) == 128, "72 connections to be closed")
    finally:
        for s in socks:
            s.close()
        node.stop()


def _listening(port: int) -> list[str]:
    """Local addresses of the IPv4 sockets listening on `port` (/proc/net/tcp)."""
    out = []
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            local, _remote, state = line.split()[1:4]
            host_hex, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                out.append(socket.inet_ntoa(bytes.fromhex(host_hex)[::-1]))
    return out


def test_raft_port_listens_on_the_member_address_only(tmp_path) -> None:
    port = free_port()
    addr = f"127.0.0.3:{port}"
    node = wait_quorate(StoreNode(addr, [addr], str(tmp_path / "store"), "test-secret"))
    try:
        assert _listening(port) == ["127.0.0.3"]  # was 0.0.0.0: every interface
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        node.stop()


def test_outsiders_and_non_members_are_dropped_and_logged(make_cluster) -> None:
    c = make_cluster(3)
    leader = c.wait_leader()
    target = c.members[1]
    port = port_of(target)
    assert set(raftprobe.garbage(port).values()) <= {"closed", "reset"}
    assert set(raftprobe.oversize(port).values()) <= {"closed", "reset"}
    ws = raftprobe.wrongsecret(port)
    assert ws.pop("pwned") is False and set(ws.values()) <= {"closed", "reset"}, ws
    # one line for these 8 outsiders from one host (the others are counted for the summary)
    lines = drop_lines(target)
    assert len(lines) == 1 and "did not authenticate" in lines[0], lines
    # the right secret, but not a member (a removed node, a stale [[nodes]]): refused --
    # pysyncobj dropped it silently; logged here once its host's window is over
    with open(c.secret_file) as f:
        secret = f.read().strip()
    assert raftprobe.handshake(port, secret, "127.0.0.9:1", host="127.0.0.1") in ("closed", "reset")
    st = target.call({"call": "status"})
    assert st["bad_connections"] >= 9
    lines = wait_for(lambda: (ln := drop_lines(target)) and len(ln) >= 2 and ln, "the summary line", 20)
    assert "dropped 8 more connections from 127.0.0.1" in lines[1], lines
    assert "refused: has the cluster secret but '127.0.0.9:1' is not a member" in lines[1], lines
    assert "Traceback" not in target.log()
    assert c.wait_leader() is leader
    assert c.submit(target, C.noop())["ok"]


def test_key_exchange_frames_fit_the_pre_auth_cap() -> None:
    """The largest key-exchange frame -- a key and a 253-character host name -- framed
    as `_CappedConnection.send` frames it, is well below the cap."""
    from pysyncobj import pickle as ppickle
    from pysyncobj.encryptor import getEncryptor

    enc = getEncryptor("test-secret")
    msgs = [os.urandom(32), (os.urandom(32), os.urandom(32)), (os.urandom(32), "h" * 253 + ":65535")]
    sizes = [4 + len(enc.encrypt_at_time(transport._compress(ppickle.dumps(m)), 1)) for m in msgs]
    assert max(sizes) * 6 < transport.PRE_AUTH_MAX_FRAME_BYTES, sizes


@pytest.fixture
def store_loggers():  # type: ignore[no-untyped-def]
    saved = {n: logging.getLogger(n).level for n in ("harepl.store", "pysyncobj")}
    yield
    for n, level in saved.items():
        logging.getLogger(n).setLevel(level)


def test_raft_logging_reaches_the_node_log_rate_limited(tmp_path: Path, store_loggers) -> None:
    path = tmp_path / "harepl.log"
    nlog = NodeLog("n1", path)  # a node log with a file receives the Raft layer's logging
    handler = next(h for h in logging.getLogger("harepl.store").handlers
                   if isinstance(h, StoreLogHandler) and h.node_log is nlog)
    handler.window_s = 0.5
    raft = logging.getLogger("harepl.store.raft")
    for i in range(100):  # a flood of one kind of line
        raft.warning("raft port: something from %s", f"127.0.0.1:{i}")
    raft.info("raft 127.0.0.1:1: follower -> leader")
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        raft.exception("raft tick failed")
    logging.getLogger("pysyncobj.syncobj").warning("Failed to store full dump")
    text = path.read_text()
    assert text.count("raft port: something") == handler.burst == 5
    assert "harepl-store[" in text and "warn: raft port: something from 127.0.0.1:0" in text
    assert "info: raft 127.0.0.1:1: follower -> leader" in text
    # an exception is one line: type, text, innermost frames
    (tb,) = [ln for ln in text.splitlines() if "raft tick failed" in ln]
    assert re.search(r"err: raft tick failed: RuntimeError: boom \| second line "
                     r"\(traceback: test_raft_port\.py:\d+ test_raft_logging", tb), tb
    assert "Traceback" not in text
    assert "warn: pysyncobj.syncobj: Failed to store full dump" in text
    # the next window: a line again, with the count of those suppressed
    time.sleep(handler.window_s + 0.1)
    raft.warning("raft port: something from %s", "127.0.0.1:200")
    assert "(95 similar lines suppressed in the last" in path.read_text()
    # one node log per process receives it: a newer one takes over, closing detaches
    other = NodeLog("n2", tmp_path / "other.log")
    raft.warning("raft port: for the newer log")
    assert "for the newer log" not in path.read_text()
    assert "for the newer log" in (tmp_path / "other.log").read_text()
    nlog.close()
    other.close()
    assert not [h for n in STORE_LOGGERS for h in logging.getLogger(n).handlers if isinstance(h, StoreLogHandler)]
    # a node log without a file (stderr) or told not to takes none
    NodeLog("n3", None)
    NodeLog("n4", tmp_path / "n4.log", store_logs=False).close()
    assert not [h for n in STORE_LOGGERS for h in logging.getLogger(n).handlers if isinstance(h, StoreLogHandler)]


def test_pysyncobj_leaves_socket_inet_ntop_working() -> None:
    """pysyncobj.win_inet_pton replaces socket.inet_ntop with a Windows-only one on
    import; harepl.store.raft (imported above) restores it."""
    import pysyncobj.win_inet_pton  # noqa: F401 - the import that replaced it

    import harepl.store.raft  # noqa: F401
    assert socket.inet_ntop(socket.AF_INET, b"\x7f\x00\x00\x01") == "127.0.0.1"
    assert socket.inet_ntop(socket.AF_INET6, bytes(15) + b"\x01") == "::1"
