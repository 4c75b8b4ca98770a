"""pysyncobj truncates a follower's log after `prevLogIdx` -- already-applied entries
included -- and re-adds what the leader sent.  Raft says those are the same entries; the
journal checks it, and stops the member if an applied entry comes back different.
(A real pysyncobj FileJournal on disk; the applied index is given directly because a
live cluster never produces the divergent case on purpose.)"""

from __future__ import annotations

from pathlib import Path

from pysyncobj.journal import FileJournal

from harepl.store.raft.durable import _DurableJournal


def _journal(tmp_path: Path, applied: int) -> tuple[_DurableJournal, list[str]]:
    path = str(tmp_path / "raft.journal")
    j = _DurableJournal.adopt(FileJournal(path), path, durable=False)
    faults: list[str] = []
    j.applied_idx = lambda: applied
    j.on_divergence = faults.append
    return j, faults


def test_re_adding_the_same_applied_entries_is_fine(tmp_path: Path) -> None:
    j, faults = _journal(tmp_path, applied=4)
    for idx in range(1, 7):
        j.add(b"cmd%d" % idx, idx, 1)
    j.deleteEntriesFrom(2)              # position 2 = log index 3: 3, 4 applied; 5, 6 not
    for idx in range(3, 7):
        j.add(b"cmd%d" % idx, idx, 1)   # the leader re-sends the same entries
    assert faults == []
    assert [e[1] for e in j[0:len(j)]] == [1, 2, 3, 4, 5, 6]


def test_an_applied_entry_replaced_by_a_different_one_stops_the_member(tmp_path: Path) -> None:
    j, faults = _journal(tmp_path, applied=4)
    for idx in range(1, 7):
        j.add(b"cmd%d" % idx, idx, 1)
    j.deleteEntriesFrom(2)
    j.add(b"cmd3", 3, 1)
    j.add(b"other", 4, 2)               # applied index 4 comes back as something else
    j.add(b"cmd5", 5, 2)                # unapplied entries may change freely
    assert len(faults) == 1 and "log entry 4 was applied as term 1" in faults[0]
