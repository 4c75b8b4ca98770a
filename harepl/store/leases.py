"""Lease judgement on the judging node's own monotonic clock (docs/safety.md).  Pure.

No wall clock and no clock of another node is ever compared: a lease is judged from
*changes* of its (epoch, seq) pair observed in the replicated state, timed on the
observer's monotonic clock.  This is why we do not use pysyncobj's ReplLockManager,
which compares wall-clock timestamps across nodes (two holders at once under skew).

- `LeaseJudge` (used by a would-be acquirer, e.g. the CRM for a node lease or a standby
  CRM for the manager lease): `observe()` every time it reads the lease; `expired()`
  only after `lease_timeout_s` of its own time without a change.  A new judge starts
  every clock at its own start (a new CRM waits a full timeout).  To take an expired
  lease it proposes `lease_acquire(lease, me, *judge.seen(name))`, a compare-and-swap
  that fails if the lease changed meanwhile.
- `HolderLease` (used by the holder): notes the monotonic time a renewal was *sent*;
  when the commit is acknowledged the lease is locally valid until
  `t_sent + lease_local_s`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Seen:
    epoch: int
    seq: int
    holder: str | None
    since: float  # judge's monotonic time when this (epoch, seq) was first observed


@dataclass
class LeaseJudge:
    lease_timeout_s: float
    started_at: float
    _seen: dict[str, _Seen] = field(default_factory=dict)

    def observe(self, name: str, epoch: int, seq: int, holder: str | None, now: float) -> None:
        cur = self._seen.get(name)
        if cur is None or (cur.epoch, cur.seq) != (epoch, seq):
            # a value seen for the first time may have been written just now: its clock
            # starts at this observation (never earlier than our own start)
            self._seen[name] = _Seen(epoch, seq, holder, max(now, self.started_at))
        elif cur.holder != holder:  # cannot happen without a seq change; keep the view exact
            cur.holder = holder

    def seen(self, name: str) -> tuple[int, int]:
        """(epoch, seq) last observed: what a compare-and-swap acquire must state."""
        cur = self._seen.get(name)
        return (cur.epoch, cur.seq) if cur else (0, 0)

    def holder(self, name: str) -> str | None:
        cur = self._seen.get(name)
        return cur.holder if cur else None

    def expired(self, name: str, now: float) -> bool:
        """True when the lease is free (released / never held) or unchanged for
        `lease_timeout_s` of this judge's monotonic time.  Unknown lease: not expired
        until observed (the caller must read it first)."""
        cur = self._seen.get(name)
        if cur is None:
            return False
        if cur.holder is None:
            return True
        return now - cur.since >= self.lease_timeout_s

    def age(self, name: str, now: float) -> float | None:
        cur = self._seen.get(name)
        return None if cur is None else now - cur.since


@dataclass
class HolderLease:
    lease_local_s: float
    epoch: int = 0
    valid_until: float = float("-inf")

    def acknowledged(self, t_sent: float, epoch: int) -> None:
        """A renewal (or acquire) sent at `t_sent` committed with `epoch`."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.valid_until = float("-inf")
        self.valid_until = max(self.valid_until, t_sent + self.lease_local_s)

    def lost(self) -> None:
        self.valid_until = float("-inf")

    def valid(self, now: float) -> bool:
        return now < self.valid_until
