"""A full disk under one store member (issue 8 item 5).

pysyncobj's journal is memory-mapped and grew its file with ftruncate + mmap.resize: on
a full tmpfs or ext4 the ftruncate succeeds (a sparse file) and the first write to the
new page killed the member with SIGBUS, silently, again after every restart.  Now the
space is reserved first (posix_fallocate: ENOSPC, not SIGBUS), a write that cannot be
made stays pending in memory, nothing leaves the member before it is on disk, a leader
steps down, and the member resumes by itself once space is freed.

Each member's data directory is its own small tmpfs (root only: skipped otherwise); the
test fills one with a filler file and frees it again.  Members are real processes
(`tests/support/store_node.py`), so a SIGBUS would show as their exit signal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pysyncobj.journal import FileJournal

from harepl.store import vocabulary as C
from harepl.store.raft.durable import DiskFull, _DurableJournal
from tests.support.disk import fill
from tests.support.localcluster import Cluster, Member

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

CRITICAL = "CRITICAL store: disk full: cannot write"
RECOVERED = "writable again after"


# -- tmpfs mounts ---------------------------------------------------------------------------

def _mount_tmpfs(path: str, size: str) -> None:
    os.makedirs(path, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip()}): needs root")


def _umount(path: str) -> None:
    if subprocess.run(["umount", path], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", path], capture_output=True)  # something still holds it


@contextlib.contextmanager
def tmpfs(path: str, size: str = "8m") -> Iterator[str]:
    _mount_tmpfs(path, size)
    try:
        yield path
    finally:
        _umount(path)


@pytest.fixture
def on_tmpfs(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """Make a store cluster whose every member's data directory is its own tmpfs."""
    made: list[Cluster] = []
    mounts: list[str] = []

    def make(size: int = 3, extra_args: list[str] | None = None, tmpfs_size: str = "8m") -> Cluster:
        c = Cluster(str(tmp_path / f"c{len(made)}"), size, extra_args=extra_args or [])
        made.append(c)
        for m in c.members:
            _mount_tmpfs(m.data_dir, tmpfs_size)
            mounts.append(m.data_dir)
        c.start_all()
        return c

    yield make
    for c in made:
        for m in c.members:  # a SIGBUS is never an acceptable end, whatever the test did
            if m.proc is not None and m.proc.poll() is not None:
                assert m.proc.returncode != -signal.SIGBUS, f"{m.addr} died of SIGBUS"
        c.stop_all()
    for path in mounts:
        _umount(path)


# -- helpers ----------------------------------------------------------------------------------

def big_command(i: int) -> dict:
    # ~2 KB each: a few hundred of them make the full member's journal grow past its reserve
    return C.group_set(f"g{i}", {"nodes": {"n1": 1}, "comment": f"{i:05d}" + "x" * 2000})


def submit_many(c: Cluster, via: Member, n: int, acked: list[str], start: int = 0) -> None:
    for i in range(start, start + n):
        cmd = big_command(i)
        r = c.submit(via, cmd, timeout_s=20)
        assert r["ok"], r
        acked.append(cmd["id"])


def status(m: Member) -> dict:
    return m.call({"call": "status"})  # type: ignore[no-any-return]


