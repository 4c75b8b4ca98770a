"""Store faults: the simulated replicated state behaving like the Raft store.

What the runtime's store does and the simulator's plain dictionaries do not (docs/testing.md,
"Simulator fault verbs"):
  - `store NODE slow R`: every write NODE submits (status, config, lease acquire/renew/
    release) times out for the submitter, which sees StoreUnavailableError (a lease call
    returns False), yet is appended R rounds later and applies then if it is still valid
    (epochs and leases are checked when it applies, as the store's state machine does).
    A node's entries apply in the order it sent them. One round is longer than the
    runtime's commit timeout (at most one loop), so a commit delayed by rounds is always
    a timed-out one. `store NODE ok` ends it (what is on its way still applies);
  - `store leader-change R`: the Raft leader changes: for R rounds no write commits
    anywhere; writes sent meanwhile are lost (the submitter sees a timeout);
  - `disk NODE full|ok` (NodeHw.disk_full): NODE's member cannot persist, so none of its
    writes is acknowledged and it applies nothing new (it reads what it had).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from harepl.core.config import ConfigError
from harepl.roles.env import StaleLeaseError


@dataclass
class _Entry:
    due: int
    seq: int
    node: str
    what: str
    apply: Callable[[], object]


@dataclass
class StoreFaults:
    slow: dict[str, int] = field(default_factory=dict)  # node -> rounds its writes are late
    leaderless_until: int = -1  # no write commits before this round
    pending: list[_Entry] = field(default_factory=list)
    last_due: dict[str, int] = field(default_factory=dict)
    seq: int = 0

    def leaderless(self, round_no: int) -> bool:
        return round_no < self.leaderless_until

    def defer(self, node: str, round_no: int, what: str, apply: Callable[[], object]) -> bool:
        """Queue the write if NODE's writes are late (or earlier ones are still on their
        way: one node's entries keep their order); False if it commits now."""
        delay = self.slow.get(node, 0)
        last = self.last_due.get(node)
        if not delay and (last is None or last <= round_no):
            return False
        due = max(round_no + max(delay, 1), last or 0)
        self.seq += 1
        self.pending.append(_Entry(due, self.seq, node, what, apply))
        self.last_due[node] = due
        return True

    def tick(self, round_no: int, log: Callable[[str, str, str], None]) -> bool:
        """Round start: apply every late write that is due, oldest first (True if any)."""
        if not self.pending:
            return False
        due = sorted((e for e in self.pending if e.due <= round_no), key=lambda e: (e.due, e.seq))
        if not due:
            return False
        self.pending = [e for e in self.pending if e.due > round_no]
        for e in due:
            if self.last_due.get(e.node, -1) <= round_no:
                self.last_due.pop(e.node, None)
            try:
                e.apply()
            except (StaleLeaseError, RuntimeError, ConfigError) as exc:
                log("info", "store", f"late commit of {e.node} ({e.what}) rejected when applied: {exc}")
            else:
                log("info", "store", f"late commit of {e.node} ({e.what}) applied")
        return True
