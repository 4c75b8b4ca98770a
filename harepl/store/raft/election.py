"""Pre-vote and leader stickiness for pysyncobj 0.3.17 (Raft thesis section 9.6; part of
`harepl.store.raft`).

pysyncobj has neither, so a follower that cannot hear the leader while everyone else
can (a partial partition), or a node rejoining after a partition, bumps its term and its
`request_vote` deposes a healthy leader -- again and again under a partial partition.
`_ElectionGuard` (a mixin before SyncObj in `_Replica`) adds, by overriding, never by
copying:

1. *Leader stickiness (check-quorum)*: a node that heard its leader's append_entries
   within `sticky_s` (the minimum election timeout, on its own monotonic clock) ignores
   `request_vote` -- no vote, no adoption of the term; a leader ignores it while a
   majority of followers answered within `sticky_s`.  Ignoring a message is always safe
   (it is what a lost message does).
2. *Pre-vote*: when pysyncobj's election deadline passes, we first ask every peer
   `harepl_prevote` ("would you vote for me in term+1?").  A peer grants when it has no
   fresh leader (rule 1), the term would be new to it and our log is at least as
   up to date as its own; it changes no state either way.  Only when a majority granted
   do we let pysyncobj start the real election (term+1, request_vote).  So a node that
   cannot win -- cut off from the leader but not from the others, or alone -- keeps its
   term and deposes nobody.
3. *Stale-term answer*: pysyncobj silently drops an append_entries of a lower term, so a
   node whose term got ahead (its pre-vote passed, the election failed) could neither
   rejoin nor -- with rule 1 -- be heard.  It answers `harepl_stale_term` and the leader
   adopts the higher term and steps down (as Raft's AppendEntries reply does; etcd does the
   same with check-quorum).  With pre-vote this is rare: one election, not a flap.
4. *Hand-off to a node that reaches everyone*: rules 1-2 keep a node that cannot hear the
   leader (but can hear the others) from deposing it -- and leave it without a leader
   for as long as the cut lasts (Raft does not relay).  A follower that denies a pre-vote
   because it hears the leader tells the leader (`harepl_unheard`: "C cannot hear you,
   I can hear C").  When a second report about C comes at least `handoff_after_s` after
   the first (C's next pre-vote: a node just resumed or rejoining hears the leader before
   that and is dropped from the count), C has not answered the leader for `sticky_s`
   either, and the reporter answers and is fully caught up, the leader announces the
   hand-off to its followers
   (`harepl_handoff`: they may vote for that node in the next term despite rule 1, as the
   thesis allows for leadership transfer) and calls pysyncobj's `transferLeadership`.
   One planned election, ~1.2-2.4 s after the cut; afterwards every node hears the
   leader.  At most one hand-off per leader per `window_s`.

Raft's safety is untouched: votes are still granted only by pysyncobj (one per term,
persisted before the reply leaves -- see the transport), a leader still needs a majority,
and terms only ever grow.  Our messages travel only on authenticated connections and are
accepted only from members (`otherNodes`).

pysyncobj's `transferLeadership` is used only by rule 4 (elsewhere its request_vote would
be ignored by sticky followers without the announcement).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from pysyncobj.monotonic import monotonic as _raft_clock

log = logging.getLogger("harepl.store.raft")

FOLLOWER, CANDIDATE, LEADER = 0, 1, 2  # pysyncobj's _RAFT_STATE
PREVOTE, PREVOTE_REPLY, STALE_TERM = "harepl_prevote", "harepl_prevote_reply", "harepl_stale_term"
UNHEARD, HANDOFF = "harepl_unheard", "harepl_handoff"
_GUARD_MESSAGES = (PREVOTE, PREVOTE_REPLY, STALE_TERM, UNHEARD, HANDOFF)


@dataclass(frozen=True)
class VoterView:
    """What a node knows when it judges someone else's (pre-)vote request."""

    term: int
    state: int
    #: follower: seconds since its leader's last append_entries (None: no leader known)
    leader_heard_ago_s: float | None
    #: leader: followers that answered within sticky_s
    fresh_followers: int
    cluster_size: int
    last_log_term: int
    last_log_index: int
    sticky_s: float


