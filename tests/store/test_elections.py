"""Pre-vote and leader stickiness (harepl/store/raft/election.py): the decision rules, and
a member whose term got ahead rejoining (real processes; the partition cases are in
tests/netns/test_raft_stickiness.py)."""

from __future__ import annotations

import os

from pysyncobj.journal import FileJournal

from harepl.store import vocabulary as C
from harepl.store.raft.election import CANDIDATE, FOLLOWER, LEADER, VoterView, grant_prevote, has_fresh_leader


def view(**kw: object) -> VoterView:
    base: dict[str, object] = dict(term=5, state=FOLLOWER, leader_heard_ago_s=None, fresh_followers=0,
                                   cluster_size=3, last_log_term=5, last_log_index=10, sticky_s=0.6)
    base.update(kw)
    return VoterView(**base)  # type: ignore[arg-type]


def test_a_follower_that_heard_its_leader_recently_denies() -> None:
    assert has_fresh_leader(view(leader_heard_ago_s=0.2))
    assert not grant_prevote(view(leader_heard_ago_s=0.2), 6, 5, 10)
    assert not has_fresh_leader(view(leader_heard_ago_s=0.7))
    assert grant_prevote(view(leader_heard_ago_s=0.7), 6, 5, 10)
    assert grant_prevote(view(state=CANDIDATE), 6, 5, 10)


def test_a_leader_denies_while_a_majority_answers() -> None:
    assert has_fresh_leader(view(state=LEADER, fresh_followers=1))           # 2 of 3
    assert not has_fresh_leader(view(state=LEADER, fresh_followers=0))       # alone
    assert not has_fresh_leader(view(state=LEADER, fresh_followers=1, cluster_size=5))
    assert has_fresh_leader(view(state=LEADER, fresh_followers=2, cluster_size=5))


def test_prevote_needs_a_new_term_and_an_up_to_date_log() -> None:
    v = view()
    assert not grant_prevote(v, 5, 5, 10)     # not a new term for this voter
    assert not grant_prevote(v, 6, 4, 99)     # older last log term
    assert not grant_prevote(v, 6, 5, 9)      # same term, shorter log
    assert grant_prevote(v, 6, 5, 10) and grant_prevote(v, 6, 6, 1)


def test_member_whose_term_got_ahead_rejoins_and_catches_up(make_cluster) -> None:  # type: ignore[no-untyped-def]
    """A member restarts with a term above the leader's (as after a pre-vote that passed and
    an election that failed). pysyncobj drops the leader's lower-term append_entries
    silently and the sticky leader ignores the member's vote requests, so without the
    stale-term answer it never rejoined; with it the leader adopts the term, a new leader
    is elected and the member catches up."""
    c = make_cluster(3)
    leader = c.wait_leader()
    ahead = next(m for m in c.members if m is not leader)
    c.submit(leader, C.noop())
    term0 = leader.call({"call": "status"})["term"]
    c.kill(ahead)
    j = FileJournal(os.path.join(ahead.data_dir, "raft.journal"))
    j.setCurrentTerm(term0 + 5, None)
    j._destroy()
    for _ in range(20):  # written while it was down: it must fetch all of these
        c.submit(leader, C.noop())
    c.start(ahead)
    new_leader = c.wait_leader()
    last = c.submit(new_leader, C.noop())
    c.wait_applied(c.members, last["seq"])
    statuses = [m.call({"call": "status"}) for m in c.members]
    assert all(st["term"] > term0 + 5 for st in statuses), statuses
    assert sum(st["elections"]["stepped_down_stale"] for st in statuses) >= 1, statuses