def wait(fn, what: str, timeout_s: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def assert_stops_acknowledging(c: Cluster, full: Member) -> None:
    """A command submitted through the full member is not acknowledged while it is full
    (its forward to the leader waits for a journal sync that fails)."""
    with pytest.raises(RuntimeError, match="StoreUnavailable"):
        c.submit(full, C.noop(), timeout_s=2.0)


def assert_everything_everywhere(c: Cluster, acked: list[str]) -> None:
    for m in c.members:
        missing = [cid for cid in acked
                   if not (m.call({"call": "read", "what": "result_of", "args": [cid], "linearizable": False})
                           or {}).get("ok")]
        assert not missing, f"{m.addr} lost {len(missing)} acknowledged commands"
    ds = c.dumps(c.members)
    assert ds[0] == ds[1] == ds[2]


def assert_one_line_each(m: Member) -> None:
    text = m.log()
    assert text.count(CRITICAL) == 1, text[-3000:]
    assert text.count(RECOVERED) == 1, text[-3000:]
    assert "Traceback" not in text and "raft tick failed" not in text, text[-3000:]


# -- the journal itself -------------------------------------------------------------------------

def test_journal_on_a_full_tmpfs_keeps_writes_pending_and_writes_them_when_space_returns(tmp_path: Path) -> None:
    d = str(tmp_path / "j")
    with tmpfs(d, "1m"):
        path = os.path.join(d, "raft.journal")
        j = _DurableJournal.adopt(FileJournal(path), path, durable=True)
        j.add(b"first", 1, 1)
        j.sync()
        filler = fill(d)
        for idx in range(2, 400):  # ~400 KB: far beyond the journal's reserve
            j.add(b"%05d" % idx + b"y" * 1000, idx, 1)  # plain pysyncobj: SIGBUS here
        assert j._d_unwritten > 0 and j.disk.full
        with pytest.raises(DiskFull):
            j.sync()
        assert j.dirty  # the transport keeps holding every message
        j.deleteEntriesFrom(len(j) - 10)  # a new leader truncates pending entries
        assert [e[1] for e in j[-2:]] == [388, 389]
        os.unlink(filler)
        j.sync()
        assert not j.dirty and not j.disk.full and j._d_unwritten == 0
        j._destroy()
        reread = FileJournal(path)
        assert [e[1] for e in reread[0:len(reread)]] == list(range(1, 390))
        assert bytes(reread[-1][0]).startswith(b"00389")
        reread._destroy()


def test_compaction_without_room_for_a_new_journal_file_compacts_in_place(tmp_path: Path) -> None:
    d = str(tmp_path / "j")
    with tmpfs(d, "1m"):
        path = os.path.join(d, "raft.journal")
        j = _DurableJournal.adopt(FileJournal(path), path, durable=True)
        for idx in range(1, 101):
            j.add(b"%05d" % idx + b"z" * 500, idx, 1)
        j.sync()
        filler = fill(d)
        j.deleteEntriesTo(90)  # the snapshot covers entries 1..90
        assert [e[1] for e in j[0:len(j)]] == list(range(91, 101))
        assert not os.path.exists(path + ".compact")
        os.unlink(filler)
        j.sync()
        j._destroy()
        reread = FileJournal(path)
        assert [e[1] for e in reread[0:len(reread)]] == list(range(91, 101))
        reread._destroy()


# -- real members ---------------------------------------------------------------------------------

def test_full_disk_on_a_follower_stops_its_acks_others_commit_it_catches_up(on_tmpfs) -> None:
    c = on_tmpfs(3)
    leader = c.wait_leader()
    full = next(m for m in c.members if m is not leader)
    via = next(m for m in c.members if m is not leader and m is not full)
    acked: list[str] = []
    submit_many(c, via, 20, acked)
    filler = fill(full.data_dir)
    submit_many(c, via, 300, acked, start=20)  # the others keep committing
    assert full.proc is not None and full.proc.poll() is None  # no SIGBUS
    wait(lambda: CRITICAL in full.log(), "the critical line")
    assert_stops_acknowledging(c, full)
    behind = status(full)["last_applied"]
    os.unlink(filler)  # space returns: no restart
    wait(lambda: RECOVERED in full.log(), "the recovery line")
    last = c.submit(full, C.noop(), timeout_s=20)  # acknowledges again
    assert last["ok"]
    c.wait_applied(c.members, last["seq"])
    assert status(full)["last_applied"] > behind
    assert_everything_everywhere(c, acked)
    assert_one_line_each(full)
    # nothing it acknowledged is lost or torn on its own disk: a SIGKILL and a restart
    # rebuild it from its journal alone
    c.kill(full)
    c.start(full)
    last = c.submit(via, C.noop())
    c.wait_applied(c.members, last["seq"])
    assert_everything_everywhere(c, acked)


def test_full_disk_on_the_leader_makes_it_step_down_and_the_others_elect_a_leader(on_tmpfs) -> None:
    c = on_tmpfs(3)
    full = c.wait_leader()
    others = [m for m in c.members if m is not full]
    acked: list[str] = []
    submit_many(c, full, 10, acked)
    filler = fill(full.data_dir)
    # commands through the full leader: the first ones may still fit its journal's
    # reserve; then it cannot persist, steps down, and a new leader takes over
    for i in range(10, 200):
        cmd = big_command(i)
        try:
            if c.submit(full, cmd, timeout_s=3)["ok"]:
                acked.append(cmd["id"])
        except RuntimeError:
            break
    wait(lambda: "stepping down as leader" in full.log(), "the full leader to step down")
    new_leader = c.wait_leader(others)
    assert new_leader is not full
    submit_many(c, others[0], 100, acked, start=1000)
    assert status(full)["state"] != "leader"
    assert_stops_acknowledging(c, full)
    os.unlink(filler)
    wait(lambda: RECOVERED in full.log(), "the recovery line")
    last = c.submit(full, C.noop(), timeout_s=20)
    c.wait_applied(c.members, last["seq"])
    assert_everything_everywhere(c, acked)
    assert_one_line_each(full)


def test_member_restarted_on_a_full_disk_starts_waits_and_catches_up(on_tmpfs) -> None:
    c = on_tmpfs(3)
    leader = c.wait_leader()
    full = next(m for m in c.members if m is not leader)
    acked: list[str] = []
    submit_many(c, leader, 20, acked)
    filler = fill(full.data_dir)
    submit_many(c, leader, 200, acked, start=20)
    wait(lambda: CRITICAL in full.log(), "the critical line")
    c.kill(full)  # e.g. the watchdog fenced the node: it comes back to a disk still full
    c.start(full)  # no crash loop: it starts, says why it cannot take part, and waits
    submit_many(c, leader, 50, acked, start=220)
    wait(lambda: full.log().count(CRITICAL) == 2, "the restarted member's critical line")
    assert_stops_acknowledging(c, full)
    os.unlink(filler)
    last = c.submit(full, C.noop(), timeout_s=20)
    c.wait_applied(c.members, last["seq"])
    assert_everything_everywhere(c, acked)
    assert full.proc is not None and full.proc.poll() is None


def test_fresh_member_on_a_full_disk_says_why_in_one_line(tmp_path: Path) -> None:
    c = Cluster(str(tmp_path / "c"), 1)
    m = c.members[0]
    with tmpfs(m.data_dir, "256k"):
        fill(m.data_dir)
        p = subprocess.run(c.command(m), capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "No space left on device" in lines[0], p.stderr


def test_sqlite_full_while_applying_is_no_rejection_the_member_stops_and_replays_equal(make_cluster) -> None:
    """SQLITE_FULL (here: max_page_count) is this member's problem, not the command's:
    recording a rejection would make its copy differ.  It stops with one line; restarted
    without the cap it applies the same entry as the others did."""
    c = make_cluster(3)
    leader = c.wait_leader()
    small = next(m for m in c.members if m is not leader)
    c.kill(small)
    c.start(small, extra=["--max-db-pages", "40"])
    via = leader
    cmd = C.group_set("big", {"nodes": {"n1": 1}, "comment": "x" * 200_000})
    assert c.submit(via, cmd, timeout_s=20)["ok"]
    assert small.proc is not None and small.proc.wait(30) == 70
    assert small.log().count("stopping this member: local fault while applying") == 1
    acked = [cmd["id"]]
    submit_many(c, via, 10, acked)
    c.start(small)
    last = c.submit(via, C.noop())
    c.wait_applied(c.members, last["seq"])
    r = small.call({"call": "read", "what": "result_of", "args": [cmd["id"]], "linearizable": False})
    assert r["ok"], r  # applied, not recorded as a rejection
    assert_everything_everywhere(c, acked)