def has_fresh_leader(v: VoterView) -> bool:
    """Rule 1: this node knows a live leader (or is one, with a majority answering)."""
    if v.state == LEADER:
        return 2 * (v.fresh_followers + 1) > v.cluster_size
    return v.leader_heard_ago_s is not None and v.leader_heard_ago_s < v.sticky_s


def grant_prevote(v: VoterView, term: int, last_log_term: int, last_log_index: int) -> bool:
    """Would this node vote for a candidate in `term` with that log (Raft 5.4.1)?"""
    return (term > v.term and not has_fresh_leader(v)
            and (last_log_term, last_log_index) >= (v.last_log_term, v.last_log_index))


def is_majority(granted: int, cluster_size: int) -> bool:
    return 2 * granted > cluster_size


def unheard_span(first_last: tuple[float, float] | None, now: float, gap_s: float) -> tuple[float, float]:
    """Reports that a peer cannot hear the leader: (first, last) of an unbroken series
    (no pause longer than gap_s between two reports)."""
    if first_last is None or now - first_last[1] > gap_s:
        return (now, now)
    return (first_last[0], now)


class _ElectionGuard:
    """Mixin for pysyncobj's SyncObj: pre-vote, stickiness, stale-term answers, hand-off.

    Clocks: pysyncobj's own times (election deadline, last responses) are on its clock
    (`_raft_clock`, CLOCK_MONOTONIC_RAW: 0.25 s away from time.monotonic on the dev machine
    and drifting with NTP slew), so everything compared with them uses that clock; the
    transport's heartbeat times use time.monotonic."""

    _sticky_s: float
    _last_append: dict[Any, float]  # the transport's: node -> monotonic time of its last append_entries

    def _init_election_guard(self, sticky_s: float, handoff_after_s: float, window_s: float) -> None:
        self._sticky_s = sticky_s
        self._handoff_after_s = handoff_after_s
        self._window_s = window_s  # report series gap, hand-off announcement validity, cooldown
        self._unheard: dict[Any, tuple[float, float]] = {}  # leader: peer -> reports (first, last)
        self._handoff_done_at = -1e18
        self._handoff_allow: tuple[str, int, float] | None = None  # (candidate id, its term, until)
        self._last_append = {}
        self._pv_round = 0
        self._pv_term = -1
        self._pv_grants: set[Any] = set()
        self._pv_go_until = 0.0  # a passed pre-vote lets the election start until then
        self._was_leader = False
        self.election_stats = {"prevotes_started": 0, "prevotes_passed": 0, "prevotes_denied": 0,
                               "votes_ignored": 0, "stale_term_answers": 0, "stepped_down_stale": 0,
                               "handoffs": 0}

    # -- what this node knows ---------------------------------------------------------------

    def _view(self) -> VoterView:
        s: Any = self
        now = _raft_clock()
        others = s._SyncObj__otherNodes
        state = s._SyncObj__raftState
        fresh = 0
        heard_ago = None
        if state == LEADER:
            responses = s._SyncObj__lastResponseTime
            fresh = sum(1 for n in others if now - responses.get(n, -1e18) < self._sticky_s)
        else:
            leader = s._SyncObj__raftLeader
            if leader is not None and leader in self._last_append:
                heard_ago = time.monotonic() - self._last_append[leader]  # the transport's clock
        return VoterView(term=s._SyncObj__raftCurrentTerm, state=state, leader_heard_ago_s=heard_ago,
                         fresh_followers=fresh, cluster_size=len(others) + 1,
                         last_log_term=s._SyncObj__getCurrentLogTerm(),
                         last_log_index=s._SyncObj__getCurrentLogIndex(), sticky_s=self._sticky_s)

    # -- the election gate (runs at the start of every tick) -----------------------------------

    def _onTick(self, timeToWait: float = 0.0) -> None:  # noqa: N802,N803 - pysyncobj API
        self._prevote_gate()
        super()._onTick(timeToWait)  # type: ignore[misc]

    def _prevote_gate(self) -> None:
        """pysyncobj starts an election in this tick when its deadline passed: unless a
        pre-vote just passed, push the deadline on and ask for pre-votes instead."""
        s: Any = self
        if s._SyncObj__raftState == LEADER or s._SyncObj__selfNode is None:
            self._was_leader = s._SyncObj__raftState == LEADER
            return
        if self._was_leader:
            # pysyncobj leaves a deposed leader's election deadline where it was when it
            # was elected, long past: it would run for election at once (after a hand-off
            # whose target lacked its newest entry: against the node it just handed to)
            self._was_leader = False
            s._SyncObj__raftElectionDeadline = _raft_clock() + s._SyncObj__generateRaftTimeout()
            return
        if self._unheard:
            self._unheard.clear()  # reports count only for the leader that received them
        now = _raft_clock()
        if s._SyncObj__raftElectionDeadline >= now or not s._SyncObj__connectedToAnyone():
            return
        if s._SyncObj__transferInProgress:
            return  # our leader handed off to us (rule 4): elect now, no pre-vote
        others = s._SyncObj__otherNodes
        if not others:
            return  # a single member elects itself
        term = s._SyncObj__raftCurrentTerm
        if self._pv_term == term + 1 and now < self._pv_go_until:
            self._pv_go_until = 0.0  # pysyncobj starts the election (term + 1) in this tick
            return
        s._SyncObj__raftElectionDeadline = now + s._SyncObj__generateRaftTimeout()
        self._pv_round += 1
        self._pv_term = term + 1
        self._pv_grants = {s._SyncObj__selfNode}
        self._pv_go_until = 0.0
        self.election_stats["prevotes_started"] += 1
        msg = {"type": PREVOTE, "term": term + 1, "round": self._pv_round,
               "last_log_term": s._SyncObj__getCurrentLogTerm(),
               "last_log_index": s._SyncObj__getCurrentLogIndex()}
        transport = s._SyncObj__transport
        for node in others:
            transport.send(node, msg)

    # -- messages ----------------------------------------------------------------------------

    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:  # noqa: N802 - overrides the private method
        s: Any = self
        kind = message.get("type") if isinstance(message, dict) else None
        if kind in _GUARD_MESSAGES:
            if node in s._SyncObj__otherNodes and s._SyncObj__selfNode is not None:
                try:
                    self._on_guard_message(node, kind, message)
                except (KeyError, TypeError, ValueError):
                    log.warning("raft: malformed %s from %s ignored", kind, node)
            return
        if kind == "request_vote" and has_fresh_leader(self._view()) and not self._handed_to(node, message):
            # rule 1: the sender cannot hear a leader that we (and a majority) can
            self.election_stats["votes_ignored"] += 1
            return
        if (kind == "append_entries" and node in s._SyncObj__otherNodes
                and message.get("term", 0) < s._SyncObj__raftCurrentTerm):
            # rule 3: pysyncobj would drop it silently; tell the old-term leader our term
            self.election_stats["stale_term_answers"] += 1
            s._SyncObj__transport.send(node, {"type": STALE_TERM, "term": s._SyncObj__raftCurrentTerm})
        super()._SyncObj__onMessageReceived(node, message)  # type: ignore[misc]

    def _on_guard_message(self, node: Any, kind: str, message: dict[str, Any]) -> None:
        s: Any = self
        term = int(message["term"])
        if kind == PREVOTE:
            v = self._view()
            ok = grant_prevote(v, term, int(message["last_log_term"]), int(message["last_log_index"]))
            s._SyncObj__transport.send(node, {"type": PREVOTE_REPLY, "term": term, "round": message["round"],
                                              "granted": ok, "voter_term": s._SyncObj__raftCurrentTerm})
            leader = s._SyncObj__raftLeader
            if v.state == FOLLOWER and has_fresh_leader(v) and leader is not None:
                # rule 4: it cannot hear the leader that we hear
                s._SyncObj__transport.send(leader, {"type": UNHEARD, "who": node.id, "term": v.term})
        elif kind == PREVOTE_REPLY:
            voter_term = int(message["voter_term"])
            if not message["granted"]:
                self.election_stats["prevotes_denied"] += 1
                if voter_term > s._SyncObj__raftCurrentTerm and s._SyncObj__raftState != LEADER:
                    self._adopt_term(voter_term)  # we lag behind: catch up, no vote given
                return
            if (message["round"] != self._pv_round or term != self._pv_term
                    or term != s._SyncObj__raftCurrentTerm + 1 or s._SyncObj__raftState == LEADER):
                return  # an old round, or the term moved on since we asked
            self._pv_grants.add(node)
            if is_majority(len(self._pv_grants), len(s._SyncObj__otherNodes) + 1) and not self._pv_go_until:
                self.election_stats["prevotes_passed"] += 1
                log.info("raft: pre-vote for term %d passed (%s)", term,
                         ", ".join(sorted(str(n.id) for n in self._pv_grants)))
                self._pv_go_until = _raft_clock() + self._sticky_s
                s._SyncObj__raftElectionDeadline = 0  # the next tick starts the election
        elif kind == UNHEARD:
            self._on_unheard(node, str(message["who"]), term)
        elif kind == HANDOFF:
            if node == s._SyncObj__raftLeader and term == s._SyncObj__raftCurrentTerm:
                self._handoff_allow = (str(message["to"]), term + 1, _raft_clock() + self._window_s)
        elif kind == STALE_TERM and term > s._SyncObj__raftCurrentTerm:
            log.info("raft: %s is at term %d, above ours (%d): adopting it", node, term, s._SyncObj__raftCurrentTerm)
            self.election_stats["stepped_down_stale"] += 1
            self._adopt_term(term)

    def _handed_to(self, node: Any, message: dict[str, Any]) -> bool:
        """Rule 4's exception to rule 1: our leader announced a hand-off to this candidate."""
        allow = self._handoff_allow
        return (allow is not None and allow[0] == node.id and allow[1] == message.get("term")
                and _raft_clock() < allow[2])

    def _on_unheard(self, reporter: Any, who: str, term: int) -> None:
        """Leader: `reporter` hears `who`, which does not hear us.  Hand off to the
        reporter once that has lasted (rule 4)."""
        s: Any = self
        if s._SyncObj__raftState != LEADER or term != s._SyncObj__raftCurrentTerm:
            return
        others = {n.id: n for n in s._SyncObj__otherNodes}
        peer = others.get(who)
        if peer is None or peer == reporter:
            return
        now = _raft_clock()
        responses = s._SyncObj__lastResponseTime
        if now - responses.get(peer, -1e18) < self._sticky_s:
            self._unheard.pop(peer, None)  # it answers us: a late heartbeat, not a cut
            return
        first, last = self._unheard[peer] = unheard_span(self._unheard.get(peer), now, self._window_s)
        if (last - first < self._handoff_after_s or now - self._handoff_done_at < self._window_s
                or now - responses.get(reporter, -1e18) >= self._sticky_s):
            return
        if s._SyncObj__raftMatchIndex.get(reporter, 0) != s._SyncObj__getCurrentLogIndex():
            return  # pysyncobj transfers only to a caught-up node: try at the next report
        self._handoff_done_at = now
        self._unheard.clear()
        self.election_stats["handoffs"] += 1
        # announce first (the followers then accept the reporter's request_vote), then let
        # pysyncobj send timeout_now; we accept it ourselves too, so it has our vote
        self._handoff_allow = (str(reporter.id), term + 1, now + self._window_s)
        for n in s._SyncObj__otherNodes:
            if n != reporter:
                s._SyncObj__transport.send(n, {"type": HANDOFF, "to": reporter.id, "term": term})
        s.transferLeadership(reporter)
        log.info("raft: handing leadership to %s: %s has not heard us for %.1f s, %s reaches both",
                 reporter.id, who, last - first, reporter.id)

    def _adopt_term(self, term: int) -> None:
        """Move to a higher term as a follower without voting (what pysyncobj does on a
        request_vote of a higher term before judging it)."""
        s: Any = self
        s._SyncObj__setCurrentTerm(term, None)
        s._SyncObj__setState(FOLLOWER)
        s._SyncObj__raftLeader = None
